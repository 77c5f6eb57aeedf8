"""Questions asked of an object (elf.query), answered on objects gcc builds here and checked
against what GNU readelf lists: the functions, the relocations in a range, the named symbol a
section-relative reference lands on, the ftrace entry, the callers."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.elf.query import callers, functions, has_ftrace_entry, named_target, relocations_in
from ksplice_pkg.elf.reader import read_object
from tests.unit.tools import (
    ReadelfSymbol,
    compile_c,
    readelf_relocations,
    readelf_sections,
    readelf_symbols,
)


def _named_in(symbols: list[ReadelfSymbol], index: int) -> list[ReadelfSymbol]:
    return [s for s in symbols if s.ndx == str(index) and s.type in ("FUNC", "OBJECT") and s.name]


def test_functions_are_readelfs_defined_code_symbols(rich_object: Path) -> None:
    obj = read_object(rich_object)
    code = {s.index for s in readelf_sections(rich_object) if "X" in s.flags}
    expected = {
        s.name: (int(s.ndx), s.value, s.size)
        for s in readelf_symbols(rich_object)
        if s.type == "FUNC" and s.ndx.isdigit() and int(s.ndx) in code
    }
    assert {n: (f.section, f.offset, f.size) for n, f in functions(obj).items()} == expected
    assert {"classify", "maybe.cold", "setup", "square"} <= expected.keys()


def test_relocations_in_a_function_are_readelfs(rich_object: Path) -> None:
    obj = read_object(rich_object)
    sections = {s.index: s.name for s in readelf_sections(rich_object)}
    relocs = readelf_relocations(rich_object)
    for fn in functions(obj).values():
        expected = sorted(
            (r.offset, r.type, r.addend)
            for r in relocs
            if r.section == f".rela{sections[fn.section]}"
            and fn.offset <= r.offset < fn.offset + fn.size
        )
        got = [
            (r.offset, r.type, r.addend)
            for r in relocations_in(obj, fn.section, fn.offset, fn.size)
        ]
        assert got == expected, fn.name


def test_section_relative_references_name_the_symbol_there(rich_object: Path) -> None:
    """With -fdata-sections most sections hold one named symbol: a reference to the section
    is a reference to it, as readelf's listing of the section's symbols shows."""
    obj = read_object(rich_object)
    symbols = readelf_symbols(rich_object)
    checked = 0
    for fn in functions(obj).values():
        for r in relocations_in(obj, fn.section, fn.offset, fn.size):
            ref = symbols[r.symbol]
            if ref.type != "SECTION":
                continue
            named = _named_in(symbols, int(ref.ndx))
            if len(named) != 1:
                continue
            target, addend = named_target(obj, r)
            assert target is not None and target.name == named[0].name
            assert addend == r.addend - named[0].value
            checked += 1
    assert checked >= 5  # statics, the jump table's rodata, string-free data


NOTRACE = """
#define notrace __attribute__((noinline, no_instrument_function))
notrace int quiet(int x) { return x * 3 + 1; }
int traced(int x) { return quiet(x) + 1; }
static int __attribute__((noinline)) helper(int x) { return x ^ 7; }
int first(int x) { return helper(x) + 1; }
int second(int x) { return helper(x + 1) + quiet(x); }
int bystander(int x) { return x - 1; }
"""


def test_ftrace_entry_is_what_mcount_loc_records(tmp_path: Path) -> None:
    """-mrecord-mcount lists each function's `call __fentry__` in __mcount_loc."""
    path = compile_c(tmp_path, NOTRACE)
    obj = read_object(path)
    recorded = {
        r.symbol_name for r in readelf_relocations(path) if r.section == ".rela__mcount_loc"
    }
    assert recorded  # the premise
    for name, fn in functions(obj).items():
        assert has_ftrace_entry(obj, fn) == (f".text.{name}" in recorded), name
    assert not has_ftrace_entry(obj, functions(obj)["quiet"])


def test_callers_are_the_functions_relocated_against_it(tmp_path: Path) -> None:
    path = compile_c(tmp_path, NOTRACE)
    obj = read_object(path)
    relocs = readelf_relocations(path)
    for name in ("quiet", "helper"):
        expected = {
            r.section.removeprefix(".rela.text.")
            for r in relocs
            if r.section.startswith(".rela.text.") and r.symbol_name in (name, f".text.{name}")
        }
        assert sorted(callers(obj, name)) == sorted(expected), name
    assert set(callers(obj, "helper")) == {"first", "second"}
