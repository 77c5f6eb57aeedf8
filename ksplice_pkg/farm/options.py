"""What a hotpatch source package records of `build`'s options.

The farm's chroot has the target kernel's packages installed, not their files: the source
package build-depends on the image, headers and linux-source-X.Y packages of the target's exact
version, and its build reads their installed files (InstalledTarget). What the archive does not
hold travels in the source package: the patch (or, for a whole upload, what NEW changes of OLD:
farm/upload.py), the symbol map (Debian's image ships a stub), the update's id, description and
CVE ids, and the time that makes the build reproducible (the changelog's date, which
dpkg-buildpackage exports as SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.config import check_description, description_from, random_id
from ksplice_pkg.distro.kernelpkg import check_version, package_info
from ksplice_pkg.distro.srcpkg import SourceKind, identify, upstream_version
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.farm.upload import FarmUpload, read_upload
from ksplice_pkg.manifest import CVE_RE, ID_RE
from ksplice_pkg.package import DEFAULT_MAINTAINER
from ksplice_pkg.package.naming import Flavour, package_name
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.timestamp import build_time
from ksplice_pkg.upload.cumulative import upload_description
from ksplice_pkg.upload.report import Side

# What the source package carries, under its top directory.
PATCH_FILE = "ksplice/fix.patch"
SYMBOL_MAP_FILE = "ksplice/System.map"
# A Debian version: what dpkg compares and a relation may name.
_DEB_VERSION_RE = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]+")
_SOURCE_SERIES_RE = re.compile(r"linux-source-(?P<series>[0-9]+\.[0-9]+)")
_MAX_SYMBOL_MAP = 256 << 20


@dataclass(frozen=True)
class KernelTarget:
    """The target kernel as the archive names it: its packages, all of one version."""

    release: str  # uname -r, e.g. 6.1.0-57-cloud-amd64
    version: str  # the packages' version, e.g. 6.1.192-3
    image: str  # linux-image-<release>
    headers: str  # linux-headers-<release>
    source: str  # linux-source-X.Y
    arch: str  # Debian's name of the target's architecture, e.g. amd64

    @property
    def series(self) -> str:
        match = _SOURCE_SERIES_RE.fullmatch(self.source)
        assert match is not None  # checked when read
        return match["series"]

    def build_depends(self) -> list[tuple[str, str]]:
        """(package, exact version) the build needs installed."""
        return [(p, self.version) for p in (self.image, self.headers, self.source)]


@dataclass(frozen=True)
class InstalledTarget:
    """Where the target's files are once its packages are installed (Debian's layout); each
    overridable, so that the same build runs from files elsewhere (a test, a farm that unpacks
    instead of installing)."""

    source: str
    vmlinuz: str
    config: str
    symvers: str
    modules_dir: str

    @classmethod
    def of(cls, target: KernelTarget) -> InstalledTarget:
        r = target.release
        return cls(
            source=f"/usr/src/linux-source-{target.series}.tar.xz",
            vmlinuz=f"/boot/vmlinuz-{r}",
            config=f"/boot/config-{r}",
            symvers=f"/usr/src/linux-headers-{r}/Module.symvers",
            modules_dir=f"/lib/modules/{r}",
        )


@dataclass(frozen=True)
class FarmBuild:
    """One hotpatch's source package: the target, what travels with it, the update's identity.
    Of a patch or of a whole upload: one of `patch` and `upload`."""

    target: KernelTarget
    patch: bytes | None
    symbol_map: bytes
    update_id: str
    description: str
    cves: tuple[str, ...]
    epoch: int  # the changelog's date: SOURCE_DATE_EPOCH of the farm's build
    maintainer: str = DEFAULT_MAINTAINER
    upload: FarmUpload | None = None

    def __post_init__(self) -> None:
        if (self.patch is None) == (self.upload is None):
            raise ValueError("a source package is of a patch or of an upload")

    @property
    def name(self) -> str:
        """The source package's name: the binary hotpatch package's, built from it."""
        return package_name(self.target.release, self.update_id, Flavour.DEB)

    @property
    def version(self) -> str:
        """The hotpatch's version (package/naming.version_of): its creation stamp."""
        return time.strftime("%Y%m%d.%H%M%S", time.gmtime(self.epoch))

    def build_argv(
        self,
        paths: InstalledTarget,
        fmt: str,
        output_dir: str,
        patch: str = PATCH_FILE,
        system_map: str = SYMBOL_MAP_FILE,
        trees: tuple[str, str] | None = None,
    ) -> list[str]:
        """The farm's `ksplice-pkg build` command, before the build tool's own quoting. Of an
        upload: `build NEW --from OLD` on the two trees the build rebuilt (old, new), which
        takes the description and CVEs from their changelogs, as it does here."""
        if self.upload is None:
            what = [paths.source, f"--patch={patch}"]
            told = [f"--description={self.description}", *(f"--cve={c}" for c in self.cves)]
        else:
            if trees is None:
                raise ValueError("the build of an upload runs on the trees rebuilt in the farm")
            what, told = [trees[1], f"--from={trees[0]}"], []
        return [
            "ksplice-pkg",
            "build",
            *what,
            f"--system-map={system_map}",
            f"--vmlinux={paths.vmlinuz}",
            f"--kconfig={paths.config}",
            f"--symvers={paths.symvers}",
            f"--modules-dir={paths.modules_dir}",
            f"--id={self.update_id}",
            *told,
            f"--format={fmt}",
            f"--output-dir={output_dir}",
        ]


