"""Do the target's files belong together? Each input names its own kernel; a mix (a symbol map
or Module.symvers of another build, a .config of another flavour, a release that is not the
image's) is refused naming both sides, before anything is built, rather than surfacing later as
a run-pre mismatch blamed on the source tree or a module the kernel will not load.

With the target's binary every check is a comparison against it: its banner (linux_banner)
names its release and compiler and its __kcrctab holds the CRC of every export. Without it, the
symbol map and Module.symvers are compared with each other, and the rest is said to be unchecked.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.target.files import TargetFiles, read_text_input
from ksplice_pkg.target.symbols import SymbolMap
from ksplice_pkg.target.symvers import Symvers

_MAX_NAMED = 5


@dataclass(frozen=True)
class KernelConfig:
    path: Path
    values: dict[str, str]  # CONFIG_FOO -> y, m, "text" (quotes kept off)

    @classmethod
    def load(cls, path: Path) -> KernelConfig:
        hint = "give the target kernel's .config (Debian: /boot/config-<release>)"
        text = read_text_input(path, "a kernel .config", hint)
        values = {}
        for line in text.splitlines():
            name, eq, value = line.partition("=")
            if eq and name.startswith("CONFIG_"):
                values[name] = value.strip('"')
        if not values:
            raise KspliceError(f"{path} is not a kernel .config: no CONFIG_ lines", hint=hint)
        return cls(path, values)


@dataclass(frozen=True)
class CheckedTarget:
    """The target's text files, parsed while checking that they belong together."""

    config: KernelConfig
    symvers: Symvers


def check_target(target: TargetFiles, symbols: SymbolMap, vmlinux: Vmlinux | None) -> CheckedTarget:
    """Refuse target files that do not belong to one kernel."""
    config = KernelConfig.load(target.kconfig)
    if config.values.get("CONFIG_LIVEPATCH") != "y":
        raise KspliceError(
            f"{target.kconfig} does not enable CONFIG_LIVEPATCH: that kernel cannot load "
            "livepatch updates",
            hint="check that it is the target kernel's .config",
        )
    _config_against_map(config, symbols)
    symvers = Symvers.load(target.symvers)
    _symvers_against_map(symvers, symbols)
    if vmlinux is None:
        logger.info(
            "without the target's vmlinuz, its release, .config and symbol map are not "
            "checked against its binary"
        )
        return CheckedTarget(config, symvers)
    # Messages name the user's file, not the vmlinux extracted from it into the cache.
    image = target.binary or vmlinux.path
    shift = symbols.kaslr_shift(vmlinux.text_address)
    banner = _banner(symbols, vmlinux, shift, target.release, image)
    _config_against_banner(config, banner, image)
    _symvers_against_binary(symvers, symbols, vmlinux, shift, image)
    return CheckedTarget(config, symvers)


# Options whose code is in vmlinux exactly when they are =y, each with a function that has had
# that name since long before 5.4 (the oldest kernel with the klp relocations we write). With a
# kernel package, the .config comes from it and the map from the user (kallsyms of a running
# machine): this catches a map of another flavour or build before the binary is even read.
_CONFIG_SYMBOLS = {
    "CONFIG_LIVEPATCH": "klp_enable_patch",
    "CONFIG_KPROBES": "register_kprobe",
    "CONFIG_KASAN": "kasan_report",
    "CONFIG_KCOV": "__sanitizer_cov_trace_pc",
    "CONFIG_DEBUG_KMEMLEAK": "kmemleak_alloc",
    "CONFIG_LOCKDEP": "lock_acquire",
}


# A whole kernel's map has tens of thousands of symbols; a smaller one was cut down (by hand, or
# an nm of a stripped image) and the absence of a name in it proves nothing.
_WHOLE_MAP = 10_000


def _config_against_map(config: KernelConfig, symbols: SymbolMap) -> None:
    if len(symbols) < _WHOLE_MAP:
        return
    problems = []
    for option, function in _CONFIG_SYMBOLS.items():
        enabled = config.values.get(option) == "y"
        present = bool(symbols.vmlinux_symbols_named(function))
        if enabled != present:
            problems.append(
                f"{option} is {'on' if enabled else 'off'} in it but the map "
                f"{'lacks' if enabled else 'has'} {function}"
            )
    if problems:
        raise KspliceError(
            f"{config.path} does not match the symbol map {symbols.source}: " + "; ".join(problems),
            hint="take both from the same kernel build: the .config from its image package "
            "(/boot/config-<release>), the map from its System.map or /proc/kallsyms",
        )


