"""Hotpatch packages: an update tarball becomes a .deb or .rpm that installs it into the
installed-updates tree, applies it live from its maintainer scripts and undoes it on removal.

`naming` decides names, versions and relations for both formats; `source` reads the tarball;
`deb` and `rpm` write the archives.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path

from ksplice_pkg.package.common import DEFAULT_MAINTAINER
from ksplice_pkg.package.source import read_update

__all__ = ["DEFAULT_MAINTAINER", "PackageFormat", "build_packages"]


class PackageFormat(enum.Enum):
    DEB = "deb"
    RPM = "rpm"


def build_packages(
    tarballs: Sequence[Path],
    fmt: PackageFormat,
    output_dir: Path,
    *,
    source_date_epoch: int | None = None,
    maintainer: str = DEFAULT_MAINTAINER,
) -> list[Path]:
    """One package per update tarball, written to output_dir; returns their paths in order."""
    updates = [read_update(t) for t in tarballs]
    output_dir.mkdir(parents=True, exist_ok=True)
    if fmt is PackageFormat.DEB:
        from ksplice_pkg.package.deb import build_deb

        return [build_deb(u, output_dir, source_date_epoch, maintainer) for u in updates]
    from ksplice_pkg.package.rpm import build_rpm

    known = tuple(u.manifest for u in updates)
    return [build_rpm(u, output_dir, source_date_epoch, maintainer, known) for u in updates]