def farm_build(
    kernel_source: Path,
    kernel_package: Path | None,
    headers_package: Path | None,
    patch_file: Path | None,
    system_map: Path | None,
    *,
    update_id: str | None,
    description: str | None,
    cves: Sequence[str],
    epoch: int | None = None,
    from_source: Path | None = None,
    cache: Path | None = None,
) -> FarmBuild:
    """Checked against each other before anything is written: the packages of one version,
    built from KERNEL_SOURCE. With `from_source` (OLD), the upload from it to KERNEL_SOURCE
    (NEW), both unpacked into `cache` and compared; the packages are OLD's kernel's."""
    if (patch_file is None) == (from_source is None):
        raise KspliceError(
            "give --patch (a fix) or --from (the target's source: the whole upload), not both"
            if patch_file
            else "a source package is of a patch (--patch) or of a whole upload (--from)",
            hint="e.g. ksplice-pkg source-package linux-source-6.1_NEW.deb "
            "--from linux-source-6.1_OLD.deb ...",
        )
    if from_source is not None and (description is not None or cves):
        raise KspliceError(
            "--description and --cve go with --patch: with --from, `build` takes them from "
            "the upload's changelog, in the farm as here"
        )
    missing = [
        option
        for option, value in (
            ("--kernel-package", kernel_package),
            ("--headers-package", headers_package),
            ("--system-map", system_map),
        )
        if value is None
    ]
    if missing:
        raise KspliceError(
            f"a source package needs {', '.join(missing)}: the farm installs the kernel's "
            "packages by name and version, and gets the symbol map from the source package",
            hint="give the linux-image and linux-headers .debs and the symbol map (a copy of "
            "/proc/kallsyms: Debian's System.map is a stub)",
        )
    assert kernel_package and headers_package and system_map
    if from_source is None:
        target = _target(kernel_source, kernel_package, headers_package, "KERNEL_SOURCE")
    else:
        target = _target(from_source, kernel_package, headers_package, "--from OLD_SOURCE")
    if update_id is not None and not ID_RE.fullmatch(update_id):
        raise KspliceError(f"--id {update_id!r}: use 1 to 32 characters of [a-z0-9]")
    for cve in cves:
        if not CVE_RE.fullmatch(cve):
            raise KspliceError(f"--cve {cve!r} is not a CVE id", hint="e.g. CVE-2024-26581")
    if system_map.stat().st_size > _MAX_SYMBOL_MAP:
        raise KspliceError(f"{system_map} is larger than a kernel's symbol map can be")
    patch, upload = None, None
    # The description is fixed here, not left to build's default: it is the changelog's entry.
    if from_source is not None:
        upload = read_upload(from_source, kernel_source, cache or cache_dir())
        text = upload_description(
            Side(from_source, upload.old_version),
            Side(kernel_source, upload.new_version),
            target.release,
        )
        cves = upload.cves
    else:
        assert patch_file is not None
        patch = patch_file.read_bytes()
        text = description if description is not None else description_from(patch, target.release)
    return FarmBuild(
        target=target,
        patch=patch,
        symbol_map=system_map.read_bytes(),
        update_id=update_id or random_id(),
        description=check_description(text),
        cves=tuple(dict.fromkeys(cves)),
        epoch=build_time() if epoch is None else epoch,
        upload=upload,
    )


def _target(
    kernel_source: Path, kernel_package: Path, headers_package: Path, given: str
) -> KernelTarget:
    source = identify(kernel_source)
    if source.kind is SourceKind.SOURCE_DEB:
        info = package_info(kernel_source)
        source_name, source_version = info.name, info.version
    elif source.kind is SourceKind.DSC and source.version:
        # The linux source package builds linux-source-X.Y of its own version.
        upstream = upstream_version(source.version).split(".")
        source_name, source_version = f"linux-source-{'.'.join(upstream[:2])}", source.version
    else:
        raise KspliceError(
            f"{given} {kernel_source.name}: a farm installs the kernel's source as a "
            "package, so a source package of the hotpatch needs the linux-source-X.Y .deb or "
            "the kernel's .dsc",
            hint="give linux-source-X.Y_<version>_all.deb or linux_<version>.dsc",
        )
    image, headers = package_info(kernel_package), package_info(headers_package)
    for info, prefix in ((image, "linux-image-"), (headers, "linux-headers-")):
        if info.is_rpm or not info.name.startswith(prefix):
            raise KspliceError(
                f"{info.path.name} is not a {prefix}<release> .deb",
                hint="give the target's linux-image-<release> and linux-headers-<release> .debs",
            )
        check_version(info, source)
    release = image.name.removeprefix("linux-image-")
    if headers.name != f"linux-headers-{release}" or headers.version != image.version:
        raise KspliceError(
            f"{headers.path.name} is not the headers of {image.path.name}",
            hint=f"give linux-headers-{release} of version {image.version}",
        )
    for name in (image.name, headers.name, source_name):
        if not _PACKAGE_RE.fullmatch(name):
            raise KspliceError(f"{name!r} is not a package name a relation can hold")
    if not _DEB_VERSION_RE.fullmatch(image.version) or not _SOURCE_SERIES_RE.fullmatch(source_name):
        raise KspliceError(f"{image.version!r} / {source_name!r}: not a kernel of the archive")
    if source_version != image.version:
        raise KspliceError(
            f"{kernel_source.name} is version {source_version}, the kernel {image.version}",
            hint="give the source the target kernel was built from",
        )
    return KernelTarget(release, image.version, image.name, headers.name, source_name, image.arch)
