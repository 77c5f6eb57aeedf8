"""One unit's share of the update: its changed and new code extracted into an object of its own,
with the sympos run-pre established for each function it replaces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.model import SHN_UNDEF, SHT_RELA, STB_GLOBAL, ElfObject
from ksplice_pkg.elf.writer import write_object
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.log import logger
from ksplice_pkg.module.extract import PatchedFunction, Resolver, extract
from ksplice_pkg.module.klp import KLP_SYM_PREFIX, objname_of


@dataclass(frozen=True)
class Part:
    unit: str
    obj: Path
    functions: list[tuple[PatchedFunction, int]]  # each replacement with its old_sympos
    new_functions: list[str]
    exports_used: frozenset[str]  # exported symbols the part links against
    objname: str | None = None  # the klp object it patches: None for vmlinux, else a module
    hooks: tuple[tuple[str, str], ...] = ()  # the patch author's callbacks: (kind, symbol)


def write_part(
    change: UnitChange,
    resolver: Resolver,
    index: int,
    entry_sizes: Mapping[str, int],
    sympos: Mapping[str, int],
    directory: Path,
    shared: frozenset[str] = frozenset(),
) -> Part:
    extracted = extract(change.post, change.diff, resolver, f"u{index}", entry_sizes, shared)
    path = directory / f"part{index}.o"
    directory.mkdir(parents=True, exist_ok=True)
    if change.module is not None:
        check_module_keys(change.unit, extracted.obj)
    write_object(extracted.obj, path)
    # A function run-pre did not see (no target binary given) is unique by name: sympos 0.
    funcs = [(fn, sympos.get(fn.old_name, 0)) for fn in extracted.patched]
    new = change.diff.new_functions
    logger.info(
        "%s: patching %s%s",
        change.unit,
        ", ".join(f.old_name for f in extracted.patched) or "nothing",
        f"; new: {', '.join(new)}" if new else "",
    )
    used = frozenset(
        s.name
        for s in extracted.obj.symbols
        if s.shndx == SHN_UNDEF and s.bind == STB_GLOBAL and s.name
    )
    return Part(change.unit, path, funcs, list(new), used, change.module, tuple(extracted.hooks))


# Tables the kernel processes while the livepatch module itself loads (jump_label_add_module,
# static_call_add_module, apply_alternatives), before livepatch writes the relocations against a
# patched module, which wait until that module comes. An entry there naming a symbol of a
# module (a static key, a static call key, code an alternative calls) would be read unrelocated.
_LOAD_TIME_TABLES = (
    "__jump_table",
    ".static_call_sites",
    ".altinstructions",
    ".altinstr_replacement",
)


def check_module_keys(unit: str, obj: ElfObject) -> None:
    """Refuse a load-time table entry of an extracted module unit that names a module symbol."""
    for sec in obj.sections:
        if sec.type != SHT_RELA or obj.sections[sec.info].name not in _LOAD_TIME_TABLES:
            continue
        for r in sec.relocations:
            name = obj.symbols[r.symbol].name
            owner = objname_of(name) if name.startswith(KLP_SYM_PREFIX) else "vmlinux"
            if owner != "vmlinux":
                key = name[len(KLP_SYM_PREFIX) :].split(".", 1)[1].rsplit(",", 1)[0]
                raise RefusedError(
                    f"{unit}: the update's {obj.sections[sec.info].name} entry needs {key} of "
                    f"module {owner}: a livepatch module cannot use a key or code that lives "
                    "in another module",
                    hint="the kernel sets these entries up when the update loads, before "
                    f"{owner}'s symbols are resolved; change the patch so that the changed "
                    "code does not use it (e.g. a plain flag instead of a static key)",
                )
