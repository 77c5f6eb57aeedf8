"""The target kernel's description as ksplice-create takes it: a config directory
(System.map or a copy of /proc/kallsyms, .config, Module.symvers, optionally vmlinuz/vmlinux),
with single files overridable on the command line."""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import RELEASE_RE

_SYMBOL_MAPS = ("System.map", "kallsyms")
# Written by `ksplice-pkg fetch` into the target directories it lays out.
FETCHED_MARK = "kernel.release"
_BINARIES = ("vmlinux", "vmlinuz")
MODULES_DIR = "modules"


@dataclass(frozen=True)
class TargetFiles:
    system_map: Path
    kconfig: Path
    symvers: Path
    binary: Path | None  # vmlinux or vmlinuz, for run-pre verification
    release: str
    # lib/modules/<release> of the target's image: the .ko files run-pre compares module code
    # against. Needed only when the patch changes code of a loadable module.
    modules_dir: Path | None = None


def _first(directory: Path | None, names: tuple[str, ...]) -> Path | None:
    if directory is None:
        return None
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def read_text_input(path: Path, what: str, hint: str) -> str:
    """A text input file of the target (a .config, a Module.symvers): unreadable or binary
    content is one clear error naming the file and what it should have been."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise KspliceError(f"cannot read {path}: {e.strerror}", hint=hint) from e
    except UnicodeDecodeError as e:
        raise KspliceError(f"{path} is not {what}: it is not text", hint=hint) from e


def check_release(release: str, origin: str) -> str:
    # One rule with the manifest's: anything else, `$(...)` and spaces above all, is refused
    # before anything runs.
    if not RELEASE_RE.fullmatch(release):
        raise KspliceError(
            f"{origin} {release!r} is not a kernel release",
            hint="a release is what `uname -r` prints: letters, digits and . + _ ~ -",
        )
    return release


def version_string(binary: Path) -> str | None:
    """The `uname -r` of a bzImage (its header's kernel_version) or a vmlinux."""
    # Mapped, not read: a vmlinux from a -dbg package is hundreds of MB.
    try:
        with binary.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            # bzImage: "HdrS" at 0x202, and a pointer (minus 0x200) to the version string at
            # 0x20e.
            if data[0x202:0x206] == b"HdrS":
                offset = int.from_bytes(data[0x20E:0x210], "little") + 0x200
                end = data.find(b"\0", offset)
                text = data[offset:end].decode(errors="replace")
                return text.split()[0] if text else None
            m = re.search(rb"Linux version (\S+) \(", data)
            return m[1].decode() if m else None
    except ValueError:  # mmap of an empty file
        return None
    except OSError as e:
        raise KspliceError(f"cannot read the kernel image {binary}: {e.strerror}") from e


@dataclass(frozen=True)
class TargetSpec:
    """The target as the options name it: a config directory and single-file overrides (a
    single file named wins over what the directory holds). Distro kernel packages are unpacked
    into such paths by the first stage of the pipeline (distro/kernelpkg.py)."""

    config_dir: Path | None = None
    system_map: Path | None = None
    kconfig: Path | None = None
    symvers: Path | None = None
    binary: Path | None = None
    release: str | None = None
    modules_dir: Path | None = None

    def names_symbol_map(self) -> bool:
        return self.system_map is not None or _first(self.config_dir, _SYMBOL_MAPS) is not None

    def names_symvers(self) -> bool:
        return self.symvers is not None or _first(self.config_dir, ("Module.symvers",)) is not None

    def resolve(self) -> TargetFiles:
        return resolve_target(
            self.config_dir,
            system_map=self.system_map,
            kconfig=self.kconfig,
            symvers=self.symvers,
            binary=self.binary,
            release=self.release,
            modules_dir=self.modules_dir,
        )


def resolve_target(
    config_dir: Path | None,
    *,
    system_map: Path | None,
    kconfig: Path | None,
    symvers: Path | None,
    binary: Path | None,
    release: str | None,
    modules_dir: Path | None = None,
) -> TargetFiles:
    hint = (
        "give --config=DIR holding System.map (or a copy of /proc/kallsyms), .config and "
        "Module.symvers of the target kernel, or name them with --system-map, --kconfig, --symvers"
    )
    found_map = system_map or _first(config_dir, _SYMBOL_MAPS)
    found_config = kconfig or _first(config_dir, (".config", "config"))
    found_symvers = symvers or _first(config_dir, ("Module.symvers",))
    missing = [
        what
        for what, path in (
            ("a System.map or kallsyms", found_map),
            (".config", found_config),
            ("Module.symvers", found_symvers),
        )
        if path is None or not path.is_file()
    ]
    if missing or found_map is None or found_config is None or found_symvers is None:
        where = f" in {config_dir}" if config_dir else ""
        if config_dir is not None and found_map is None and (config_dir / FETCHED_MARK).is_file():
            # fetch lays out everything but the symbol map, which only the booted kernel has.
            hint = (
                f"{config_dir} was laid out by `ksplice-pkg fetch`: run it again with "
                "--kallsyms to capture the kernel's real symbol map, or give --system-map"
            )
        raise KspliceError(f"the target kernel's {', '.join(missing)} not found{where}", hint=hint)
    found_binary = binary or _first(config_dir, _BINARIES)
    if found_binary is not None and not found_binary.is_file():
        raise KspliceError(f"{found_binary} does not exist")
    binary_release = version_string(found_binary) if found_binary is not None else None
    if binary_release is not None:
        check_release(binary_release, f"the version string in {found_binary}")
    if release is not None:
        check_release(release, "--kernel-release")
        if binary_release is not None and release != binary_release:
            raise KspliceError(
                f"--kernel-release {release} does not match {found_binary}, which is kernel "
                f"{binary_release}",
                hint="give the target kernel's own vmlinuz, or its release as `uname -r` "
                "prints it there",
            )
    release = release or binary_release
    if not release:
        raise KspliceError(
            "the target kernel release is unknown",
            hint="give --kernel-release (what `uname -r` prints on the target), or a vmlinuz",
        )
    # `fetch` links the image's lib/modules/<release> into the target dir as `modules`.
    found_modules = modules_dir or (
        config_dir / MODULES_DIR
        if config_dir is not None and (config_dir / MODULES_DIR).is_dir()
        else None
    )
    if found_modules is not None and not found_modules.is_dir():
        raise KspliceError(
            f"the modules directory {found_modules} does not exist",
            hint="give the target's lib/modules/<release> (from its image package)",
        )
    return TargetFiles(found_map, found_config, found_symvers, found_binary, release, found_modules)
