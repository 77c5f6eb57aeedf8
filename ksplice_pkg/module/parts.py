"""One unit's share of the update: its changed and new code extracted into an object of its own,
with the sympos run-pre established for each function it replaces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.model import SHN_UNDEF, STB_GLOBAL
from ksplice_pkg.elf.writer import write_object
from ksplice_pkg.log import logger
from ksplice_pkg.module.extract import PatchedFunction, Resolver, extract


@dataclass(frozen=True)
class Part:
    unit: str
    obj: Path
    functions: list[tuple[PatchedFunction, int]]  # each replacement with its old_sympos
    new_functions: list[str]
    exports_used: frozenset[str]  # exported symbols the part links against
    hooks: tuple[tuple[str, str], ...] = ()  # the patch author's callbacks: (kind, symbol)


def write_part(
    change: UnitChange,
    resolver: Resolver,
    index: int,
    entry_sizes: Mapping[str, int],
    sympos: Mapping[str, int],
    directory: Path,
) -> Part:
    extracted = extract(change.post, change.diff, resolver, f"u{index}", entry_sizes)
    path = directory / f"part{index}.o"
    directory.mkdir(parents=True, exist_ok=True)
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
    return Part(change.unit, path, funcs, list(new), used, tuple(extracted.hooks))
