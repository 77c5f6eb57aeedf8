"""Hotpatch packages: an update tarball becomes a .deb or .rpm that installs it into the
installed-updates tree, applies it live from its maintainer scripts and undoes it on removal.

`naming` decides names, versions and relations for both formats and checks every manifest value
a package carries; `source` reads the tarball; `common` picks the files a package ships; `deb`
and `rpm` write the archives.
"""

from __future__ import annotations

import contextlib
import enum
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ksplice_pkg.fsutil import atomic_output, ensure_writable_dir
from ksplice_pkg.package.common import DEFAULT_MAINTAINER, check_maintainer
from ksplice_pkg.package.contents import read_update
from ksplice_pkg.package.naming import PackagingError, Stream

__all__ = ["DEFAULT_MAINTAINER", "PackageFormat", "Stream", "build_packages"]


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
    stream: Stream | None = None,
) -> list[Path]:
    """One package per update tarball, written to output_dir; returns their paths in order.
    With `stream`, each is a version of its kernel's stream package (naming.py).

    All of them or, on any failure, none: dpkg-deb and rpmbuild write into a directory of our
    own, and the packages are then copied to temporary names in output_dir and renamed, so that
    a failed or killed run leaves no truncated package under a final name, nor some packages of
    a run that did not finish.
    """
    check_maintainer(maintainer)
    updates = [read_update(t) for t in tarballs]
    ensure_writable_dir(output_dir, "the output directory")
    with tempfile.TemporaryDirectory(prefix="ksplice-pkg-") as tmp:
        work = Path(tmp)
        if fmt is PackageFormat.DEB:
            from ksplice_pkg.package.deb import build_deb

            built = [build_deb(u, work, source_date_epoch, maintainer, stream) for u in updates]
        else:
            from ksplice_pkg.package.rpm import build_rpm

            known = tuple(u.manifest for u in updates)
            built = [
                build_rpm(u, work, source_date_epoch, maintainer, known, stream) for u in updates
            ]
        published: list[Path] = []
        try:
            for path in built:
                target = output_dir / path.name
                try:
                    with atomic_output(target) as out, path.open("rb") as data:
                        shutil.copyfileobj(data, out)
                except OSError as e:
                    raise PackagingError(f"cannot write {target}: {e.strerror or e}") from e
                published.append(target)
        except BaseException:
            for path in published:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
    return published
