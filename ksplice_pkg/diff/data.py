"""Data in the differ: pairing each post data object with its pre self, refusing changed initial
values, recording data the patch adds."""

from __future__ import annotations

import re

from ksplice_pkg.diff.compare import Signature, UnitDiff, base_name, explain, signature
from ksplice_pkg.elf.model import (
    SHF_ALLOC,
    STT_OBJECT,
    ElfObject,
)
from ksplice_pkg.elf.query import (
    Function,
    functions,
    is_dyndbg,
    named_target,
    plain_constant,
    relocations_in,
)
from ksplice_pkg.errors import RefusedError

# Sections whose content is bookkeeping, never patched code or data of their own.
_IGNORED_DATA = re.compile(
    r"^(\.discard|\.debug|\.comment|\.note|__mcount_loc|\.return_sites|\.retpoline_sites|"
    r"\.call_sites|\.orc_unwind|__ex_table|__jump_table|__bug_table|\.altinstr|\.smp_locks|"
    r"\.static_call|\.parainstructions|\.initcall|\.init\.|\.exit\.|__ksymtab|__kcrctab|"
    r"\.modinfo|__param|\.export_symbol|__tracepoints|_ftrace|\.ref\.|__patchable)"
)


def data_objects(obj: ElfObject) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, sym in enumerate(obj.symbols):
        if sym.type == STT_OBJECT and sym.is_defined:
            sec = obj.sections[sym.shndx]
            # Dynamic debug descriptors are part of the code of their call sites (compare.py,
            # extract.py), never data of their own: not changed data, not new data.
            if (
                sec.flags & SHF_ALLOC
                and not _IGNORED_DATA.match(sec.name)
                and not is_dyndbg(obj, sym)
            ):
                out[sym.name] = i
    return out


_INIT_DATA = re.compile(r"^\.init\.(data|rodata|bss)\b")


def changed_init_data(pre: ElfObject, post: ElfObject) -> list[str]:
    """Init-only data (__initdata, __initconst) the patch changes or adds, by name.

    Compared as a multiset of (name without GCC's number, content): numbering that shifts when
    other statics appear is no change; a changed value or a new object is.
    """

    def contents(obj: ElfObject) -> dict[str, list[Signature]]:
        found: dict[str, list[Signature]] = {}
        for sym in obj.symbols:
            in_init = (
                sym.type == STT_OBJECT
                and sym.is_defined
                and 0 < sym.shndx < len(obj.sections)
                and _INIT_DATA.match(obj.sections[sym.shndx].name) is not None
            )
            if in_init:
                sig = signature(obj, sym.shndx, sym.value, max(sym.size, 1))
                found.setdefault(base_name(sym.name), []).append(sig)
        return found

    before, after = contents(pre), contents(post)
    return sorted(
        name
        for name, sigs in after.items()
        if sorted(map(repr, sigs)) != sorted(map(repr, before.get(name, [])))
    )


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


def correlate_statics(
    pre: ElfObject, pre_fn: Function, post: ElfObject, post_fn: Function, out: dict[str, str]
) -> None:
    before, after = _local_objects(pre, pre_fn), _local_objects(post, post_fn)
    for base, names in after.items():
        olds = before.get(base, set())
        if len(names) == 1 and len(olds) == 1:
            (new,) = names
            (old,) = olds
            out.setdefault(new, old)


def check_data(unit: str, pre: ElfObject, post: ElfObject, result: UnitDiff) -> None:
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
        raise RefusedError(
            f"{unit}: the patch changes the initial value or size of {name} ({explain(a, b)})",
            hint="a livepatch keeps the running kernel's data; change it from code "
            "(e.g. a livepatch callback) or use a shadow variable",
        )
