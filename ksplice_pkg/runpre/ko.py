"""Run-pre for code of a loadable module: the pre object against the module's own .ko.

A distro .ko is a relocatable object, so unlike vmlinux it still carries its relocations: the
pre object's function bytes are compared with the .ko's with the relocation sites of both masked,
and the evidence of which symbol each site refers to is read from the .ko's relocation entries
(or, for a call the assembler resolved inside the .ko's single .text, from the displacement).

The .ko itself, its symbols and their sympos, is the target's (target/modules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ksplice_pkg.elf.model import RELOC_FORMS, SHN_UNDEF, STT_FUNC, Relocation, Symbol
from ksplice_pkg.elf.query import is_text, named_target, relocations_in, symbol_at
from ksplice_pkg.errors import RunPreMismatchError
from ksplice_pkg.runpre.verify import PreFunction, PreReloc, first_difference, masked
from ksplice_pkg.target.modules import ModuleBinary

_MISMATCH_HINT = (
    "the source tree, its .config or the compiler differ from those that built the target's "
    "module: build the update from the target's exact source package and configuration, and "
    "give the modules of the same kernel image (--modules-dir)"
)


@dataclass(frozen=True)
class ModuleMatch:
    index: int  # the function's symbol in the .ko's symtab
    sympos: int
    # pre reloc offset -> the .ko symbol (index) the module's code references at that site
    references: dict[int, int] = field(default_factory=dict)


def verify_in_module(ko: ModuleBinary, fn: PreFunction) -> ModuleMatch:
    """The function of the .ko that fn's code matches, with what its relocation sites mean."""
    candidates = [
        i
        for i in ko.defined_named(fn.name)
        if ko.obj.symbols[i].type == STT_FUNC and is_text(ko.obj, ko.obj.symbols[i].shndx)
    ]
    if not candidates:
        raise RunPreMismatchError(
            f"module {ko.name}: the target's {ko.path.name} has no function {fn.name}",
            hint="it may be inlined into its callers there; otherwise " + _MISMATCH_HINT,
        )
    problems: list[str] = []
    matches: list[ModuleMatch] = []
    for index in candidates:
        problem, references = _compare(ko, fn, ko.obj.symbols[index])
        if problem is None:
            matches.append(ModuleMatch(index, 0, references))
        else:
            problems.append(problem)
    if not matches:
        raise RunPreMismatchError(
            f"module {ko.name}: {fn.name}: the pre-patch code does not match the target's "
            f"{ko.path.name}: {'; '.join(problems)}",
            hint=_MISMATCH_HINT,
        )
    if len(matches) > 1:
        raise RunPreMismatchError(
            f"module {ko.name}: {fn.name}: ambiguous, {len(matches)} functions of that name "
            f"in {ko.path.name} match the pre-patch code",
            hint="patch the function through a caller or a uniquely named function instead",
        )
    (match,) = matches
    return ModuleMatch(match.index, ko.sympos(match.index), match.references)


def _compare(ko: ModuleBinary, fn: PreFunction, sym: Symbol) -> tuple[str | None, dict[int, int]]:
    sec = ko.obj.sections[sym.shndx]
    if sym.size != len(fn.code):
        return f"it is {sym.size} bytes long, the pre-patch code {len(fn.code)}", {}
    code = sec.data[sym.value : sym.value + sym.size]
    mask = masked(fn)
    ko_relocs = {
        r.offset - sym.value: r for r in relocations_in(ko.obj, sym.shndx, sym.value, sym.size)
    }
    for site, r in ko_relocs.items():
        size = RELOC_FORMS[r.type].size if r.type in RELOC_FORMS else 0
        mask[site : site + size] = b"\x01" * size
    if (at := first_difference(fn.code, code, mask)) is not None:
        ours, theirs = fn.code[at], code[at]
        return f"differs at +{at:#x} (ours {ours:#04x}, the module's {theirs:#04x})", {}
    references: dict[int, int] = {}
    for reloc in fn.relocs:
        if not reloc.symbol:
            continue
        seen = _referenced(ko, reloc, ko_relocs.get(reloc.offset), sym, code)
        if seen is None:
            continue
        index, place = seen
        index = _named_there(ko, index, place, reloc.symbol)
        name = ko.obj.symbols[index].name
        if name != reloc.symbol:
            return f"refers at +{reloc.offset:#x} to {name}, not to {reloc.symbol}", {}
        references[reloc.offset] = index
    return None, references


# Where, in a section of the .ko, the pre relocation's symbol must start for the .ko's code to
# refer to the same place: (section index, offset), or None when the reference is external.
_Place = tuple[int, int] | None


def _named_there(ko: ModuleBinary, index: int, place: _Place, wanted: str) -> int:
    """The symbol called wanted that starts at place, if there is one; else index.

    A reference through a section symbol only gives a place, and which symbol it reads as
    depends on a guess: one past the end of an array (a loop's end pointer) is where the next
    variable starts, and a PC-relative addend's distance to the end of the instruction is 5,
    not 4, when an immediate follows (`cmpb $0, flag(%rip)`), so it reads as the byte before.
    Empty objects (lockdep's `__key.N` without CONFIG_LOCKDEP) share an address. The pre
    object names its symbol: the .ko agrees when its symbol of that name starts where the
    pre relocation's addend, applied to the .ko's site, says it must.
    """
    if place is None or ko.obj.symbols[index].name == wanted:
        return index
    shndx, offset = place
    for i, other in enumerate(ko.obj.symbols):
        if other.name == wanted and other.shndx == shndx and other.value == offset:
            return i
    return index


def _referenced(
    ko: ModuleBinary, reloc: PreReloc, ko_reloc: Relocation | None, fn: Symbol, code: bytes
) -> tuple[int, _Place] | None:
    """The .ko symbol a pre relocation site refers to in the module's code, and the place the
    pre relocation's own symbol must start at for the two to agree."""
    if ko_reloc is not None:
        named, addend = named_target(ko.obj, ko_reloc)
        if named is None:
            return None
        if named.shndx == SHN_UNDEF:
            return ko.index(named), None
        # named + addend is the place the .ko's code refers to; the pre code's symbol lies
        # reloc.addend before it.
        return ko.index(named), (named.shndx, named.value + addend - reloc.addend)
    form = RELOC_FORMS.get(reloc.type)
    if form is None or not form.pc_relative:
        return None
    # No relocation: the assembler resolved a PC-relative reference into the .ko's own
    # section (GCC put every function of the unit in one .text). S = value + P - A.
    site = code[reloc.offset : reloc.offset + form.size]
    value = int.from_bytes(site, "little", signed=form.signed)
    target = value + fn.value + reloc.offset - reloc.addend
    found = symbol_at(ko.obj, fn.shndx, target)
    if found is None or found.value != target:
        return None
    return ko.index(found), (fn.shndx, target)
