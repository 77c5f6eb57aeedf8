"""Hotpatch .rpm packages: a generated spec built by rpmbuild.

rpmbuild runs with everything that would make its output depend on the build machine or the
clock switched off: no post-install scripts (they would strip the module, whose symbols the
livepatch loader needs), no dependency generators (the relations are ours), a fixed build host,
and SOURCE_DATE_EPOCH as build time and ceiling of every file's mtime.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ksplice_pkg.manifest import Manifest
from ksplice_pkg.package.common import DEFAULT_MAINTAINER, build_epoch, script
from ksplice_pkg.package.naming import Flavour, PackagePlan, plan
from ksplice_pkg.package.source import UpdateContents
from ksplice_pkg.run import run

RPMBUILD_DEFINES = {
    "use_source_date_epoch_as_buildtime": "1",
    "clamp_mtime_to_source_date_epoch": "1",
    "_buildhost": "ksplice-pkg",
    "__spec_install_post": "%{nil}",
    "debug_package": "%{nil}",
    "_build_id_links": "none",
    "_binary_payload": "w9.xzdio",
}


def _escape(text: str) -> str:
    # A % in a spec is a macro; the update's text is data.
    return text.replace("%", "%%")


def spec(package: PackagePlan, staged: Path, maintainer: str, epoch: int) -> str:
    m = package.manifest
    lines = [
        f"Name: {package.name}",
        f"Version: {package.version}",
        "Release: 1",
        f"Summary: {_escape(package.summary)}",
        "License: GPL-2.0-only",
        "Group: System Environment/Kernel",
        f"Packager: {_escape(maintainer)}",
        "URL: https://www.kernel.org/doc/html/latest/livepatch/livepatch.html",
        # The relations below are the whole truth; rpm's generators would guess from the .ko.
        "AutoReqProv: no",
        *(f"Requires: {r.rpm()}" for r in package.depends),
        *(f"Provides: {r.rpm()}" for r in package.provides),
        # Obsoletes match package names only (rpm and libsolv ignore virtual names there): the
        # Conflicts on the versioned virtual name reaches every older update of this kernel,
        # the Obsoletes by name let rpm -U and dnf swap the known ones in one transaction.
        *(f"Conflicts: {r.rpm()}" for r in package.supersedes),
        *(f"Obsoletes: {r.rpm()}" for r in package.obsoletes),
        "",
        "%description",
        _escape(package.description),
        "",
        "%install",
        f"cp -a '{staged}/.' %{{buildroot}}/",
        "",
        "%post",
        _escape(script("rpm-post", package)),
        "%preun",
        _escape(script("rpm-preun", package)),
        "%files",
        "%defattr(-,root,root,-)",
        f'%dir "/{package.install_dir.rsplit("/", 1)[0]}"',
        f'%dir "/{package.install_dir}"',
        *(f'"/{package.install_dir}/{f}"' for f in sorted(_files(staged, package))),
        "",
        "%changelog",
        f"* {time.strftime('%a %b %d %Y', time.gmtime(epoch))} {_escape(maintainer)}"
        f" - {package.version}-1",
        f"- {_escape(package.summary)} ({_escape(m.kernel_release)})",
        "",
    ]
    return "\n".join(lines)


def _files(staged: Path, package: PackagePlan) -> list[str]:
    base = staged / package.install_dir
    return [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()]


def build_rpm(
    update: UpdateContents,
    output_dir: Path,
    source_date_epoch: int | None = None,
    maintainer: str = DEFAULT_MAINTAINER,
    known: tuple[Manifest, ...] = (),
) -> Path:
    package = plan(update.manifest, update.module, Flavour.RPM, str(update.origin), known)
    epoch = build_epoch(package, source_date_epoch)
    with tempfile.TemporaryDirectory(prefix="ksplice-rpm-") as tmp:
        top = Path(tmp)
        staged = top / "staged"
        for f in update.files:
            path = staged / package.install_dir / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)
            path.chmod(f.mode)
        # Clamping only lowers mtimes above the epoch: set them all, directories too.
        for path in [staged, *staged.rglob("*")]:
            os.utime(path, (epoch, epoch))
        spec_file = top / f"{package.name}.spec"
        spec_file.write_text(spec(package, staged, maintainer, epoch))
        defines = {"_topdir": str(top), **RPMBUILD_DEFINES}
        argv: list[str] = ["rpmbuild", "-bb", "--target", package.arch.rpm, "--quiet"]
        for key, value in defines.items():
            argv += ["--define", f"{key} {value}"]
        run([*argv, spec_file], env={"SOURCE_DATE_EPOCH": str(epoch)})
        name = f"{package.name}-{package.version}-1.{package.arch.rpm}.rpm"
        built = top / "RPMS" / package.arch.rpm / name
        out = output_dir / name
        shutil.copyfile(built, out)
    return out
