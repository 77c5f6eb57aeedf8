"""What the unit tests share: gcc compiling small objects the way kbuild compiles kernel code,
and GNU readelf's listings parsed, the reference that our ELF code is checked against.

How kbuild compiles x86-64 kernel code, as far as object layout goes (KERNEL_CFLAGS): one
section per function and object, no PIC, the kernel code model, ftrace entries recorded in
__mcount_loc.

The differ's tests compile a pre and a post side, each from a file of the same name in its own
directory, `pre/t.c` and `post/t.c`, as kbuild compiles the pristine and the patched tree; the
module tests extract an update's part from such a pair. Run-pre and the vmlinux reader work on a
kernel in miniature: units linked by ld at the kernel's address, with a System.map from nm.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.diff.compare import UnitDiff
from ksplice_pkg.diff.unit import diff_objects
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.writer import write_object
from ksplice_pkg.module.extract import Extracted, Resolver, extract
from ksplice_pkg.target.symbols import SymbolMap

KERNEL_CFLAGS = [
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-pic",
    "-mcmodel=kernel",
    "-fno-asynchronous-unwind-tables",
    "-pg",
    "-mfentry",
    "-mrecord-mcount",
]

PRINTK = "extern int printk(const char *fmt, ...);\n"

# A unit with a little of each: a global and a static referenced, strings, an external call.
BASE = (
    PRINTK
    + r"""
