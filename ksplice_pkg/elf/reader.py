"""Reading relocatable objects and modules into our model.

pyelftools parses the ELF header and section table; symbol and relocation entries are decoded
from the raw section bytes, so values pyelftools has no name for (SHN_LIVEPATCH, OS-specific
flags) come through unchanged.
"""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_SH_TYPE_AMD64

from ksplice_pkg.elf.model import (
    R_X86_64_NONE,
    SHT_NOBITS,
    SHT_RELA,
    SHT_SYMTAB,
    ElfObject,
    Relocation,
    Section,
    Symbol,
)
from ksplice_pkg.errors import KspliceError

_SHN_LORESERVE = 0xFF00
SYM = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, st_value, st_size
RELA = struct.Struct("<QQq")  # r_offset, r_info, r_addend


def _sh_type(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value in ENUM_SH_TYPE_AMD64:
        return int(ENUM_SH_TYPE_AMD64[value])
    raise KspliceError(f"unknown section type {value!r}")


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode()


def read_object(path: Path) -> ElfObject:
    """Read an x86-64 ELF relocatable (.o or .ko) completely into memory."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            if elf.header["e_type"] != "ET_REL" or elf.elfclass != 64 or not elf.little_endian:
                raise KspliceError(f"{path} is not a 64-bit little-endian relocatable object")
            if elf.num_sections() >= _SHN_LORESERVE or elf.get_section_by_name(".symtab_shndx"):
                raise KspliceError(
                    f"{path} has {elf.num_sections()} sections: objects that need ELF's "
                    "extended section numbering are not supported",
                    hint="split the source file, or build it without -fdata-sections",
                )
            sections: list[Section] = []
            for sec in elf.iter_sections():
                h = sec.header
                sh_type = _sh_type(h["sh_type"])
                nobits = sh_type == SHT_NOBITS
                sections.append(
                    Section(
                        name=sec.name,
                        type=sh_type,
                        flags=h["sh_flags"],
                        data=b"" if nobits else sec.data(),
                        addralign=h["sh_addralign"],
                        entsize=h["sh_entsize"],
                        link=h["sh_link"],
                        info=h["sh_info"],
                        size_override=h["sh_size"] if nobits else None,
                    )
                )
            flags = elf.header["e_flags"]
    except (ELFError, OSError) as e:
        raise KspliceError(f"cannot read {path} as ELF: {e}") from e

    symbols: list[Symbol] = []
    for model_sec in sections:
        if model_sec.type == SHT_SYMTAB:
            strtab = sections[model_sec.link].data
            for name, info, other, shndx, value, size in SYM.iter_unpack(model_sec.data):
                symbols.append(
                    Symbol(
                        name=_cstr(strtab, name),
                        value=value,
                        size=size,
                        type=info & 0xF,
                        bind=info >> 4,
                        shndx=shndx,
                        other=other,
                    )
                )
    for model_sec in sections:
        if model_sec.type == SHT_RELA:
            # R_X86_64_NONE asks the linker for nothing. objtool leaves one where it turned a
            # jump into a NOP (a static branch's `jmp` under CONFIG_HAVE_JUMP_LABEL_HACK): the
            # site is a NOP in the target too, and what it may jump to is the __jump_table's.
            model_sec.relocations = [
                Relocation(offset=off, type=info & 0xFFFFFFFF, symbol=info >> 32, addend=addend)
                for off, info, addend in RELA.iter_unpack(model_sec.data)
                if info & 0xFFFFFFFF != R_X86_64_NONE
            ]
            model_sec.data = b""
    return ElfObject(sections=sections, symbols=symbols, flags=flags)
