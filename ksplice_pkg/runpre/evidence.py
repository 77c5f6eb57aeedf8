"""What the target binary says each pre-object symbol is, gathered by run-pre on demand."""

from __future__ import annotations

from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import functions, named_target, relocations_in
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import InternalError, KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.runpre.verify import Match, PreFunction, PreReloc, verify_function
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
        pre_funcs = functions(self.pre)
        referrers = [name] if name in pre_funcs else []
        referrers += [
            f.name
            for f in pre_funcs.values()
            if any(
                (target := named_target(self.pre, r)[0]) is not None and target.name == name
                for r in relocations_in(self.pre, f.section, f.offset, f.size)
            )
        ]
        for referrer in referrers[:4]:
            if referrer in self.tried:
                continue
            try:
                self.verify(referrer)
            except KspliceError as e:
                logger.debug("%s: no evidence from %s: %s", self.unit, referrer, e.message)
                self.tried.add(referrer)
            if name in self.known:
                break
        return self.known.get(name)