extern int limit;
static int calls;
int scale(int x) { return x * 3 + limit; }
int offset(int x) { calls++; return x + 17; }
int greet(int x) { return printk("hello %d\n", x); }
int farewell(int x) { return printk("goodbye %d\n", x); }
"""
)


def compile_c(tmp_path: Path, source: str, name: str = "t", extra: tuple[str, ...] = ()) -> Path:
    """tmp_path/name.c compiled like kernel code into tmp_path/name.o."""
    src = tmp_path / f"{name}.c"
    obj = tmp_path / f"{name}.o"
    src.write_text(source)
    proc = subprocess.run(
        ["gcc", "-c", *KERNEL_CFLAGS, *extra, "-o", obj, src.name],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return obj


def compile_object(
    tmp_path: Path, name: str, source: str, sections: bool, extra: list[str]
) -> Path:
    """tmp_path/name.o from source: with `sections`, as create compiles (one section per
    function); without, as a distro module is (calls inside one .text resolved by the
    assembler)."""
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    flags = [f for f in KERNEL_CFLAGS if sections or "sections" not in f]
    out = tmp_path / f"{name}.o"
    subprocess.run(["gcc", "-c", *flags, *extra, "-o", out, src], check=True, capture_output=True)
    return out


def tool(*args: str | Path) -> str:
    """A reference tool's output; it must succeed without a word on stderr (readelf warns there
    about bad offsets, string indices and relocation links)."""
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "LANG": "C"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# The differ's pre and post sides.


def write_side(tmp_path: Path, side: str, source: str) -> Path:
    path = tmp_path / side / "t.c"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def compile_side(tmp_path: Path, side: str, extra: tuple[str, ...] = ()) -> ElfObject:
    """Compile tmp_path/side/t.c as `t.c` (so __FILE__ is the same on both sides)."""
    subprocess.run(
        ["gcc", "-c", *KERNEL_CFLAGS, *extra, "-o", "t.o", "t.c"],
        cwd=tmp_path / side,
        check=True,
        capture_output=True,
    )
    return read_object(tmp_path / side / "t.o")


def build(tmp_path: Path, side: str, source: str, extra: tuple[str, ...] = ()) -> ElfObject:
    write_side(tmp_path, side, source)
    return compile_side(tmp_path, side, extra)


def diff(tmp_path: Path, pre: str, post: str, extra: tuple[str, ...] = ()) -> UnitDiff:
    return diff_objects(
        "t.o", build(tmp_path, "pre", pre, extra), build(tmp_path, "post", post, extra)
    )


def extract_unit(
    tmp_path: Path,
    pre: str,
    post: str,
    resolver: Resolver,
    entry_sizes: Mapping[str, int] | None = None,
) -> tuple[Path, Path, Extracted]:
    """Diff the pre and post sides, extract the update's code from the post object, write it:
    returns the post object, the written part and what extract said about it."""
    post_obj = build(tmp_path, "post", post)
    d = diff_objects("t.o", build(tmp_path, "pre", pre), post_obj)
    extracted = extract(post_obj, d, resolver, "t", entry_sizes or {})
    part = tmp_path / "part.o"
    write_object(extracted.obj, part)
    return tmp_path / "post" / "t.o", part, extracted


def assert_empty(d: UnitDiff) -> None:
    assert (d.changed, d.new_functions, d.new_data) == ({}, [], []), d


# ---------------------------------------------------------------------------------------------
# What readelf prints, parsed.


@dataclass(frozen=True)
class ReadelfSection:
    index: int
    name: str
    type: str
    size: int
    entsize: int
    flags: str
    link: int
    info: int
    align: int


_SECTION_LINE = re.compile(
    r"^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+[0-9a-f]{16}\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)"
    r"\s+([A-Za-z]*)\s+(\d+)\s+(\d+)\s+(\d+)$"
)


def readelf_sections(path: Path) -> list[ReadelfSection]:
    out = []
    for line in tool("readelf", "-SW", path).splitlines():
        m = _SECTION_LINE.match(line)
        if m:
            out.append(
                ReadelfSection(
                    index=int(m[1]),
                    name=m[2],
                    type=m[3],
                    size=int(m[4], 16),
                    entsize=int(m[5], 16),
                    flags=m[6],
                    link=int(m[7]),
                    info=int(m[8]),
                    align=int(m[9]),
                )
            )
    return out


def readelf_section_flags(path: Path) -> dict[str, int]:
    """Each section's sh_flags as a number, from `readelf -SW -t` (which spells every flag,
    including the OS-specific ones that -SW shows only as `o`)."""
    flags: dict[str, int] = {}
    name = ""
    for line in tool("readelf", "-SW", "-t", path).splitlines():
        if m := re.match(r"^\s*\[\s*\d+\]\s+(\S*)$", line):
            name = m[1]
        elif m := re.match(r"^\s*\[([0-9a-f]{16})\]", line):
            flags[name] = int(m[1], 16)
    return flags


@dataclass(frozen=True)
class ReadelfSymbol:
    index: int
    value: int
    size: int
    type: str
    bind: str
    ndx: str  # UND, ABS, COM, a number, or e.g. `OS [0xff20]` for SHN_LIVEPATCH
    name: str


_SYMBOL_LINE = re.compile(
    r"^\s*(\d+):\s+([0-9a-f]{16})\s+(0x[0-9a-f]+|\d+)\s+(\S+)\s+(\S+)\s+(\S+)"
    r"\s+((?:OS|PRC) \[0x[0-9a-f]+\]|\S+) ?(.*)$"
)


def readelf_symbols(path: Path) -> list[ReadelfSymbol]:
    out = []
    for line in tool("readelf", "-sW", path).splitlines():
        m = _SYMBOL_LINE.match(line)
        if m:
            out.append(
                ReadelfSymbol(
                    index=int(m[1]),
                    value=int(m[2], 16),
                    size=int(m[3], 0),
                    type=m[4],
                    bind=m[5],
                    ndx=m[7],
                    name=m[8],
                )
            )
    return out


@dataclass(frozen=True)
class ReadelfReloc:
    section: str
    offset: int
    symbol: int  # from r_info
    type: int  # from r_info
    type_name: str
    symbol_name: str
    addend: int


_RELOC_SECTION = re.compile(r"^Relocation section '([^']+)' at offset 0x[0-9a-f]+ contains")
_RELOC_LINE = re.compile(
    r"^([0-9a-f]{16})\s+([0-9a-f]{16})\s+(\S+)\s+[0-9a-f]{16}\s+(.*?) ([+-]) ([0-9a-f]+)$"
)


def readelf_relocations(path: Path) -> list[ReadelfReloc]:
    out = []
    section = ""
    for line in tool("readelf", "-rW", path).splitlines():
        if m := _RELOC_SECTION.match(line):
            section = m[1]
        elif m := _RELOC_LINE.match(line):
            info = int(m[2], 16)
            addend = int(m[6], 16) * (-1 if m[5] == "-" else 1)
            out.append(
                ReadelfReloc(
                    section, int(m[1], 16), info >> 32, info & 0xFFFFFFFF, m[3], m[4], addend
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# A kernel source tree in miniature.


def small_tree(root: Path) -> Path:
    """Two C files in two directories, as a patch against a kernel tree names them."""
    (root / "fs" / "proc").mkdir(parents=True)
    (root / "fs" / "proc" / "a.c").write_text("int a(void)\n{\n\treturn 1;\n}\n")
    (root / "kernel").mkdir()
    (root / "kernel" / "b.c").write_text("int b(void)\n{\n\treturn 2;\n}\n")
    return root


def section_bytes(path: Path, name: str) -> bytes:
    """A section's contents, as objcopy copies them out."""
    out = path.with_name(f"{path.name}.{name.strip('.')}.bin")
    tool("objcopy", "-O", "binary", f"--only-section={name}", path, out)
    data = out.read_bytes()
    out.unlink()
    return data


