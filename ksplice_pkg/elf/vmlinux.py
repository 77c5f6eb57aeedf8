"""The target kernel's linked image read through pyelftools: its loaded sections, the bytes at
a link-time address, its GNU build-id. The vmlinux inside a distro vmlinuz carries no symbol
table: symbols come from kallsyms (target/symbols.py); this only reads bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from ksplice_pkg.errors import KspliceError

__all__ = ["Vmlinux"]


@dataclass(frozen=True)
class _Section:
    name: str
    address: int
    size: int
    offset: int
    has_bytes: bool  # False for SHT_NOBITS (.bss and the like): nothing in the file
    executable: bool

    def holds(self, address: int, size: int) -> bool:
        return self.address <= address and address + size <= self.address + self.size


class Vmlinux:
    """Bytes of the target kernel at link-time addresses, as its ELF's loaded sections hold them."""

    def __init__(self, path: Path, sections: list[_Section], build_id: str | None) -> None:
        self.path = path
        self._sections = sections
        self._build_id = build_id
        text = [s for s in sections if s.name == ".text"]
        if not text:
            raise KspliceError(f"{path} has no .text section: it is not a vmlinux")
        # On x86-64 .text opens the image: its address is the link-time _text.
        self.text_address = text[0].address

    @classmethod
    def open(cls, path: Path) -> Vmlinux:
        """Open an ELF vmlinux (target/vmlinuz.py extracts one from a compressed image)."""
        try:
            with path.open("rb") as f:
                return cls._read_headers(path, ELFFile(f))
        except ELFError as e:
            raise KspliceError(f"{path} is not a readable ELF file: {e}") from e
        except OSError as e:
            raise KspliceError(f"cannot read the kernel image {path}: {e.strerror}") from e

    @classmethod
    def _read_headers(cls, path: Path, elf: ELFFile) -> Vmlinux:
        if elf["e_machine"] != "EM_X86_64" or elf.elfclass != 64:
            raise KspliceError(f"{path} is not an x86-64 kernel ({elf['e_machine']})")
        sections: list[_Section] = []
        build_id: str | None = None
        for section in elf.iter_sections():
            flags = int(section["sh_flags"])
            if flags & SH_FLAGS.SHF_ALLOC and int(section["sh_size"]):
                sections.append(
                    _Section(
                        name=str(section.name),
                        address=int(section["sh_addr"]),
                        size=int(section["sh_size"]),
                        offset=int(section["sh_offset"]),
                        has_bytes=section["sh_type"] != "SHT_NOBITS",
                        executable=bool(flags & SH_FLAGS.SHF_EXECINSTR),
                    )
                )
            if isinstance(section, NoteSection) and build_id is None:
                # The Xen notes of vmlinux reuse type 3 too: only the GNU owner's is the build-id.
                for note in section.iter_notes():
                    if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                        build_id = str(note["n_desc"])
        return cls(path, sections, build_id)

    def build_id(self) -> str | None:
        """The GNU build-id note as hex: the running kernel shows the same in /sys/kernel/notes."""
        return self._build_id

    def _section(self, address: int, size: int) -> _Section | None:
        for section in self._sections:
            if section.holds(address, size):
                return section
        return None

    def section_name(self, address: int) -> str | None:
        """The name of the loaded section holding address (e.g. .text, .data..percpu)."""
        section = self._section(address, 1)
        return section.name if section else None

    def is_executable(self, address: int) -> bool:
        section = self._section(address, 1)
        return section is not None and section.executable

    def read(self, address: int, size: int) -> bytes:
        """size bytes at link-time address, from one loaded section of the file."""
        section = self._section(address, size)
        if section is None:
            raise KspliceError(
                f"{address:#x}..{address + size:#x} is outside the loaded sections of {self.path}"
            )
        if not section.has_bytes:
            raise KspliceError(
                f"{address:#x} lies in {section.name}, which has no bytes in {self.path}"
            )
        with self.path.open("rb") as f:
            f.seek(section.offset + address - section.address)
            data = f.read(size)
        if len(data) != size:
            raise KspliceError(f"{self.path} is truncated: {section.name} runs past its end")
        return data
