"""Deciding how the module reaches each symbol it references but does not carry."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.module.extract import ExternalRef, Resolver
from ksplice_pkg.module.klp import klp_symbol_name
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap


def make_resolver(
    exported: set[str],
    symbols: SymbolMap,
    evidence: Callable[[str], KernelSymbol | None],
    unit: str,
    static_map: Mapping[str, str],
) -> Resolver:
    """evidence maps pre-object symbol names to the kernel symbol the target binary showed them
    to be (run-pre); without it, only names unique in vmlinux can be used. static_map renames
    post static locals to their pre names."""

    def resolve(obj: ElfObject, sym: Symbol) -> ExternalRef:
        if not sym.is_local and sym.name in exported:
            return ExternalRef(sym.name, exported=True)
        name = static_map.get(sym.name, sym.name)
        seen = evidence(name)
        if seen is not None:
            return ExternalRef(
                klp_symbol_name("vmlinux", seen.name, symbols.sympos(seen.name, seen.address)),
                exported=False,
            )
        candidates = symbols.vmlinux_symbols_named(name)
        if len(candidates) == 1:
            return ExternalRef(klp_symbol_name("vmlinux", name, 0), exported=False)
        if not candidates:
            raise KspliceError(
                f"{unit}: the update refers to {name}, which the target kernel's symbol map "
                "does not have",
                hint="check that --system-map belongs to the target kernel; a symbol that "
                "was inlined or optimised out there cannot be referenced",
            )
        raise KspliceError(
            f"{unit}: {name} has {len(candidates)} definitions in the target kernel and no "
            "unchanged code shows which one is meant",
            hint="give --vmlinux (or a vmlinuz) so run-pre verification can tell them apart",
        )

    return resolve
