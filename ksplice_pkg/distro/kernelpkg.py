"""The target kernel described by the distro's binary packages instead of a config directory.

`--kernel-package`: a `linux-image-<release>` .deb (boot/vmlinuz-*, boot/config-*) or a Fedora
style `kernel-core`/`kernel` .rpm (lib/modules/<release>/{vmlinuz,config,System.map,symvers.*});
`--headers-package`: `linux-headers-<release>` .deb or `kernel-devel` .rpm (Module.symvers);
`--debug-package`: `linux-image-<release>-dbg` .deb or `kernel-debuginfo` .rpm, for the symbol
map when no System.map or /proc/kallsyms copy is given (Debian's image holds only a stub).

Each package is unpacked once into `<cache>/packages/<sha256>/` and the pieces it holds fill in
what the single-file options (--system-map, --kconfig, --symvers, --vmlinux) leave open, so the
rest of the pipeline sees the same TargetFiles as with a config directory.
"""

from __future__ import annotations

import gzip
import lzma
import platform
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ksplice_pkg.cache import cache_entry_lock, mark_used
from ksplice_pkg.distro.archive import (
    Wanted,
    deb_fields,
    rpm_header,
    unpack_deb,
    unpack_rpm,
)
from ksplice_pkg.distro.srcpkg import (
    KernelSource,
    SourceKind,
    upstream_version,
)
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import atomic_directory, atomic_output, copy_at_most, sha256_file
from ksplice_pkg.log import step
from ksplice_pkg.run import piped
from ksplice_pkg.target.files import TargetSpec
from ksplice_pkg.unpack import ArchiveError

# The names each packaging gives this machine's architecture: the update is compiled here, with
# this machine's compiler, so the target must be of the same architecture.
_ARCH_NAMES = {
    "x86_64": {"amd64", "x86_64"},
    "aarch64": {"arm64", "aarch64"},
    "ppc64le": {"ppc64el", "ppc64le"},
    "s390x": {"s390x"},
    "riscv64": {"riscv64"},
}
_ARCH_INDEPENDENT = {"all", "noarch"}


@dataclass(frozen=True)
class PackageInfo:
    path: Path
    name: str
    version: str  # Debian version, or RPM version-release
    arch: str
    is_rpm: bool


def package_info(path: Path) -> PackageInfo:
    if path.name.endswith(".rpm"):
        h = rpm_header(path)
        if h.is_source:
            raise KspliceError(f"{path} is a source RPM; a binary kernel package is needed here")
        return PackageInfo(path, h.name, f"{h.version}-{h.release}", h.arch, True)
    if path.name.endswith(".deb"):
        f = deb_fields(path)
        return PackageInfo(
            path, f.get("Package", ""), f.get("Version", ""), f.get("Architecture", ""), False
        )
    raise KspliceError(f"{path} is neither a .deb nor an .rpm")


def host_arch() -> str:
    return platform.machine()


def check_arch(info: PackageInfo) -> None:
    machine = host_arch()
    if info.arch in _ARCH_INDEPENDENT or info.arch in _ARCH_NAMES.get(machine, {machine}):
        return
    raise KspliceError(
        f"{info.path.name} is a {info.arch} package, but the update is built here for "
        f"{machine}: the source is compiled with this machine's compiler",
        hint=f"give the {machine} kernel package, or build on a {info.arch} machine",
    )


def check_version(info: PackageInfo, source: KernelSource | None) -> None:
    """The kernel package must be built from the source given: same upstream version, and the
    same distro revision when both carry one of the same packaging."""
    if source is None or source.version is None:
        return
    both_rpm = info.is_rpm and source.kind is SourceKind.SRPM
    both_deb = not info.is_rpm and source.kind in (SourceKind.DSC, SourceKind.SOURCE_DEB)
    theirs: str | None
    ours: str | None
    if both_rpm or both_deb:
        theirs, ours = info.version, source.version
    else:
        theirs, ours = upstream_version(info.version), source.upstream
    if theirs != ours:
        raise KspliceError(
            f"{info.path.name} is kernel {info.version}, but KERNEL_SOURCE {source.path.name} "
            f"is version {source.version}",
            hint="give the kernel package built from that source, or the source of that kernel",
        )


def _unpacked(package: Path, cache: Path, wanted: Wanted | None = None, tag: str = "all") -> Path:
    """The package's files, unpacked once per content (and per selection of members)."""
    entry = cache / "packages" / f"{sha256_file(package)[:40]}-{tag}"
    with cache_entry_lock(entry):
        if (entry / ".complete").is_file():
            mark_used(cache, [entry])
            return entry
        with step(f"unpacking {package.name}"), atomic_directory(entry) as tmp:
            if package.name.endswith(".rpm"):
                unpack_rpm(package, tmp, wanted)
            else:
                unpack_deb(package, tmp, wanted)
            (tmp / ".complete").write_text(str(package) + "\n")
    return entry


