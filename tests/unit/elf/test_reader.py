"""The ELF reader on objects gcc builds here, checked against GNU readelf.

Differential testing against the reference tool: what our reader says about an object's
sections, symbols and relocations must be what `readelf -SW/-sW/-rW` prints for the same file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ksplice_pkg.elf.model import (
    R_X86_64_NONE,
    SHN_ABS,
    SHN_COMMON,
    SHN_UNDEF,
    SHT_RELA,
    STT_SECTION,
    ElfObject,
    Symbol,
)
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError
from tests.unit.tools import (
    ReadelfReloc,
    compile_c,
    readelf_relocations,
    readelf_sections,
    readelf_symbols,
)

# ---------------------------------------------------------------------------------------------
# What readelf prints, parsed.

_SECTION_TYPES = {0: "NULL", 1: "PROGBITS", 2: "SYMTAB", 3: "STRTAB", 4: "RELA", 8: "NOBITS"}
_SYMBOL_TYPES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC", 3: "SECTION", 4: "FILE"}
_BINDS = {0: "LOCAL", 1: "GLOBAL", 2: "WEAK"}
_RELOC_TYPES = {
    1: "R_X86_64_64",
    2: "R_X86_64_PC32",
    4: "R_X86_64_PLT32",
    10: "R_X86_64_32",
    11: "R_X86_64_32S",
    24: "R_X86_64_PC64",
}
# readelf's flag letters, in the order it prints them.
_FLAG_LETTERS = [(0x1, "W"), (0x2, "A"), (0x4, "X"), (0x10, "M"), (0x20, "S"), (0x40, "I")]
_FLAG_LETTERS += [(0x80, "L"), (0x200, "G"), (0x400, "T")]


def _flag_letters(flags: int) -> str:
    known = 0
    letters = ""
    for bit, letter in _FLAG_LETTERS:
        known |= bit
        if flags & bit:
            letters += letter
    assert flags & ~known == 0, f"flags {flags:#x} outside the mapped ones"
    return letters


def _ndx(shndx: int) -> str:
    return {SHN_UNDEF: "UND", SHN_ABS: "ABS", SHN_COMMON: "COM"}.get(shndx, str(shndx))


def _symbol_name(obj: ElfObject, sym: Symbol) -> str:
    # readelf names a section symbol after its section.
    return obj.sections[sym.shndx].name if sym.type == STT_SECTION else sym.name


# ---------------------------------------------------------------------------------------------
# The reader against readelf.


def test_sections_match_readelf(rich_object: Path) -> None:
    obj = read_object(rich_object)
    expected = readelf_sections(rich_object)
    assert len(expected) == len(obj.sections)
    for ref, sec in zip(expected, obj.sections, strict=True):
        assert (ref.name, ref.type) == (sec.name, _SECTION_TYPES[sec.type]), ref
        assert ref.size == sec.size or (
            sec.type == SHT_RELA and ref.size == 24 * len(sec.relocations)
        )
        assert (ref.entsize, ref.link, ref.info, ref.align) == (
            sec.entsize,
            sec.link,
            sec.info,
            sec.addralign,
        ), ref
        assert ref.flags == _flag_letters(sec.flags), ref


def test_symbols_match_readelf(rich_object: Path) -> None:
    obj = read_object(rich_object)
    expected = readelf_symbols(rich_object)
    assert [s.index for s in expected] == list(range(len(obj.symbols)))
    for ref, sym in zip(expected, obj.symbols, strict=True):
        ours = (
            _symbol_name(obj, sym),
            sym.value,
            sym.size,
            _SYMBOL_TYPES[sym.type],
            _BINDS[sym.bind],
            _ndx(sym.shndx),
        )
        assert ours == (ref.name, ref.value, ref.size, ref.type, ref.bind, ref.ndx), ref
    # The object exercises what it is meant to: weak, common, static-local, .cold, __init.
    names = {s.name for s in obj.symbols}
    assert {"hook", "common_var", "seen.0", "maybe.cold", "setup", "__fentry__"} <= names


def test_relocations_match_readelf(rich_object: Path) -> None:
    obj = read_object(rich_object)
    ours = [
        ReadelfReloc(
            sec.name,
            r.offset,
            r.symbol,
            r.type,
            _RELOC_TYPES.get(r.type, "?"),
            _symbol_name(obj, obj.symbols[r.symbol]),
            r.addend,
        )
        for sec in obj.sections
        if sec.type == SHT_RELA
        for r in sec.relocations
    ]
    expected = readelf_relocations(rich_object)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected, strict=True):
        # Debug info uses relocation types we have no name for; compare those by number only.
        assert (replace(a, type_name=b.type_name) if a.type_name == "?" else a) == b
    kinds = {(r.type_name, r.symbol_name) for r in ours}
    assert ("R_X86_64_PLT32", "__fentry__") in kinds
    assert ("R_X86_64_64", ".text.classify") in kinds  # the jump table
    assert any(r.symbol_name == "shared_table" and r.addend == 8 for r in ours)  # &table[2]


def test_reader_refuses_what_is_not_a_relocatable(tmp_path: Path) -> None:
    text = tmp_path / "not-elf.o"
    text.write_text("hello\n")
    # A user's input, not a bug of ours: a KspliceError that names the file.
    with pytest.raises(KspliceError, match=re.escape(str(text))):
        read_object(text)
    src = tmp_path / "lib.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    shared = tmp_path / "lib.so"
    subprocess.run(
        ["gcc", "-shared", "-nostdlib", "-fPIC", "-o", shared, src], check=True, capture_output=True
    )
    with pytest.raises(KspliceError, match=re.escape(str(shared))):
        read_object(shared)


def test_objects_with_extended_section_numbering(tmp_path: Path) -> None:
    """-fdata-sections gives each variable a section: past 0xff00 sections, ELF keeps the real
    section index of a symbol in .symtab_shndx. readelf follows it; we refuse such objects."""
    count = 65400
    source = "".join(f"int v{i} = {i};\n" for i in range(count))
    obj_path = compile_c(tmp_path, source + "int sum(void) { return v0 + v1; }\n", "big")
    expected = {s.name: s.ndx for s in readelf_symbols(obj_path) if s.name in ("v0", "v1")}
    assert all(int(ndx) >= 0xFF00 for ndx in expected.values())  # the test exercises the case
    # Our model keeps one 16-bit section index per symbol: such objects are refused, clearly,
    # rather than read with symbols pointing at the wrong sections.
    with pytest.raises(KspliceError, match=re.escape(str(obj_path))):
        read_object(obj_path)


def test_a_relocation_that_asks_nothing_is_not_read(tmp_path: Path) -> None:
    # objtool leaves an R_X86_64_NONE where it NOPs a static branch's jump: nothing is to be
    # written there, so nothing downstream (run-pre's masks, the differ) may see a reference.
    source = """
void cold_path(void);
void hot(int x)
{
    asm volatile("1: .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\\n\\t"
                 ".reloc 1b + 1, R_X86_64_NONE, cold_path" ::: "memory");
    if (x)
        cold_path();
}
"""
    path = compile_c(tmp_path, source)
    assert any(r.type_name == "R_X86_64_NONE" for r in readelf_relocations(path))
    obj = read_object(path)
    relocs = [r for sec in obj.sections if sec.type == SHT_RELA for r in sec.relocations]
    assert relocs, "the call to cold_path and __fentry__ are still read"
    assert all(r.type != R_X86_64_NONE for r in relocs)
