"""Questions asked of a relocatable object: its functions, the symbol at an offset, what a
relocation really refers to, the relocations in a range, the ftrace entry, the callers.

Compiled with -ffunction-sections -fdata-sections, most references are against section symbols
(or assembler labels) plus an offset; these helpers turn them back into the named function or
object they point at, which is what the differ, run-pre and the extractor all reason about.
"""

from __future__ import annotations

from dataclasses import dataclass

from ksplice_pkg.elf.model import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_WRITE,
    SHT_PROGBITS,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
    ElfObject,
    Relocation,
    Symbol,
    is_pc_relative,
)


def is_text(obj: ElfObject, shndx: int) -> bool:
    if not 0 < shndx < len(obj.sections):
        return False
    return bool(obj.sections[shndx].flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Function:
    name: str
    symbol: int  # index in the object's symbol table
    section: int
    offset: int
    size: int


def functions(obj: ElfObject) -> dict[str, Function]:
    out: dict[str, Function] = {}
    for i, sym in enumerate(obj.symbols):
        if sym.type == STT_FUNC and sym.is_defined and is_text(obj, sym.shndx):
            out[sym.name] = Function(sym.name, i, sym.shndx, sym.value, sym.size)
    return out


def symbol_at(obj: ElfObject, shndx: int, offset: int) -> Symbol | None:
    """The named function or object of section shndx that covers offset."""
    best: Symbol | None = None
    for sym in obj.symbols:
        if (
            sym.shndx == shndx
            and sym.type in (STT_FUNC, STT_OBJECT)
            and sym.name
            and sym.value <= offset < sym.value + max(sym.size, 1)
        ):
            best = sym
    return best


# In code, a PC-relative addend is the target's offset minus the distance from the relocated
# field to the end of the instruction: 4 when the displacement is last, more when an immediate
# follows it (`cmpl $0, x(%rip)` has 5). In data, the addend is the offset itself.
_CODE_BIASES = (4, 5, 6, 8)


def biases(rtype: int, in_code: bool) -> tuple[int, ...]:
    return _CODE_BIASES if in_code and is_pc_relative(rtype) else (0,)


def referenced_symbol(
    obj: ElfObject, shndx: int, addend: int, rtype: int, in_code: bool = True
) -> Symbol | None:
    """The named function or object a section-relative reference points at."""
    named = [
        s for s in obj.symbols if s.shndx == shndx and s.type in (STT_FUNC, STT_OBJECT) and s.name
    ]
    # With -ffunction-sections -fdata-sections most sections hold one symbol: it is the target
    # whatever the addend says.
    if len(named) == 1:
        return named[0]
    for bias in biases(rtype, in_code):
        found = symbol_at(obj, shndx, addend + bias)
        if found is not None:
            return found
    return None


def plain_constant(obj: ElfObject, sym: Symbol) -> bool:
    """A file-local constant with no pointers in it (a __func__ string, a lookup table)."""
    if not sym.is_local or sym.type != STT_OBJECT or not sym.is_defined:
        return False
    sec = obj.sections[sym.shndx]
    if sec.type != SHT_PROGBITS or sec.flags & (SHF_WRITE | SHF_EXECINSTR):
        return False
    if not sec.flags & SHF_ALLOC:
        return False
    rela = obj.rela_for(sym.shndx)
    return rela is None or not any(
        sym.value <= r.offset < sym.value + sym.size for r in rela.relocations
    )


def is_label(sym: Symbol) -> bool:
    """An assembler label that survived into the symbol table (`.LC6` named from inline asm,
    as WARN and BUG do): a place in its section, to be treated like section+offset."""
    return sym.is_local and sym.type == STT_NOTYPE and sym.is_defined and bool(sym.name)


def section_relative(sym: Symbol, addend: int) -> int | None:
    """The addend from the start of sym's section when sym is a section symbol or a label."""
    if sym.type == STT_SECTION:
        return addend
    if is_label(sym):
        return addend + sym.value
    return None


def named_target(obj: ElfObject, reloc: Relocation) -> tuple[Symbol | None, int]:
    """The named symbol a relocation in code refers to and the addend from it, section symbols
    and assembler labels resolved; (None, addend) when no named symbol is there."""
    sym = obj.symbols[reloc.symbol]
    relative = section_relative(sym, reloc.addend)
    if relative is None:
        return sym, reloc.addend
    named = referenced_symbol(obj, sym.shndx, relative, reloc.type)
    return (named, relative - named.value) if named else (None, reloc.addend)


def relocations_in(obj: ElfObject, shndx: int, start: int, size: int) -> list[Relocation]:
    rela = obj.rela_for(shndx)
    if rela is None:
        return []
    return sorted(
        (r for r in rela.relocations if start <= r.offset < start + size), key=lambda r: r.offset
    )


def has_ftrace_entry(obj: ElfObject, fn: Function) -> bool:
    """Whether fn starts with the `call __fentry__` that ftrace, hence livepatch, redirects."""
    return any(
        obj.symbols[r.symbol].name == "__fentry__" and r.offset - fn.offset < 16
        for r in relocations_in(obj, fn.section, fn.offset, fn.size)
    )


def callers(obj: ElfObject, name: str) -> list[str]:
    """The functions of obj whose code refers to function `name`."""
    funcs = functions(obj)
    target = funcs[name]
    found = []
    for fn in funcs.values():
        for r in relocations_in(obj, fn.section, fn.offset, fn.size):
            # Only a symbol of the target's section (itself, the section, a label in it) can
            # resolve to it: resolving every other reference of a large unit costs minutes.
            if obj.symbols[r.symbol].shndx != target.section:
                continue
            sym, _ = named_target(obj, r)
            if sym is not None and sym.name == name and sym.shndx == target.section:
                found.append(fn.name)
                break
    return found


# Dynamic debug descriptors (pr_debug, dev_dbg): one static `struct _ddebug` per call site,
# named by GCC's counter (__UNIQUE_ID_ddebug<N>), in sections the kernel walks at boot and at
# module load. Each belongs to the code of its call site.
DYNDBG_SECTIONS = ("__dyndbg", "__dyndbg_classes")


def is_dyndbg(obj: ElfObject, sym: Symbol) -> bool:
    return (
        sym.is_defined
        and 0 < sym.shndx < len(obj.sections)
        and obj.sections[sym.shndx].name in DYNDBG_SECTIONS
    )
