"""The ELF writer: round trip through our reader, and what GNU readelf, ld and objdump make of
its output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ksplice_pkg.elf.model import (
    SHF_RELA_LIVEPATCH,
    SHN_ABS,
    SHN_LIVEPATCH,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_LOCAL,
    ElfObject,
    Symbol,
)
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.writer import check_symbol_order, serialize, write_object
from ksplice_pkg.errors import InternalError
from tests.unit.tools import ReadelfSection, readelf_relocations, readelf_sections, tool

# ---------------------------------------------------------------------------------------------
# The writer: round trip, and what the reference tools make of its output.


def _comparable(obj: ElfObject) -> tuple[object, ...]:
    """Everything of obj that must survive a write and a read. The regenerated tables (.symtab,
    .strtab, .shstrtab) are compared through what they encode, not byte for byte."""
    sections = [
        (
            s.name,
            s.type,
            s.flags,
            b"" if s.type in (SHT_SYMTAB, SHT_STRTAB) else s.data,
            s.addralign,
            s.entsize,
            s.link,
            s.info,
            s.size if s.type not in (SHT_SYMTAB, SHT_STRTAB) else None,
            tuple(s.relocations),
        )
        for s in obj.sections
    ]
    return (tuple(sections), tuple(obj.symbols), obj.machine, obj.osabi, obj.flags)


def test_round_trip_keeps_sections_symbols_relocations(rich_object: Path, tmp_path: Path) -> None:
    original = read_object(rich_object)
    written = tmp_path / "written.o"
    write_object(original, written)
    again = read_object(written)
    assert _comparable(again) == _comparable(original)
    # The symbol table's own header is recomputed: entsize and the first non-local index.
    symtab = next(s for s in again.sections if s.type == SHT_SYMTAB)
    first_global = next(i for i, s in enumerate(again.symbols) if i and s.bind != STB_LOCAL)
    assert (symtab.entsize, symtab.info, symtab.size) == (24, first_global, 24 * len(again.symbols))
    # Writing is deterministic and a second round changes nothing.
    assert serialize(again) == written.read_bytes()


def test_written_object_is_accepted_by_ld_and_readelf(rich_object: Path, tmp_path: Path) -> None:
    written = tmp_path / "written.o"
    write_object(read_object(rich_object), written)
    # readelf checks offsets, string indices and relocation links, warning on stderr.
    tool("readelf", "-aW", written)
    # The symbol listing has no file offsets in it: it must come out the same.
    assert tool("readelf", "-sW", written) == tool("readelf", "-sW", rich_object)
    assert readelf_relocations(written) == readelf_relocations(rich_object)
    # Only the string tables may differ in size: gas shares name suffixes, our writer does not.
    assert [_without_strtab_size(s) for s in readelf_sections(written)] == [
        _without_strtab_size(s) for s in readelf_sections(rich_object)
    ]
    linked = tmp_path / "linked.o"
    tool("ld", "-r", "-o", linked, written)
    assert {s.name for s in read_object(linked).symbols} >= {"classify", "log_it", "maybe.cold"}


def _without_strtab_size(s: ReadelfSection) -> ReadelfSection:
    return replace(s, size=0) if s.type == "STRTAB" else s


def test_written_object_disassembles_the_same(plain_rich_object: Path, tmp_path: Path) -> None:
    original = plain_rich_object
    written = tmp_path / "written.o"
    write_object(read_object(original), written)

    def listing(path: Path) -> str:
        text = tool("objdump", "-dr", "-j", ".text.classify", "-j", ".init.text", path)
        return text.split("\n", 2)[2]  # drop the line naming the file

    assert listing(written) == listing(original)
    assert "R_X86_64_32S\t.rodata.classify" in listing(written)


def test_livepatch_symbols_and_sections_survive(plain_rich_object: Path, tmp_path: Path) -> None:
    """SHN_LIVEPATCH and SHF_RELA_LIVEPATCH are numbers pyelftools has no name for: they must
    come through the reader and the writer unchanged, as klp.py writes them into the .ko."""
    obj = read_object(plain_rich_object)
    index = next(i for i, s in enumerate(obj.symbols) if s.name == "exported_counter")
    obj.symbols[index].name = ".klp.sym.vmlinux.exported_counter,0"
    obj.symbols[index].shndx = SHN_LIVEPATCH
    rela = obj.sections[obj.section_index(".rela.text.log_it") or 0]
    rela.name = ".klp.rela.vmlinux.text.log_it"
    rela.flags |= SHF_RELA_LIVEPATCH
    written = tmp_path / "klp.o"
    write_object(obj, written)
    again = read_object(written)
    sym = again.symbols[index]
    assert (sym.name, sym.shndx, sym.bind) == (
        ".klp.sym.vmlinux.exported_counter,0",
        SHN_LIVEPATCH,
        STB_GLOBAL,
    )
    klp = again.sections[again.section_index(".klp.rela.vmlinux.text.log_it") or 0]
    assert klp.flags & SHF_RELA_LIVEPATCH
    assert klp.relocations == rela.relocations
    assert any(r.symbol == index for r in klp.relocations)


def test_writer_refuses_a_local_after_a_global(plain_rich_object: Path) -> None:
    obj = read_object(plain_rich_object)
    obj.symbols.append(Symbol("late_local", 0, 0, 0, STB_LOCAL, SHN_ABS))
    # A bug of ours, not a user's mistake: it keeps its traceback.
    with pytest.raises(InternalError, match="late_local"):
        check_symbol_order(obj)
    with pytest.raises(InternalError, match="late_local"):
        serialize(obj)
