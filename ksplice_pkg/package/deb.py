"""Hotpatch .deb packages: control data written with python-debian, the archive by dpkg-deb.

The tree is staged in a temporary directory with fixed modes and timestamps; dpkg-deb
(--root-owner-group, SOURCE_DATE_EPOCH) sorts members and fixes the ar header times, so the same
update and epoch give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
from pathlib import Path

from debian.deb822 import Deb822

from ksplice_pkg.package.common import COPYRIGHT, DEFAULT_MAINTAINER, build_epoch, script
from ksplice_pkg.package.naming import Flavour, PackagePlan, plan
from ksplice_pkg.package.source import UpdateContents
from ksplice_pkg.run import run


def control(package: PackagePlan, installed_kib: int, maintainer: str) -> Deb822:
    fields = Deb822()
    fields["Package"] = package.name
    fields["Version"] = package.version
    fields["Architecture"] = package.arch.deb
    fields["Maintainer"] = maintainer
    fields["Installed-Size"] = str(installed_kib)
    fields["Depends"] = ", ".join(r.deb() for r in package.depends)
    fields["Provides"] = ", ".join(r.deb() for r in package.provides)
    if package.supersedes:
        # Conflicts+Replaces (not Breaks) is Policy 7.6.2's "replacing whole packages": apt and
        # dpkg remove the superseded packages in the same run.
        fields["Conflicts"] = ", ".join(r.deb() for r in package.supersedes)
        fields["Replaces"] = fields["Conflicts"]
    fields["Section"] = "kernel"
    fields["Priority"] = "optional"
    fields["Description"] = _description(package)
    return fields


def _description(package: PackagePlan) -> str:
    lines = []
    for line in package.description.splitlines():
        lines.append(f" {line}" if line.strip() else " .")
    return package.summary + "\n" + "\n".join(lines)


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
) -> Path:
    package = plan(update.manifest, update.module, Flavour.DEB, str(update.origin))
    epoch = build_epoch(package, source_date_epoch)
    with tempfile.TemporaryDirectory(prefix="ksplice-deb-") as tmp:
        root = Path(tmp) / "root"
        payload: dict[str, tuple[bytes, int]] = {
            f"{package.install_dir}/{f.path}": (f.data, f.mode) for f in update.files
        }
        doc = f"usr/share/doc/{package.name}"
        payload[f"{doc}/copyright"] = (
            COPYRIGHT.format(release=update.manifest.kernel_release).encode(),
            0o644,
        )
        # A version without a Debian revision is a native package's: changelog.gz.
        payload[f"{doc}/changelog.gz"] = (_changelog(package, maintainer, epoch), 0o644)
        for name, (data, mode) in payload.items():
            _write(root / name, data, mode, epoch)
        md5sums = "".join(
            f"{hashlib.md5(data).hexdigest()}  {name}\n"
            for name, (data, _) in sorted(payload.items())
        )
        installed_kib = sum((len(d) + 1023) // 1024 for d, _ in payload.values())
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
        out = output_dir / f"{package.name}_{package.version}_{package.arch.deb}.deb"
        run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out],
            env={"SOURCE_DATE_EPOCH": str(epoch)},
        )
    return out


def _changelog(package: PackagePlan, maintainer: str, epoch: int) -> bytes:
    text = (
        f"{package.name} ({package.version}) unstable; urgency=medium\n\n"
        f"  * {package.summary}.\n\n"
        f" -- {maintainer}  {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(epoch))}\n"
    )
    # mtime=0 and no file name in the gzip header (gzip -n): same bytes every time.
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)