@dataclass
class _Found:
    release: str | None = None
    vmlinuz: Path | None = None
    config: Path | None = None
    system_map: Path | None = None
    symvers: Path | None = None


def _kernel_pieces(root: Path, found: _Found, package: Path) -> None:
    deb_images = sorted((root / "boot").glob("vmlinuz-*"))
    rpm_images = sorted((root / "lib" / "modules").glob("*/vmlinuz")) + sorted(
        (root / "usr" / "lib" / "modules").glob("*/vmlinuz")
    )
    if deb_images:
        found.vmlinuz = deb_images[0]
        found.release = deb_images[0].name.removeprefix("vmlinuz-")
        boot = root / "boot"
        config = boot / f"config-{found.release}"
        system_map = boot / f"System.map-{found.release}"
    elif rpm_images:
        found.vmlinuz = rpm_images[0]
        found.release = rpm_images[0].parent.name
        config = found.vmlinuz.parent / "config"
        system_map = found.vmlinuz.parent / "System.map"
        for name in ("symvers.xz", "symvers.gz", "symvers"):
            if (found.vmlinuz.parent / name).is_file():
                found.symvers = _decompressed(found.vmlinuz.parent / name)
                break
    else:
        raise KspliceError(
            f"{package.name} holds no kernel image (boot/vmlinuz-* or lib/modules/*/vmlinuz)",
            hint="give the kernel image package: linux-image-<release> (.deb) or "
            "kernel-core (.rpm), not a meta package",
        )
    if len(deb_images) + len(rpm_images) > 1:
        raise KspliceError(f"{package.name} holds more than one kernel image")
    found.config = config if config.is_file() else None
    if is_real_symbol_map(system_map):
        found.system_map = system_map


# Module.symvers has a line per exported symbol, 2 MB for a distro kernel: far more is not one.
_MAX_SYMVERS = 256 << 20


def _decompressed(path: Path) -> Path:
    """symvers.xz or symvers.gz of a kernel package, decompressed beside it (streamed, capped:
    the package is input from outside)."""
    if path.suffix not in (".xz", ".gz"):
        return path
    out = path.with_suffix("")
    try:
        with (
            lzma.open(path) if path.suffix == ".xz" else gzip.open(path) as src,
            atomic_output(out) as dst,
        ):
            if not copy_at_most(src, dst, _MAX_SYMVERS):
                raise ArchiveError(
                    f"{path} decompresses to more than {_MAX_SYMVERS} bytes: not a Module.symvers",
                    hint="the package is damaged or hostile; take it again from the distribution",
                )
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ArchiveError(
            f"{path}: not readable {path.suffix[1:]} data: {e}",
            hint="the package is damaged; take it again from the distribution",
        ) from e
    return out


def is_real_symbol_map(path: Path) -> bool:
    """Debian's image ships a one-line stub System.map ("ffffffffffffffff B The real System.map
    is in the linux-image-<version>-dbg package"): a real map has many `address type name`
    lines."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = [f.readline() for _ in range(3)]
    return all(re.fullmatch(rb"[0-9a-fA-F]+ [A-Za-z] \S+\n", line) for line in head)


def _headers_pieces(root: Path, release: str | None, package: Path) -> Path | None:
    """Module.symvers of usr/src/linux-headers-<release> (.deb) or usr/src/kernels/<release>
    (kernel-devel); the headers of another release than the image's are refused."""
    candidates = sorted(root.glob("usr/src/linux-headers-*/Module.symvers")) + sorted(
        root.glob("usr/src/kernels/*/Module.symvers")
    )
    if release is not None and candidates:
        ours = [c for c in candidates if c.parent.name.removeprefix("linux-headers-") == release]
        if not ours:
            theirs = ", ".join(c.parent.name for c in candidates)
            raise KspliceError(
                f"{package.name} holds the headers of {theirs}, not of the kernel package's "
                f"release {release}",
                hint=f"give linux-headers-{release} (.deb) or the kernel-devel of {release}",
            )
        candidates = ours
    return candidates[0] if candidates else None


