"""The livepatch form of a linked module (module.klp), on an object gcc builds here with the
klp-named weak undefined symbols extraction leaves, checked with GNU readelf and ld:
Documentation/livepatch/module-elf-format.rst's SHN_LIVEPATCH symbols and SHF_RELA_LIVEPATCH
`.klp.rela.<object>.<section>` sections."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.errors import InternalError
from ksplice_pkg.module.extract import ExternalRef
from ksplice_pkg.module.klp import convert, klp_symbol_name, objname_of
from tests.unit.tools import (
    ReadelfReloc,
    compile_c,
    extract_unit,
    readelf_relocations,
    readelf_section_flags,
    readelf_sections,
    readelf_symbols,
    tool,
)

SHN_LIVEPATCH = "OS [0xff20]"  # how readelf shows section index 0xff20
SHF_RELA_LIVEPATCH = 0x00100000

# Symbol names with dots and commas are beyond C: the asm label gives them, quoted for gas.
SOURCE = r"""
extern int counter __asm__("\".klp.sym.vmlinux.counter,0\"") __attribute__((weak));
extern int major __asm__("\".klp.sym.virtio_blk.major,1\"") __attribute__((weak));
extern int exported_counter;
int f(void) { return counter + exported_counter + major; }
int g(void) { return exported_counter * 2; }
int *ptr = &counter;
__attribute__((section("__jump_table"))) int *entry = &counter;
"""
KLP = {".klp.sym.vmlinux.counter,0", ".klp.sym.virtio_blk.major,1"}


@pytest.fixture
def objects(tmp_path: Path) -> tuple[Path, Path]:
    """The object as linked (before) and a copy converted in place (after)."""
    before = compile_c(tmp_path, SOURCE, "k")
    after = tmp_path / "k.ko"
    shutil.copy(before, after)
    return before, after


def _key(r: ReadelfReloc) -> tuple[int, str, str, int]:
    return r.offset, r.type_name, r.symbol_name, r.addend


def test_klp_symbols_become_livepatch_symbols(objects: tuple[Path, Path]) -> None:
    before, after = objects
    # The premise: weak undefined, as extraction and the module link leave them.
    assert {(s.name, s.bind, s.ndx) for s in readelf_symbols(before) if s.name in KLP} == {
        (name, "WEAK", "UND") for name in KLP
    }
    convert(after)
    symbols = {s.name: s for s in readelf_symbols(after)}
    for name in KLP:
        assert (symbols[name].bind, symbols[name].ndx) == ("GLOBAL", SHN_LIVEPATCH)
    # An exported symbol stays an ordinary undefined one, for the module loader.
    assert (symbols["exported_counter"].bind, symbols["exported_counter"].ndx) == ("GLOBAL", "UND")
    # Nothing else changed in the symbol table.
    unchanged = [(s.name, s.bind, s.ndx) for s in readelf_symbols(before) if s.name not in KLP]
    assert [(s.name, s.bind, s.ndx) for s in readelf_symbols(after) if s.name not in KLP] == (
        unchanged
    )


def test_klp_relocations_move_to_klp_rela_sections(objects: tuple[Path, Path]) -> None:
    before, after = objects
    old = readelf_relocations(before)
    count = convert(after)
    new = readelf_relocations(after)
    moved = [r for r in old if r.symbol_name in KLP]
    assert count == len(moved) == 4
    sections = {s.name: s for s in readelf_sections(after)}
    flags = readelf_section_flags(after)
    index = {s.index: s.name for s in readelf_sections(after)}
    expected_sections = {
        # (object, relocated section) -> the klp relocation section
        ("vmlinux", ".text.f"): ".klp.rela.vmlinux.text.f",
        ("virtio_blk", ".text.f"): ".klp.rela.virtio_blk.text.f",
        ("vmlinux", ".data.ptr"): ".klp.rela.vmlinux.data.ptr",
        # The kernel reads the object name up to the next dot: a dot is put before a section
        # name that has none.
        ("vmlinux", "__jump_table"): ".klp.rela.vmlinux.__jump_table",
    }
    for r in moved:
        objname = r.symbol_name.split(".")[3]
        relocated = r.section.removeprefix(".rela")
        klp = expected_sections[(objname, relocated)]
        assert sections[klp].type == "RELA"
        assert flags[klp] & SHF_RELA_LIVEPATCH
        assert index[sections[klp].info] == relocated
        assert _key(r) in [_key(n) for n in new if n.section == klp]
    # Every other relocation stays where it was; no klp one is left in an ordinary section.
    assert sorted(_key(r) for r in new if not r.section.startswith(".klp.rela.")) == sorted(
        _key(r) for r in old if r.symbol_name not in KLP
    )
    assert {n.section for n in new if n.section.startswith(".klp.rela.")} == set(
        expected_sections.values()
    )
    # Ordinary RELA sections are not flagged.
    assert not flags[".rela.text.f"] & SHF_RELA_LIVEPATCH
    # The file is still well formed: readelf says nothing on stderr.
    tool("readelf", "-aW", after)


def test_object_without_klp_symbols_is_left_as_it_was(tmp_path: Path) -> None:
    obj = compile_c(
        tmp_path, "extern int exported_counter;\nint g(void) { return exported_counter; }\n"
    )
    before = [_key(r) for r in readelf_relocations(obj)]
    assert convert(obj) == 0
    assert [_key(r) for r in readelf_relocations(obj)] == before
    assert not any(s.name.startswith(".klp.") for s in readelf_sections(obj))
    tool("ld", "-r", "-o", tmp_path / "linked.o", obj)


def test_defined_klp_symbol_is_a_bug(tmp_path: Path) -> None:
    source = 'int counter __asm__("\\".klp.sym.vmlinux.counter,0\\"") = 1;\n'
    obj = compile_c(tmp_path, source, extra=("-fno-data-sections",))  # no section named after it
    with pytest.raises(InternalError, match=r"\.klp\.sym\.vmlinux\.counter,0"):
        convert(obj)


def test_klp_symbol_name() -> None:
    assert klp_symbol_name("vmlinux", "show_stat", 2) == ".klp.sym.vmlinux.show_stat,2"
    assert klp_symbol_name("virtio_blk", "major", 0) == ".klp.sym.virtio_blk.major,0"
    # GCC's clone suffixes are part of the kallsyms name.
    name = klp_symbol_name("vmlinux", "helper.isra.0", 0)
    assert name == ".klp.sym.vmlinux.helper.isra.0,0"
    assert objname_of(name) == "vmlinux"
    assert objname_of(".klp.sym.virtio_blk.major,0") == "virtio_blk"


def test_extracted_part_converts(tmp_path: Path) -> None:
    """What extraction leaves is what convert expects: every weak klp-named symbol of a part
    becomes SHN_LIVEPATCH and each relocation against one moves, none left behind."""
    pre = "extern int hidden;\nstatic int calls;\nint f(int x) { return x + hidden + calls++; }\n"
    post = pre.replace("x + hidden", "x * 2 + hidden")

    def resolver(obj: ElfObject, sym: Symbol) -> ExternalRef:
        if sym.name == "__fentry__":
            return ExternalRef(sym.name, exported=True)
        return ExternalRef(klp_symbol_name("vmlinux", sym.name, 0), exported=False)

    _, part, extracted = extract_unit(tmp_path, pre, post, resolver)
    klp_names = {s.name for s in extracted.obj.symbols if s.name.startswith(".klp.sym.")}
    assert klp_names == {".klp.sym.vmlinux.hidden,0", ".klp.sym.vmlinux.calls,0"}
    against_klp = [_key(r) for r in readelf_relocations(part) if r.symbol_name in klp_names]
    assert convert(part) == len(against_klp) == 3  # calls is read and written back
    after = readelf_relocations(part)
    assert sorted(_key(r) for r in after if r.section == ".klp.rela.vmlinux.text.f") == sorted(
        against_klp
    )
    assert not [r for r in after if r.symbol_name in klp_names and r.section == ".rela.text.f"]
    assert {s.ndx for s in readelf_symbols(part) if s.name in klp_names} == {SHN_LIVEPATCH}