def _symvers_against_map(symvers: Symvers, symbols: SymbolMap) -> None:
    """Every symbol vmlinux exports has a __ksymtab_<name> entry in its symbol map."""
    exported = set(symvers.vmlinux_exports())
    in_map = {
        s.name.removeprefix("__ksymtab_")
        for s in symbols.symbols
        if s.module is None and s.name.startswith("__ksymtab_")
    }
    if not in_map:
        return  # a map without the export tables (an nm of a stripped vmlinux): nothing to compare
    missing, extra = sorted(exported - in_map), sorted(in_map - exported)
    if missing or extra:
        raise KspliceError(
            f"{symvers.path} and the symbol map {symbols.source} are of different kernels: "
            + "; ".join(
                f"{what}: {', '.join(names[:_MAX_NAMED])}"
                + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")
                for what, names in (
                    ("exported in Module.symvers only", missing),
                    ("exported in the symbol map only", extra),
                )
                if names
            ),
            hint="take both from the target kernel: Module.symvers from its headers package, "
            "the symbol map from its System.map or /proc/kallsyms",
        )


def _banner(symbols: SymbolMap, vmlinux: Vmlinux, shift: int, release: str, image: Path) -> str:
    """linux_banner as the binary holds it, found through the symbol map: when the map is of
    another kernel, the address it gives does not hold this kernel's banner."""
    found = symbols.vmlinux_symbols_named("linux_banner")
    hint = "give the target kernel's System.map or a copy of its /proc/kallsyms"
    if not found:
        raise KspliceError(f"{symbols.source} has no linux_banner: it is not a kernel's map")
    try:
        text = vmlinux.read(found[0].address - shift, 256)
    except KspliceError as e:
        raise KspliceError(
            f"the symbol map {symbols.source} is not of the kernel in {image}: its "
            f"linux_banner lies outside that image ({e.message})",
            hint=hint,
        ) from e
    banner = text.split(b"\0", 1)[0].decode(errors="replace")
    expected = f"Linux version {release} "
    if not banner.startswith(expected):
        raise KspliceError(
            f"the symbol map {symbols.source} is not of the kernel {release} in "
            f"{image}: where it puts linux_banner the image holds {banner[:60]!r}",
            hint=hint,
        )
    return banner


# The words mkcompile_h puts in UTS_VERSION for these options (after "#<build number> ").
_BANNER_FLAGS = {"SMP": "CONFIG_SMP", "PREEMPT_RT": "CONFIG_PREEMPT_RT"}


def _config_against_banner(config: KernelConfig, banner: str, image: Path) -> None:
    compiler = config.values.get("CONFIG_CC_VERSION_TEXT")
    problems = []
    if compiler and compiler not in banner:
        problems.append(f"it was made for compiler {compiler!r}")
    flags = re.search(r"\) #\S+ ((?:[A-Z_]+ )*)", banner)
    words = set(flags[1].split()) if flags else set()
    for word, option in _BANNER_FLAGS.items():
        if flags and (word in words) != (config.values.get(option) == "y"):
            problems.append(f"{option} is {'off' if word in words else 'on'} in it")
    if problems:
        raise KspliceError(
            f"{config.path} is not the configuration of the kernel in {image} "
            f"({banner[:100]!r}): {'; '.join(problems)}",
            hint="give the target kernel's own .config (Debian: /boot/config-<release>)",
        )


def _symvers_against_binary(
    symvers: Symvers, symbols: SymbolMap, vmlinux: Vmlinux, shift: int, image: Path
) -> None:
    """The CRC each export has in Module.symvers is the one the binary's __kcrctab holds: the
    module loader checks exactly these, so a Module.symvers of another build gives a module the
    kernel refuses ("disagrees about version of symbol")."""
    for gpl in (False, True):
        suffix = "_gpl" if gpl else ""
        starts = [
            symbols.vmlinux_symbols_named(f"__start___{table}{suffix}")
            for table in ("ksymtab", "kcrctab")
        ]
        stop = symbols.vmlinux_symbols_named(f"__stop___ksymtab{suffix}")
        if not all(starts) or not stop:
            return  # no CRC tables in the map (no MODVERSIONS): nothing to compare
        ksymtab, kcrctab = starts[0][0].address, starts[1][0].address
        # The n-th __ksymtab entry's CRC is the n-th u32 of __kcrctab: rank entries by address
        # rather than assume an entry size.
        entries = sorted(
            s.address
            for s in symbols.symbols
            if s.module is None
            and s.name.startswith("__ksymtab_")
            and ksymtab <= s.address < stop[0].address
        )
        crcs = vmlinux.read(kcrctab - shift, 4 * len(entries))
        wrong = []
        for export in symvers.exports:
            if export.module != "vmlinux" or export.gpl != gpl:
                continue
            entry = symbols.vmlinux_symbols_named(f"__ksymtab_{export.name}")
            if not entry:
                continue
            n = bisect.bisect_left(entries, entry[0].address)
            if n < len(entries) and entries[n] == entry[0].address:
                crc = int.from_bytes(crcs[4 * n : 4 * n + 4], "little")
                if crc != export.crc:
                    wrong.append(f"{export.name} ({export.crc:#010x}, kernel {crc:#010x})")
        if wrong:
            raise KspliceError(
                f"{symvers.path} is not the Module.symvers of the kernel in {image}: "
                f"{len(wrong)} symbol CRCs differ, e.g. {', '.join(wrong[:3])}",
                hint="take Module.symvers from the target kernel's headers package",
            )
