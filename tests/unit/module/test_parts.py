"""One unit's share of the update (module.parts.write_part): its code extracted and written,
each replacement with the sympos run-pre found (0 where run-pre did not look)."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.diff.unit import UnitChange, diff_objects
from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.module.extract import ExternalRef
from ksplice_pkg.module.parts import write_part
from tests.unit.tools import build, readelf_symbols, tool

PRE = """
int first(int x) { return x + 1; }
int second(int x) { return x + 2; }
"""
POST = PRE.replace("x + 1", "x + 10").replace("x + 2", "x + 20")
POST += "int __attribute__((noinline)) third(int x) { return x * 3; }\n"


def resolver(obj: ElfObject, sym: Symbol) -> ExternalRef:
    return ExternalRef(sym.name, exported=True)


def test_part_is_written_with_each_functions_sympos(tmp_path: Path) -> None:
    pre, post = build(tmp_path, "pre", PRE), build(tmp_path, "post", POST)
    change = UnitChange(diff_objects("fs/t.o", pre, post), pre, post)
    matches = {"second": 2}
    part = write_part(change, resolver, 3, {}, matches, tmp_path / "parts")
    assert part.unit == "fs/t.o"
    assert part.obj == tmp_path / "parts" / "part3.o"
    assert {fn.old_name: sympos for fn, sympos in part.functions} == {"first": 0, "second": 2}
    assert part.new_functions == ["third"]
    defined = {s.name for s in readelf_symbols(part.obj) if s.ndx != "UND" and s.type == "FUNC"}
    assert defined == {fn.new_symbol for fn, _ in part.functions} | {"third"}
    # Parts of one update are linked into one module: their global replacement symbols must
    # not collide, or ld refuses the multiple definitions.
    other = write_part(change, resolver, 4, {}, matches, tmp_path / "parts")
    tool("ld", "-r", "-o", tmp_path / "linked.o", part.obj, other.obj)
