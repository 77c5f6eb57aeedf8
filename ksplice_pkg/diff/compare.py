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
    SHF_STRINGS,
    ElfObject,
    Relocation,
    Symbol,
)
from ksplice_pkg.elf.query import (
    Function,
    biases,
    functions,
    is_dyndbg,
    plain_constant,
    referenced_symbol,
    relocations_in,
    section_relative,
)

_NUMBERED = re.compile(r"\.\d+$")
_UNIQUE_ID = re.compile(r"^(__UNIQUE_ID_.*?)\d+$")


def base_name(name: str) -> str:
    """foo.isra.0 -> foo.isra, count.3 -> count: names that survive renumbering."""
    m = _UNIQUE_ID.match(name)
    if m:
        return m[1]
    return _NUMBERED.sub("", name)


def is_init_section(name: str) -> bool:
    return name.startswith((".init.", ".exit."))


def _string_at(data: bytes, offset: int) -> bytes | None:
    if not 0 <= offset < len(data):
        return None
    if offset and data[offset - 1] != 0:
        return None
    end = data.find(b"\0", offset)
    return data[offset : end if end >= 0 else len(data)]


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
    if is_dyndbg(obj, sym):
        # A pr_debug site's descriptor: its number shifts with every site added before it, so
        # compare what it says (format, function, file, line) as part of the code using it.
        return ("ddebug", signature(obj, sym.shndx, sym.value, sym.size), addend)
    if plain_constant(obj, sym):
        # GCC numbers __func__.N and friends per file: compare what they hold instead.
        sec = obj.sections[sym.shndx]
        return ("const", sec.data[sym.value : sym.value + sym.size], addend)
    return ("sym", base_name(sym.name), addend)


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
    # Changes to __init code and init-only data left out under --runtime-only, described.
    init_changes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changed and not self.new_functions


def match_function(pre: dict[str, Function], name: str) -> str | None:
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
            pairs[names[0]] = match_function(pre_funcs, names[0])
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
