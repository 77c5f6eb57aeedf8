"""Hotpatch .deb packages: control data written with python-debian, the archive by dpkg-deb.

The tree is staged in a temporary directory with fixed modes and timestamps; dpkg-deb
(--root-owner-group, SOURCE_DATE_EPOCH) sorts members and fixes the ar header times, so the same
update and epoch give the same bytes.

A control file is fields of `Name: value` lines, a line starting with a blank continuing the
field before it: every line of every field is checked to be printable text, so no value can
start a field of its own (python-debian refuses some of that itself, not in every version).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
from pathlib import Path

from debian.deb822 import Deb822

from ksplice_pkg.package.common import (
    COPYRIGHT,
    DEFAULT_MAINTAINER,
    FILE_MODE,
    build_epoch,
    prepare,
    script,
)
from ksplice_pkg.package.contents import UpdateContents
from ksplice_pkg.package.naming import Flavour, PackagePlan, PackagingError, Stream, one_line
from ksplice_pkg.run import run


def control(package: PackagePlan, installed_kib: int, maintainer: str) -> Deb822:
    values = {
        "Package": package.name,
        "Version": package.deb_version,
        "Architecture": package.arch.deb,
        "Maintainer": maintainer,
        "Installed-Size": str(installed_kib),
        "Depends": ", ".join(r.deb() for r in package.depends),
        "Provides": ", ".join(r.deb() for r in package.provides),
    }
    if package.supersedes:
        # Conflicts+Replaces (not Breaks) is Policy 7.6.2's "replacing whole packages": apt and
        # dpkg remove the superseded packages in the same run.
        values["Conflicts"] = values["Replaces"] = ", ".join(r.deb() for r in package.supersedes)
    values["Section"] = "kernel"
    values["Priority"] = "optional"
    values["Description"] = _description(package)
    fields = Deb822()
    for name, value in values.items():
        # Only _description's continuation lines, each starting with a blank: any other line
        # break or control character would make a field of the update's own.
        for i, line in enumerate(value.split("\n")):
            one_line(line, f"the control field {name}:")
            if i > 0 and not line.startswith(" "):
                raise PackagingError(f"the control field {name}: {line!r} would start a field")
        fields[name] = value
    return fields


def _description(package: PackagePlan) -> str:
    lines = [f" {line}" if line.strip() else " ." for line in package.description.split("\n")]
    return "\n".join([package.summary, *lines])


def _write(path: Path, data: bytes, mode: int, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (epoch, epoch))


def build_deb(
    update: UpdateContents,
    output_dir: Path,
    source_date_epoch: int | None = None,
    maintainer: str = DEFAULT_MAINTAINER,
    stream: Stream | None = None,
) -> Path:
    package, files = prepare(update, Flavour.DEB, stream=stream)
    epoch = build_epoch(package, source_date_epoch)
    with tempfile.TemporaryDirectory(prefix="ksplice-deb-") as tmp:
        root = Path(tmp) / "root"
        payload = {f"{package.install_dir}/{name}": data for name, data in files.items()}
        doc = f"usr/share/doc/{package.name}"
        payload[f"{doc}/copyright"] = COPYRIGHT.format(
            release=package.manifest.kernel_release
        ).encode()
        # A version without a Debian revision is a native package's: changelog.gz; a stream's
        # has one (its build number), which makes it changelog.Debian.gz (Policy 12.7).
        changelog = "changelog.Debian.gz" if package.revision else "changelog.gz"
        payload[f"{doc}/{changelog}"] = _changelog(package, maintainer, epoch)
        for name, data in payload.items():
            _write(root / name, data, FILE_MODE, epoch)
        md5sums = "".join(
            f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in sorted(payload.items())
        )
        installed_kib = sum((len(d) + 1023) // 1024 for d in payload.values())
        debian = root / "DEBIAN"
        _write(
            debian / "control",
            control(package, installed_kib, maintainer).dump().encode(),
            0o644,
            epoch,
        )
        _write(debian / "md5sums", md5sums.encode(), 0o644, epoch)
        _write(debian / "postinst", script("deb-postinst", package).encode(), 0o755, epoch)
        _write(debian / "prerm", script("deb-prerm", package).encode(), 0o755, epoch)
        # Directories: the mode and time are in the archive too.
        for directory in sorted({p for p in root.rglob("*") if p.is_dir()} | {root}):
            directory.chmod(0o755)
            os.utime(directory, (epoch, epoch))
        out = output_dir / f"{package.name}_{package.deb_version}_{package.arch.deb}.deb"
        run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out],
            env={"SOURCE_DATE_EPOCH": str(epoch)},
        )
    return out


def _changelog(package: PackagePlan, maintainer: str, epoch: int) -> bytes:
    one_line(maintainer, "the maintainer")
    # CVE ids are checked by the manifest (CVE-YYYY-NNNN): one per line, as `apt changelog`
    # and the security trackers' scanners read them.
    fixes = "".join(f"  * Fixes {cve}.\n" for cve in package.manifest.cves)
    text = (
        f"{package.name} ({package.deb_version}) unstable; urgency=medium\n\n"
        f"  * {package.summary}.\n{fixes}\n"
        f" -- {maintainer}  {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(epoch))}\n"
    )
    # mtime=0 and no file name in the gzip header (gzip -n): same bytes every time.
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)
