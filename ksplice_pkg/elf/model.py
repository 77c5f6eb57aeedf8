"""Our own view of an ELF64 relocatable object (x86-64): sections, symbols, relocations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_GROUP = 17

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_MERGE = 0x10
SHF_STRINGS = 0x20
SHF_INFO_LINK = 0x40
SHF_GROUP = 0x200
# include/uapi/linux/elf.h: a relocation section that livepatch applies, not the module loader.
SHF_RELA_LIVEPATCH = 0x00100000

SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
# include/uapi/linux/elf.h: a symbol that livepatch resolves through kallsyms.
SHN_LIVEPATCH = 0xFF20

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2

STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_FILE = 4

R_X86_64_NONE = 0
R_X86_64_64 = 1
R_X86_64_PC32 = 2
R_X86_64_PLT32 = 4
R_X86_64_32 = 10
R_X86_64_32S = 11
R_X86_64_PC64 = 24


@dataclass(frozen=True)
class RelocForm:
    """What the linker writes at a relocation site of one type."""

    size: int  # bytes patched
    signed: bool
    pc_relative: bool  # S + A - P rather than S + A


# The x86-64 psABI relocation types kernel code uses: GOT-relative ones never appear (the kernel
# is built without a GOT), and PLT32 is a PC32 since there is no PLT either.
RELOC_FORMS: dict[int, RelocForm] = {
    R_X86_64_64: RelocForm(8, signed=False, pc_relative=False),
    R_X86_64_PC32: RelocForm(4, signed=True, pc_relative=True),
    R_X86_64_PLT32: RelocForm(4, signed=True, pc_relative=True),
    R_X86_64_32: RelocForm(4, signed=False, pc_relative=False),
    R_X86_64_32S: RelocForm(4, signed=True, pc_relative=False),
    R_X86_64_PC64: RelocForm(8, signed=True, pc_relative=True),
}


def is_pc_relative(rtype: int) -> bool:
    form = RELOC_FORMS.get(rtype)
    return form is not None and form.pc_relative


@dataclass
class Symbol:
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    other: int = 0

    @property
    def is_local(self) -> bool:
        return self.bind == STB_LOCAL

    @property
    def is_defined(self) -> bool:
        return self.shndx not in (SHN_UNDEF, SHN_LIVEPATCH, SHN_ABS, SHN_COMMON)


@dataclass(frozen=True)
class Relocation:
    offset: int
    type: int
    symbol: int  # index into the object's symbol table
    addend: int


@dataclass
class Section:
    name: str
    type: int
    flags: int
    data: bytes  # for SHT_NOBITS: empty, size in `size`
    addralign: int = 1
    entsize: int = 0
    link: int = 0
    info: int = 0
    size_override: int | None = None  # SHT_NOBITS size
    relocations: list[Relocation] = field(default_factory=list)  # SHT_RELA only

    @property
    def size(self) -> int:
        if self.size_override is not None:
            return self.size_override
        return len(self.data)

    def copy(self) -> Section:
        return replace(self, relocations=list(self.relocations))


@dataclass
class ElfObject:
    """A relocatable object. sections[0] is the null section; symbols[0] the null symbol."""

    sections: list[Section]
    symbols: list[Symbol]
    machine: int = 62  # EM_X86_64
    osabi: int = 0
    flags: int = 0

    def section_index(self, name: str) -> int | None:
        for i, s in enumerate(self.sections):
            if s.name == name:
                return i
        return None

    def rela_for(self, index: int) -> Section | None:
        """The SHT_RELA section that relocates section `index`, if any."""
        for s in self.sections:
            if s.type == SHT_RELA and s.info == index:
                return s
        return None

    def symbol_named(self, name: str) -> Symbol | None:
        for s in self.symbols:
            if s.name == name:
                return s
        return None
