"""What the target binary says each pre-object symbol is, gathered by run-pre on demand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import functions, named_target, relocations_in
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import InternalError, KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.runpre.ko import ModuleMatch, verify_in_module
from ksplice_pkg.runpre.verify import Match, PreFunction, PreReloc, verify_function
from ksplice_pkg.target.modules import ModuleBinary
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap


def pre_function(obj: ElfObject, name: str) -> PreFunction:
    fn = functions(obj)[name]
    code = obj.sections[fn.section].data[fn.offset : fn.offset + fn.size]
    relocs = []
    for r in relocations_in(obj, fn.section, fn.offset, fn.size):
        named, addend = named_target(obj, r)
        relocs.append(PreReloc(r.offset - fn.offset, r.type, named.name if named else "", addend))
    return PreFunction(name=name, code=code, relocs=tuple(relocs))


class Evidence:
    """What the target binary says each pre-object symbol is, gathered by run-pre on demand.

    The changed functions are verified up front; a symbol the update references that none of
    them does is looked up by verifying another function of the unit that references it (or
    the symbol itself, when it is a function of the unit).
    """

    def __init__(self, unit: str, pre: ElfObject, symbols: SymbolMap, vmlinux: Vmlinux | None):
        self.unit, self.pre, self.symbols, self.vmlinux = unit, pre, symbols, vmlinux
        self.known: dict[str, KernelSymbol] = {}
        self.tried: set[str] = set()

    def verify(self, name: str) -> Match:
        if self.vmlinux is None:
            raise InternalError(f"run-pre of {name} asked for without a target binary")
        pre_fn = pre_function(self.pre, name)
        match = verify_function(pre_fn, self.symbols, self.vmlinux)
        self.tried.add(name)
        for reloc in pre_fn.relocs:
            seen = match.references.get(reloc.offset)
            if seen is not None and reloc.symbol:
                self.known.setdefault(reloc.symbol, seen)
        at = self.symbols.symbol_at(match.address)
        if at is not None:
            self.known.setdefault(name, at)
        return match

    def lookup(self, name: str) -> KernelSymbol | None:
        if name in self.known or self.vmlinux is None:
            return self.known.get(name)
        _gather(self, name)
        return self.known.get(name)


class ModuleEvidence:
    """What a module's .ko says each pre-object symbol of one of its units is.

    As Evidence does for vmlinux: the changed functions are verified against the .ko up front,
    and a symbol none of them references is looked up through another function of the unit.
    lookup gives the symbol's index in the .ko's symtab (defined there, or undefined: a symbol
    the module takes from vmlinux or another module).
    """

    def __init__(self, unit: str, pre: ElfObject, ko: ModuleBinary) -> None:
        self.unit, self.pre, self.ko = unit, pre, ko
        self.known: dict[str, int] = {}
        self.tried: set[str] = set()

    def verify(self, name: str) -> ModuleMatch:
        pre_fn = pre_function(self.pre, name)
        match = verify_in_module(self.ko, pre_fn)
        self.tried.add(name)
        for reloc in pre_fn.relocs:
            seen = match.references.get(reloc.offset)
            if seen is not None and reloc.symbol:
                self.known.setdefault(reloc.symbol, seen)
        self.known.setdefault(name, match.index)
        return match

    def lookup(self, name: str) -> int | None:
        if name in self.known:
            return self.known[name]
        _gather(self, name)
        return self.known.get(name)


class _Gatherer(Protocol):
    unit: str
    pre: ElfObject
    tried: set[str]

    @property
    def known(self) -> Mapping[str, object]: ...

    def verify(self, name: str) -> object: ...


def _gather(evidence: _Gatherer, name: str) -> None:
    """Verify functions that refer to name until one shows what it is (a few at most: each
    verification reads the target)."""
    for referrer in _referrers(evidence.pre, name)[:4]:
        if referrer in evidence.tried:
            continue
        try:
            evidence.verify(referrer)
        except KspliceError as e:
            logger.debug("%s: no evidence from %s: %s", evidence.unit, referrer, e.message)
            evidence.tried.add(referrer)
        if name in evidence.known:
            break


def _referrers(pre: ElfObject, name: str) -> list[str]:
    """The function name itself, if it is one, then the functions whose code refers to it."""
    pre_funcs = functions(pre)
    referrers = [name] if name in pre_funcs else []
    referrers += [
        f.name
        for f in pre_funcs.values()
        if any(
            (target := named_target(pre, r)[0]) is not None and target.name == name
            for r in relocations_in(pre, f.section, f.offset, f.size)
        )
    ]
    return referrers
