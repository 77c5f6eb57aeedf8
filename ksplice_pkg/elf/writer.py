"""Writing our model back out as an ELF64 relocatable, the part pyelftools cannot do.

The symbol table, its string table, the section name table and every SHT_RELA section are
regenerated from the model; other sections are written as they are. Locals come first in the
symbol table, as ELF requires; sh_info of .symtab is the first non-local index.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ksplice_pkg.elf.model import (
    SHT_NOBITS,
    SHT_NULL,
    SHT_RELA,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_LOCAL,
    ElfObject,
)
from ksplice_pkg.elf.reader import RELA, SYM
from ksplice_pkg.errors import InternalError, KspliceError

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")


class _StrTab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if s not in self.offsets:
            self.offsets[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.offsets[s]


def check_symbol_order(obj: ElfObject) -> None:
    seen_global = False
    for sym in obj.symbols[1:]:
        if sym.bind != STB_LOCAL:
            seen_global = True
        elif seen_global:
            raise InternalError(f"local symbol {sym.name} after a global one")


def serialize(obj: ElfObject) -> bytes:
    """The bytes of obj as an ELF file: .symtab, .strtab, .shstrtab and RELA regenerated."""
    check_symbol_order(obj)
    if len(obj.sections) >= 0xFF00:
        raise KspliceError(
            f"cannot write an object of {len(obj.sections)} sections: extended section "
            "numbering is not supported"
        )
    sections = [s.copy() for s in obj.sections]
    symtab_i = next((i for i, s in enumerate(sections) if s.type == SHT_SYMTAB), None)
    if symtab_i is not None:
        strtab_i = sections[symtab_i].link
        strtab = _StrTab()
        entries = bytearray()
        for sym in obj.symbols:
            entries += SYM.pack(
                strtab.add(sym.name) if sym.name else 0,
                (sym.bind << 4) | sym.type,
                sym.other,
                sym.shndx,
                sym.value,
                sym.size,
            )
        sections[symtab_i].data = bytes(entries)
        sections[symtab_i].entsize = SYM.size
        sections[symtab_i].info = next(
            (i for i, s in enumerate(obj.symbols) if i and s.bind != STB_LOCAL), len(obj.symbols)
        )
        sections[strtab_i].data = bytes(strtab.data)
    for sec in sections:
        if sec.type == SHT_RELA:
            sec.data = b"".join(
                RELA.pack(r.offset, (r.symbol << 32) | r.type, r.addend) for r in sec.relocations
            )
            sec.entsize = RELA.size
            sec.link = symtab_i or 0
    shstrtab_i = next(
        (i for i, s in enumerate(sections) if s.name == ".shstrtab" and s.type == SHT_STRTAB), None
    )
    if shstrtab_i is None:
        raise InternalError("the object has no .shstrtab")
    names = _StrTab()
    name_offsets = [names.add(s.name) for s in sections]
    sections[shstrtab_i].data = bytes(names.data)

    out = bytearray(EHDR.size)
    offsets: list[int] = []
    for sec in sections:
        if sec.type in (SHT_NULL, SHT_NOBITS):
            offsets.append(len(out) if sec.type == SHT_NOBITS else 0)
            continue
        align = max(sec.addralign, 1)
        out += b"\0" * (-len(out) % align)
        offsets.append(len(out))
        out += sec.data
    out += b"\0" * (-len(out) % 8)
    shoff = len(out)
    for i, sec in enumerate(sections):
        out += SHDR.pack(
            name_offsets[i] if i else 0,
            sec.type,
            sec.flags,
            0,
            offsets[i],
            sec.size,
            sec.link,
            sec.info,
            sec.addralign,
            sec.entsize,
        )
    ident = b"\x7fELF" + bytes([2, 1, 1, obj.osabi]) + b"\0" * 8
    EHDR.pack_into(
        out,
        0,
        ident,
        1,  # ET_REL
        obj.machine,
        1,
        0,
        0,
        shoff,
        obj.flags,
        EHDR.size,
        0,
        0,
        SHDR.size,
        len(sections),
        shstrtab_i,
    )
    return bytes(out)


def write_object(obj: ElfObject, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialize(obj))
    tmp.replace(path)
