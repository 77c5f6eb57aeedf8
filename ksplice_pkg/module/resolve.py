"""Deciding how the module reaches each symbol it references but does not carry."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.model import SHN_UNDEF, ElfObject, Symbol
from ksplice_pkg.errors import KspliceError, RefusedError, UnknownSymbolError
from ksplice_pkg.module.extract import ExternalRef, Resolver
from ksplice_pkg.module.klp import klp_symbol_name
from ksplice_pkg.module.shared import NO_SHARED, SharedNew
from ksplice_pkg.runpre.evidence import Evidence, ModuleEvidence
from ksplice_pkg.target.modules import ModuleBinary, TargetModules
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap
from ksplice_pkg.target.symvers import Export, Symvers


def unit_resolver(
    change: UnitChange,
    evidence: Evidence | ModuleEvidence,
    symbols: SymbolMap,
    symvers: Symvers,
    modules: TargetModules,
    shared: SharedNew = NO_SHARED,
) -> Resolver:
    """How the unit's code reaches each symbol it references, from what run-pre showed of it:
    vmlinux's evidence, or its module's; shared are the new globals other units of the update
    define."""
    exported = set(symvers.vmlinux_exports())
    if isinstance(evidence, ModuleEvidence):
        return make_module_resolver(
            exported,
            module_exports(symvers.exports),
            symbols,
            evidence.ko,
            evidence.lookup,
            change.unit,
            change.diff.static_map,
            functools.partial(modules.binary, unit=change.unit),
            shared,
        )
    return make_resolver(
        exported, symbols, evidence.lookup, change.unit, change.diff.static_map, shared
    )


def _shared_ref(
    shared: SharedNew, sym: Symbol, unit: str, objname: str | None, depends: set[str]
) -> ExternalRef | None:
    """A new global of another unit of the update, which the module's own link resolves."""
    if sym.is_local or sym.is_defined or sym.name not in shared.owners:
        return None
    if shared.reachable_from(sym.name, objname, depends):
        return ExternalRef(sym.name, exported=True)
    owner = shared.owners[sym.name]
    raise RefusedError(
        f"{unit}: the update refers to {sym.name}, which the update adds to module {owner}: "
        f"code of {objname or 'vmlinux'} cannot call it, since {owner} may not be loaded",
        hint="the change needs the new code of a module it does not depend on",
    )


def make_resolver(
    exported: set[str],
    symbols: SymbolMap,
    evidence: Callable[[str], KernelSymbol | None],
    unit: str,
    static_map: Mapping[str, str],
    shared: SharedNew = NO_SHARED,
) -> Resolver:
    """evidence maps pre-object symbol names to the kernel symbol the target binary showed them
    to be (run-pre); without it, only names unique in vmlinux can be used. static_map renames
    post static locals to their pre names."""

    def resolve(obj: ElfObject, sym: Symbol) -> ExternalRef:
        if not sym.is_local and sym.name in exported:
            return ExternalRef(sym.name, exported=True)
        if (ref := _shared_ref(shared, sym, unit, None, set())) is not None:
            return ref
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
            raise UnknownSymbolError(
                name,
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


def make_module_resolver(
    exported: set[str],
    module_exports: Mapping[str, str],
    symbols: SymbolMap,
    ko: ModuleBinary,
    evidence: Callable[[str], int | None],
    unit: str,
    static_map: Mapping[str, str],
    binary: Callable[[str], ModuleBinary],
    shared: SharedNew = NO_SHARED,
) -> Resolver:
    """How a unit of module ko.name reaches what it references.

    Only vmlinux's exports stay ordinary relocations: the update must load whether or not the
    module is loaded, so even the module's own exports are klp relocations against it, which
    livepatch writes when the module comes (klp_module_coming). evidence maps pre-object names
    to the .ko symbol run-pre saw them refer to; module_exports maps the names other modules
    export to their module, and binary gives a module's .ko by name. The globals of the
    modules ko depends on are klp relocations against those modules (counted in their .ko);
    klp.convert puts them in ko.name's own klp relocation sections.
    """

    def vmlinux_ref(name: str) -> ExternalRef:
        found = symbols.vmlinux_symbols_named(name)
        if len(found) == 1:
            return ExternalRef(klp_symbol_name("vmlinux", name, 0), exported=False)
        hint = "check that --modules-dir and --system-map belong to the target kernel"
        if not found:
            raise UnknownSymbolError(
                name,
                f"{unit}: the update refers to {name}, which neither module {ko.name} "
                f"({ko.path}) nor vmlinux defines at all",
                hint=hint,
            )
        raise KspliceError(
            f"{unit}: the update refers to {name}, which neither module {ko.name} "
            f"({ko.path}) nor vmlinux defines once",
            hint=hint,
        )

    def dependency_ref(name: str) -> ExternalRef | None:
        # klp_resolve_symbols (6.1) lets a module's klp relocations name symbols of the
        # modules it depends on: those are loaded whenever it is, so they resolve when it
        # comes. Only their globals can be meant: the unit refers to them by an extern.
        found = [
            (dep, i)
            for dep in sorted(ko.depends())
            for i in binary(dep).defined_named(name)
            if not binary(dep).obj.symbols[i].is_local
        ]
        if not found:
            return None
        if len(found) > 1:
            raise KspliceError(
                f"{unit}: {name} is defined by several modules {ko.name} depends on "
                f"({', '.join(dep for dep, _ in found)})",
                hint="check that --modules-dir belongs to the target kernel",
            )
        ((dep, index),) = found
        return ExternalRef(klp_symbol_name(dep, name, binary(dep).sympos(index)), exported=False)

    depends = ko.depends()  # read from .modinfo once, not for every symbol

    def resolve(obj: ElfObject, sym: Symbol) -> ExternalRef:
        if not sym.is_local and sym.name in exported:
            return ExternalRef(sym.name, exported=True)
        if (ref := _shared_ref(shared, sym, unit, ko.name, depends)) is not None:
            return ref
        name = static_map.get(sym.name, sym.name)
        index = evidence(name)
        if index is None:
            defined = ko.defined_named(name)
            if len(defined) > 1:
                raise KspliceError(
                    f"{unit}: {name} has {len(defined)} definitions in module {ko.name} and no "
                    "unchanged code shows which one is meant",
                    hint="patch a function whose unchanged code refers to it",
                )
            index = defined[0] if defined else None
        if index is not None and ko.obj.symbols[index].shndx != SHN_UNDEF:
            return ExternalRef(klp_symbol_name(ko.name, name, ko.sympos(index)), exported=False)
        in_dependency = dependency_ref(name)
        if in_dependency is not None:
            return in_dependency
        owner = module_exports.get(name)
        if owner is not None:
            raise RefusedError(
                f"{unit}: the update refers to {name}, which module {owner} exports, but module "
                f"{ko.name} does not depend on {owner}",
                hint=f"{owner} may not be loaded when {ko.name} is; patch code that does not "
                "call into it",
            )
        return vmlinux_ref(name)

    return resolve


def module_exports(exports: Iterable[Export]) -> dict[str, str]:
    """name -> module, for the symbols modules export (Module.symvers names the module by its
    path in the tree; the module's name is the file name with `-` as `_`, as kbuild's)."""
    return {
        e.name: e.module.rsplit("/", 1)[-1].replace("-", "_")
        for e in exports
        if e.module != "vmlinux"
    }