def _debug_symbol_map(package: Path, cache: Path, release: str | None) -> Path | None:
    """The System.map of a -dbg/debuginfo package, else one made with nm from its vmlinux."""

    def wanted(name: str) -> bool:
        # Only the map and the vmlinux: a -dbg package is mostly the modules' debug info.
        base = name.rsplit("/", 1)[-1]
        return (
            base.startswith("System.map")
            or base == f"vmlinux-{release}"
            or (name.endswith(f"/{release}/vmlinux"))
        )

    root = _unpacked(package, cache, wanted, tag="symbols")
    for path in sorted(root.rglob("System.map*")):
        if is_real_symbol_map(path):
            return path
    vmlinuxes = sorted(p for p in root.rglob("vmlinux*") if p.is_file())
    if not vmlinuxes:
        return None
    out = root / "System.map.nm"
    if not out.is_file():
        # Streamed: the symbol table of a debug vmlinux from outside has no size of its own.
        with atomic_output(out) as dst, piped(["nm", "-n", vmlinuxes[0]]) as nm:
            shutil.copyfileobj(nm, dst)
    return out


@dataclass(frozen=True)
class PackageTarget:
    """What the kernel packages provide; any of it may be None."""

    release: str | None
    binary: Path | None
    kconfig: Path | None
    symvers: Path | None
    system_map: Path | None
    modules: Path | None  # lib/modules/<release> of the image package


def target_from_packages(
    *,
    kernel: Path | None,
    headers: Path | None,
    debug: Path | None,
    cache: Path,
    source: KernelSource | None,
    need_symbol_map: bool,
    need_symvers: bool,
) -> PackageTarget:
    """Unpack the kernel packages given and pick the target's files out of them."""
    infos = [package_info(p) for p in (kernel, headers, debug) if p is not None]
    for info in infos:
        check_arch(info)
        check_version(info, source)
    found = _Found()
    modules = None
    if kernel is not None:
        root = _unpacked(kernel, cache)
        _kernel_pieces(root, found, kernel)
        for base in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
            if found.release and (base / found.release).is_dir():
                modules = base / found.release
    if headers is not None:
        found.symvers = (
            _headers_pieces(_unpacked(headers, cache, tag="all"), found.release, headers)
            or found.symvers
        )
        if found.symvers is None:
            raise KspliceError(f"{headers.name} holds no Module.symvers")
    if need_symbol_map and found.system_map is None and debug is not None:
        found.system_map = _debug_symbol_map(debug, cache, found.release)
        if found.system_map is None:
            raise KspliceError(f"{debug.name} holds no System.map and no vmlinux")
    missing = []
    release = found.release or "<release>"
    if need_symbol_map and found.system_map is None:
        missing.append(
            "the symbol map: give --system-map with the target's System.map or a copy of "
            f"its /proc/kallsyms (as root), or --debug-package linux-image-{release}-dbg "
            "(.deb) / kernel-debuginfo (.rpm)"
        )
    if need_symvers and found.symvers is None:
        missing.append(
            f"Module.symvers: give --headers-package linux-headers-{release} (.deb, "
            "`apt-get download`) or kernel-devel (.rpm)"
        )
    if missing:
        raise KspliceError(
            "the kernel packages do not describe the whole target; missing " + "; ".join(missing),
            hint="or give the single files with --system-map, --kconfig, --symvers",
        )
    return PackageTarget(
        found.release, found.vmlinuz, found.config, found.symvers, found.system_map, modules
    )


@dataclass(frozen=True)
class KernelPackages:
    """The target kernel's distro packages, as --kernel-package, --headers-package and
    --debug-package name them."""

    kernel: Path | None = None
    headers: Path | None = None
    debug: Path | None = None

    def given(self) -> bool:
        return any(p is not None for p in (self.kernel, self.headers, self.debug))


def unpack_kernel_packages(
    spec: TargetSpec, packages: KernelPackages, *, cache: Path, source: KernelSource | None
) -> TargetSpec:
    """spec with what the packages hold (unpacked under cache, checked against source's
    version) filled in wherever spec itself names nothing."""
    if not packages.given():
        return spec
    found = target_from_packages(
        kernel=packages.kernel,
        headers=packages.headers,
        debug=packages.debug,
        cache=cache,
        source=source,
        need_symbol_map=not spec.names_symbol_map(),
        need_symvers=not spec.names_symvers(),
    )
    return replace(
        spec,
        system_map=spec.system_map or found.system_map,
        kconfig=spec.kconfig or found.kconfig,
        symvers=spec.symvers or found.symvers,
        binary=spec.binary or found.binary,
        release=spec.release or found.release,
        # The image's lib/modules/<release>: run-pre of a module unit reads its .ko there.
        modules_dir=spec.modules_dir or found.modules,
    )
