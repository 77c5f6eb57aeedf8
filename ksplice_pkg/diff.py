"""Deciding what changed between a pre and a post object, function by function.

A function changed when its bytes or its relocations differ. Relocations are compared by what
they point at, not by symbol index: a section symbol plus offset is rewritten to the symbol
defined there (or, in a string section, to the string itself), and GCC's numbering of static
locals and clones (count.3, foo.isra.0) is ignored, since it shifts when unrelated code changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ksplice_pkg.elf.model import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_STRINGS,
    SHF_WRITE,
    SHT_PROGBITS,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
    ElfObject,
    Relocation,
    Symbol,
)
from ksplice_pkg.errors import KspliceError

_NUMBERED = re.compile(r"\.\d+$")
_UNIQUE_ID = re.compile(r"^(__UNIQUE_ID_.*?)\d+$")
# Sections whose content is bookkeeping, never patched code or data of their own.
_IGNORED_DATA = re.compile(
    r"^(\.discard|\.debug|\.comment|\.note|__mcount_loc|\.return_sites|\.retpoline_sites|"
    r"\.call_sites|\.orc_unwind|__ex_table|__jump_table|__bug_table|\.altinstr|\.smp_locks|"
    r"\.static_call|\.parainstructions|\.initcall|\.init\.|\.exit\.|__ksymtab|__kcrctab|"
    r"\.modinfo|__param|\.export_symbol|__tracepoints|_ftrace|\.ref\.|__patchable)"
)
_PC_RELATIVE = {2, 4, 24}  # R_X86_64_PC32, PLT32, PC64


def base_name(name: str) -> str:
    """foo.isra.0 -> foo.isra, count.3 -> count: names that survive renumbering."""
    m = _UNIQUE_ID.match(name)
    if m:
        return m[1]
    return _NUMBERED.sub("", name)


def is_text(obj: ElfObject, shndx: int) -> bool:
    if not 0 < shndx < len(obj.sections):
        return False
    return bool(obj.sections[shndx].flags & SHF_EXECINSTR)


def is_init_section(name: str) -> bool:
    return name.startswith((".init.", ".exit."))


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


def data_objects(obj: ElfObject) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, sym in enumerate(obj.symbols):
        if sym.type == STT_OBJECT and sym.is_defined:
            sec = obj.sections[sym.shndx]
            if sec.flags & SHF_ALLOC and not _IGNORED_DATA.match(sec.name):
                out[sym.name] = i
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
    return _CODE_BIASES if in_code and rtype in _PC_RELATIVE else (0,)


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


def _string_at(data: bytes, offset: int) -> bytes | None:
    if not 0 <= offset < len(data):
        return None
    if offset and data[offset - 1] != 0:
        return None
    end = data.find(b"\0", offset)
    return data[offset : end if end >= 0 else len(data)]


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


def target_key(obj: ElfObject, reloc: Relocation) -> tuple[object, ...]:
    """What a relocation points at, independent of symbol indices and section layout."""
    sym = obj.symbols[reloc.symbol]
    addend = section_relative(sym, reloc.addend)
    if addend is None:
        return _symbol_key(obj, sym, reloc.addend)
    sec = obj.sections[sym.shndx]
    if sec.flags & SHF_STRINGS:
        for bias in biases(reloc.type, in_code=True):
            text = _string_at(sec.data, addend + bias)
            if text is not None:
                return ("str", text, bias)
        return ("strsec", base_name(sec.name), addend)
    named = referenced_symbol(obj, sym.shndx, addend, reloc.type)
    if named is not None:
        return _symbol_key(obj, named, addend - named.value)
    if not sec.data:
        return ("anon", base_name(sec.name), addend)
    return ("anon", sec.data, addend)


def _symbol_key(obj: ElfObject, sym: Symbol, addend: int) -> tuple[object, ...]:
    if plain_constant(obj, sym):
        # GCC numbers __func__.N and friends per file: compare what they hold instead.
        sec = obj.sections[sym.shndx]
        return ("const", sec.data[sym.value : sym.value + sym.size], addend)
    return ("sym", base_name(sym.name), addend)


def relocations_in(obj: ElfObject, shndx: int, start: int, size: int) -> list[Relocation]:
    rela = obj.rela_for(shndx)
    if rela is None:
        return []
    return sorted(
        (r for r in rela.relocations if start <= r.offset < start + size), key=lambda r: r.offset
    )


Signature = tuple[bytes, list[tuple[int, int, tuple[object, ...]]]]


def signature(obj: ElfObject, shndx: int, start: int, size: int) -> Signature:
    sec = obj.sections[shndx]
    code = sec.data[start : start + size]
    relocs = [
        (r.offset - start, r.type, target_key(obj, r))
        for r in relocations_in(obj, shndx, start, size)
    ]
    return code, relocs


def explain(pre: Signature, post: Signature) -> str:
    if len(pre[0]) != len(post[0]):
        return f"size {len(pre[0])} -> {len(post[0])} bytes"
    if pre[0] != post[0]:
        first = next(i for i, (a, b) in enumerate(zip(pre[0], post[0], strict=True)) if a != b)
        return f"code differs from offset {first:#x}"
    for a, b in zip(pre[1], post[1], strict=False):
        if a != b:
            return f"relocation differs: {a} -> {b}"
    return f"{len(pre[1])} -> {len(post[1])} relocations"


@dataclass
class UnitDiff:
    unit: str
    changed: dict[str, str] = field(default_factory=dict)  # post function name -> why
    new_functions: list[str] = field(default_factory=list)
    new_data: list[str] = field(default_factory=list)
    pre_names: dict[str, str] = field(default_factory=dict)  # post function name -> pre name
    # post static local -> the pre one it is (GCC renumbers count.0 to count.1 when another
    # static appears before it); correlated through the functions that reference them.
    static_map: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changed and not self.new_functions


def _match(pre: dict[str, Function], name: str) -> str | None:
    if name in pre:
        return name
    candidates = [n for n in pre if base_name(n) == base_name(name)]
    return candidates[0] if len(candidates) == 1 else None


def pair_functions(pre: ElfObject, post: ElfObject) -> dict[str, str | None]:
    """Each post function's pre counterpart (None: new).

    GCC numbers clones (foo.constprop.0, .1) in the order it creates them, so a new clone can
    take an old one's name. Within a family of same-base names, an unchanged clone is found by
    content first; only then do the remaining names pair, and only one-to-one.
    """
    pre_funcs, post_funcs = functions(pre), functions(post)
    pairs: dict[str, str | None] = {}
    families: dict[str, list[str]] = {}
    for name in post_funcs:
        families.setdefault(base_name(name), []).append(name)
    for base, names in families.items():
        olds = [n for n in pre_funcs if base_name(n) == base]
        if len(names) == 1 and len(olds) <= 1:
            pairs[names[0]] = _match(pre_funcs, names[0])
            continue
        sigs = {
            n: signature(pre, f.section, f.offset, f.size)
            for n, f in pre_funcs.items()
            if n in olds
        }
        free = set(olds)
        for name in names:
            f = post_funcs[name]
            sig = signature(post, f.section, f.offset, f.size)
            same = [o for o in sorted(free) if sigs[o] == sig]
            if same:
                pick = name if name in same else same[0]
                pairs[name] = pick
                free.discard(pick)
        for name in names:
            if name in pairs:
                continue
            if name in free:
                pairs[name] = name
                free.discard(name)
            else:
                pairs[name] = None
    return pairs


def diff_objects(unit: str, pre: ElfObject, post: ElfObject) -> UnitDiff:
    result = UnitDiff(unit=unit)
    pre_funcs, post_funcs = functions(pre), functions(post)
    pairs = pair_functions(pre, post)
    for name, fn in post_funcs.items():
        section_name = post.sections[fn.section].name
        pre_name = pairs[name]
        if pre_name is None:
            if is_init_section(section_name):
                raise KspliceError(
                    f"{unit}: the patch adds __init function {name}",
                    hint="init code has already run; do the work in a livepatch callback",
                )
            result.new_functions.append(name)
            continue
        old = pre_funcs[pre_name]
        if is_init_section(pre.sections[old.section].name) and not is_init_section(section_name):
            # The running kernel freed its copy after boot: the update must carry this one.
            result.new_functions.append(name)
            continue
        a = signature(pre, old.section, old.offset, old.size)
        b = signature(post, fn.section, fn.offset, fn.size)
        if a != b:
            if is_init_section(section_name):
                raise KspliceError(
                    f"{unit}: the patch changes __init function {name} ({explain(a, b)})",
                    hint="init code ran at boot and is gone; a livepatch cannot change it",
                )
            result.changed[name] = explain(a, b)
            result.pre_names[name] = pre_name
    for name, fn in post_funcs.items():
        pre_name = pairs[name]
        if pre_name is not None:
            _correlate_statics(pre, pre_funcs[pre_name], post, fn, result.static_map)
    _check_data(unit, pre, post, result)
    return result


def _referenced_locals(obj: ElfObject) -> set[str]:
    return {
        name
        for fn in functions(obj).values()
        for names in _local_objects(obj, fn).values()
        for name in names
    }


def _local_objects(obj: ElfObject, fn: Function) -> dict[str, set[str]]:
    """Local data objects fn references, by base name."""
    found: dict[str, set[str]] = {}
    for r in relocations_in(obj, fn.section, fn.offset, fn.size):
        sym, _ = named_target(obj, r)
        if sym is not None and sym.type == STT_OBJECT and sym.is_local:
            found.setdefault(base_name(sym.name), set()).add(sym.name)
    return found


def _correlate_statics(
    pre: ElfObject, pre_fn: Function, post: ElfObject, post_fn: Function, out: dict[str, str]
) -> None:
    before, after = _local_objects(pre, pre_fn), _local_objects(post, post_fn)
    for base, names in after.items():
        olds = before.get(base, set())
        if len(names) == 1 and len(olds) == 1:
            (new,) = names
            (old,) = olds
            out.setdefault(new, old)


def _check_data(unit: str, pre: ElfObject, post: ElfObject, result: UnitDiff) -> None:
    """Refuse changed initial values of existing data; record data the patch adds.

    A post object is paired with its pre self through the functions that use it (static_map),
    else by exact name, else by a base name that is unique on both sides.
    """
    pre_data = data_objects(pre)
    post_data = data_objects(post)
    pre_by_base: dict[str, list[str]] = {}
    for name in pre_data:
        pre_by_base.setdefault(base_name(name), []).append(name)
    post_bases: dict[str, int] = {}
    for name in post_data:
        post_bases[base_name(name)] = post_bases.get(base_name(name), 0) + 1
    # Statics that functions reference are paired only through those functions: their names
    # are GCC's per-file numbering, which any new static shifts.
    referenced = _referenced_locals(post)
    claimed = set(result.static_map.values())
    for name, index in post_data.items():
        sym = post.symbols[index]
        old_name = result.static_map.get(name)
        if old_name is None and name not in referenced:
            if name in pre_data and name not in claimed:
                old_name = name
            else:
                same = pre_by_base.get(base_name(name), [])
                if len(same) == 1 and post_bases[base_name(name)] == 1 and same[0] not in claimed:
                    old_name = same[0]
        if old_name is None or old_name not in pre_data:
            result.new_data.append(name)
            continue
        old = pre.symbols[pre_data[old_name]]
        a = signature(pre, old.shndx, old.value, old.size)
        b = signature(post, sym.shndx, sym.value, sym.size)
        if old.size == sym.size and a == b:
            continue
        if plain_constant(post, sym):
            # A constant's new value is simply new data, carried by the code that uses it.
            result.new_data.append(name)
            continue
        raise KspliceError(
            f"{unit}: the patch changes the initial value or size of {name} ({explain(a, b)})",
            hint="a livepatch keeps the running kernel's data; change it from code "
            "(e.g. a livepatch callback) or use a shadow variable",
        )


def has_ftrace_entry(obj: ElfObject, fn: Function) -> bool:
    """Whether fn starts with the `call __fentry__` that ftrace, hence livepatch, redirects."""
    return any(
        obj.symbols[r.symbol].name == "__fentry__" and r.offset - fn.offset < 16
        for r in relocations_in(obj, fn.section, fn.offset, fn.size)
    )


def callers(obj: ElfObject, name: str) -> list[str]:
    """The functions of obj whose code refers to function `name`."""
    target = functions(obj)[name]
    found = []
    for fn in functions(obj).values():
        for r in relocations_in(obj, fn.section, fn.offset, fn.size):
            sym, _ = named_target(obj, r)
            if sym is not None and sym.name == name and sym.shndx == target.section:
                found.append(fn.name)
                break
    return found


def patch_through_callers(unit: str, pre: ElfObject, post: ElfObject, d: UnitDiff) -> None:
    """A changed function without an ftrace entry (a SYSCALL_DEFINE body GCC kept out of line,
    a static inline, notrace code) cannot be redirected; when it is file-local, its callers can:
    the update carries the new copy and patches every caller to call it."""
    pre_funcs, post_funcs = functions(pre), functions(post)
    pending = [n for n in d.changed if not n.endswith(".cold")]
    while pending:
        name = pending.pop()
        pre_name = d.pre_names.get(name, name)
        if pre_name not in pre_funcs or has_ftrace_entry(pre, pre_funcs[pre_name]):
            continue
        if not post.symbols[post_funcs[name].symbol].is_local:
            raise KspliceError(
                f"{unit}: {pre_name} has no ftrace entry (__fentry__ call): livepatch cannot "
                "redirect it, and it is global, so callers elsewhere would keep the old code",
                hint="it is notrace or in a noinstr section; patch its callers instead",
            )
        why = d.changed.pop(name)
        d.pre_names.pop(name, None)
        d.new_functions.append(name)
        for caller in callers(post, name):
            section = post.sections[post_funcs[caller].section].name
            if caller == name or caller in d.changed or is_init_section(section):
                continue
            d.changed[caller] = f"calls {name}, which has no ftrace entry ({why})"
            d.pre_names[caller] = _match(pre_funcs, caller) or caller
            pending.append(caller)