# ---------------------------------------------------------------------------------------------
# A kernel in miniature: units compiled like kernel code, linked at the kernel's address.

LINK_TEXT = 0xFFFFFFFF81000000

# The shape of arch/x86/kernel/vmlinux.lds, as far as run-pre looks: _text opens .text at the
# link-time address, the GNU build-id in .notes.
_VMLINUX_LDS = f"""
ENTRY(_text)
SECTIONS {{
	. = {LINK_TEXT:#x};
	.text : {{ _text = .; *(.text .text.*) }}
	.rodata : {{ *(.rodata .rodata.*) }}
	.notes : {{ *(.note.gnu.build-id) }}
	.data : {{ *(.data .data.*) }}
	.bss : {{ *(.bss .bss.*) }}
	/DISCARD/ : {{ *(.note.GNU-stack) *(.comment) }}
}}
"""

# What the units call that a real kernel would provide; built without ftrace entries.
_RUNTIME = (
    "#define notrace __attribute__((no_instrument_function))\n"
    "notrace void __fentry__(void) {}\n"
    "notrace int printk(const char *fmt, ...) { return 0; }\n"
)


def link_vmlinux(directory: Path, units: Mapping[str, str]) -> tuple[Path, Path]:
    """Compile each unit (name -> C source) into directory/<name>.o and link them, in order,
    into directory/vmlinux; returns it and its System.map, as `nm -n` writes one."""
    directory.mkdir(parents=True, exist_ok=True)
    runtime = directory / "runtime"
    runtime.mkdir()
    runtime_o = compile_c(runtime, _RUNTIME, "runtime")
    objects = [compile_c(directory, source, name) for name, source in units.items()]
    (directory / "vmlinux.lds").write_text(_VMLINUX_LDS)
    vmlinux = directory / "vmlinux"
    tool(
        "ld",
        "-T",
        directory / "vmlinux.lds",
        "--build-id=sha1",
        "--no-warn-rwx-segments",
        "-o",
        vmlinux,
        runtime_o,
        *objects,
    )
    system_map = directory / "System.map"
    system_map.write_text(tool("nm", "-n", vmlinux))
    return vmlinux, system_map


def shifted_map(system_map: Path, shift: int, path: Path) -> Path:
    """The same kernel's /proc/kallsyms under KASLR: every address moved by shift."""
    lines = []
    for line in system_map.read_text().splitlines():
        address, rest = line.split(" ", 1)
        lines.append(f"{int(address, 16) + shift:016x} {rest}")
    path.write_text("\n".join(lines) + "\n")
    return path


def bzimage_header(version: bytes) -> bytes:
    """A file with the bzImage header fields version_string reads: "HdrS" at 0x202, and at
    0x20e the offset (minus 0x200) of the version text, here at 0x300."""
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x300 - 0x200).to_bytes(2, "little")
    data[0x300 : 0x300 + len(version)] = version
    return bytes(data)


def unshifted(symbols: SymbolMap, shift: int) -> SymbolMap:
    """The map with the KASLR shift taken out of vmlinux addresses (link-time addresses), to
    compare a kallsyms copy with System.map. Module symbols are left alone (modules are placed
    on their own), and so are absolute ones: with CONFIG_KALLSYMS_ABSOLUTE_PERCPU the per-cpu
    offsets are absolute, and KASLR does not move them."""
    return SymbolMap(
        (
            dataclasses.replace(s, address=s.address - shift)
            if s.module is None and s.type not in "aA"
            else s
            for s in symbols.symbols
        ),
        source=f"{symbols.source} (unshifted by {shift:#x})",
    )
