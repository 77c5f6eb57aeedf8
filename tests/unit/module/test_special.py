"""Special sections (module.special) through extraction: an update carries exactly the per-site
entries whose first relocation points into code it includes, re-targeted at its own copy.

The tables are written here in inline asm the way the kernel's macros write them: an exception
table entry (12 bytes: insn, fixup, data), a jump label entry (16 bytes: code, target, key), and
the parallel ORC tables (.orc_unwind_ip, 4 bytes, relocated; .orc_unwind, 6 bytes, not).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import InternalError
from ksplice_pkg.module.extract import ExternalRef
from ksplice_pkg.module.klp import klp_symbol_name
from ksplice_pkg.module.special import FIXED_SIZES, PARALLEL, _read_constant
from tests.unit.tools import (
    ReadelfReloc,
    compile_c,
    extract_unit,
    readelf_relocations,
    readelf_sections,
    section_bytes,
)

SOURCE = r"""
extern int some_key;
#define EX_SITE(tag) asm volatile("1: nop\n\t.pushsection __ex_table,\"a\"\n\t.balign 4\n"	\
	"\t.long 1b - .\n\t.long 1b - .\n\t.long " #tag "\n\t.popsection")
#define JUMP_SITE(tag) asm volatile("1: nop\n\t.pushsection __jump_table,\"aw\"\n"		\
	"\t.balign 8\n\t.long 1b - .\n\t.long 1b - .\n\t.quad some_key + " #tag " - .\n"	\
	"\t.popsection")
#define ORC_SITE(tag) asm volatile("1: nop\n\t.pushsection .orc_unwind_ip,\"a\"\n"		\
	"\t.long 1b - .\n\t.popsection\n\t.pushsection .orc_unwind,\"a\"\n"			\
	"\t.short " #tag ", 0, 0\n\t.popsection")
int before(int x) { EX_SITE(101); JUMP_SITE(1); ORC_SITE(201); return x + 1; }
int patched(int x) { EX_SITE(102); JUMP_SITE(2); ORC_SITE(202); EX_SITE(103); ORC_SITE(203);
	return x * 2; }
int after(int x) { EX_SITE(104); JUMP_SITE(3); ORC_SITE(204); return x - 1; }
"""
SIZES = {"__ex_table": 12, "__jump_table": 16, ".orc_unwind": 6, ".orc_unwind_ip": 4}


def resolver(obj: ElfObject, sym: Symbol) -> ExternalRef:
    if sym.name == "__fentry__":
        return ExternalRef(sym.name, exported=True)
    return ExternalRef(klp_symbol_name("vmlinux", sym.name, 0), exported=False)


def _entries(path: Path, section: str, size: int) -> dict[int, list[ReadelfReloc]]:
    """The relocations of each entry of a table, by entry number, as readelf lists them."""
    out: dict[int, list[ReadelfReloc]] = {}
    for r in readelf_relocations(path):
        if r.section == f".rela{section}":
            out.setdefault(r.offset // size, []).append(r)
    return out


@pytest.fixture
def carried(tmp_path: Path) -> tuple[Path, Path]:
    post, part, _ = extract_unit(
        tmp_path, SOURCE, SOURCE.replace("x * 2", "x * 3"), resolver, SIZES
    )
    return post, part


@pytest.mark.parametrize("table", ["__ex_table", "__jump_table", ".orc_unwind_ip"])
def test_only_the_included_functions_entries_are_carried(
    carried: tuple[Path, Path], table: str
) -> None:
    post, part = carried
    size = SIZES[table]
    entries = _entries(post, table, size)
    mine = [n for n, relocs in sorted(entries.items()) if relocs[0].symbol_name == ".text.patched"]
    # The situation under test: entries of other functions lie before and after.
    assert len(entries) > len(mine) > 0
    assert {r[0].symbol_name for r in entries.values()} >= {".text.before", ".text.after"}
    # The module's table: those entries, in order, bytes as they were.
    data = section_bytes(post, table)
    assert section_bytes(part, table) == b"".join(data[n * size : (n + 1) * size] for n in mine)
    # And each relocation as it was, now into the module's copy of the function; the jump
    # label's key, which vmlinux does not export, through its klp name.
    klp_key = ".klp.sym.vmlinux.some_key,0"
    expected = [
        (position * size + r.offset % size, r.type_name, r.symbol_name, r.addend)
        for position, n in enumerate(mine)
        for r in entries[n]
    ]
    expected = [(o, t, klp_key if s == "some_key" else s, a) for o, t, s, a in expected]
    got = [
        (r.offset, r.type_name, r.symbol_name, r.addend)
        for r in readelf_relocations(part)
        if r.section == f".rela{table}"
    ]
    assert got == expected


def test_parallel_orc_entries_follow_their_ip_entries(carried: tuple[Path, Path]) -> None:
    post, part = carried
    assert PARALLEL[".orc_unwind"] == ".orc_unwind_ip"
    ips = _entries(post, ".orc_unwind_ip", 4)
    mine = [n for n, relocs in sorted(ips.items()) if relocs[0].symbol_name == ".text.patched"]
    orc = section_bytes(post, ".orc_unwind")
    carried_orc = section_bytes(part, ".orc_unwind")
    assert carried_orc == b"".join(orc[n * 6 : (n + 1) * 6] for n in mine)
    # The tags written in the source: patched's two sites, 202 and 203.
    assert [int.from_bytes(carried_orc[i : i + 2], "little") for i in (0, 6)] == [202, 203]


def test_tables_the_sizes_do_not_name_are_left_out(tmp_path: Path) -> None:
    _, part, _ = extract_unit(
        tmp_path, SOURCE, SOURCE.replace("x * 2", "x * 3"), resolver, {"__ex_table": 12}
    )
    names = {s.name for s in readelf_sections(part)}
    assert "__ex_table" in names
    assert not names & {"__jump_table", ".orc_unwind", ".orc_unwind_ip"}


def test_fixed_sizes_are_the_kernels() -> None:
    """One field per site whatever the kernel version: an address, or an s32 offset."""
    assert FIXED_SIZES["__mcount_loc"] == 8
    assert FIXED_SIZES[".orc_unwind_ip"] == 4
    assert FIXED_SIZES[".return_sites"] == 4


def test_probe_constant_is_read_from_the_compiled_probe(tmp_path: Path) -> None:
    """entry_sizes compiles `sizeof(<entry type>)` against the target tree and reads it back."""
    probe = "struct entry { int insn, fixup, data; };\n"
    probe += "const unsigned long ksplice_entry_size = sizeof(struct entry);\n"
    obj = read_object(compile_c(tmp_path, probe, "probe"))
    assert _read_constant(obj, "ksplice_entry_size") == 12
    assert _read_constant(obj, "no_such_constant") is None


def test_ftrace_call_sites_of_the_carried_code_only(tmp_path: Path) -> None:
    """__mcount_loc, with the kernel-independent entry size: one address per carried function,
    at its `call __fentry__`."""
    post, part, _ = extract_unit(
        tmp_path, SOURCE, SOURCE.replace("x * 2", "x * 3"), resolver, dict(FIXED_SIZES)
    )
    before = [
        (r.symbol_name, r.addend)
        for r in readelf_relocations(post)
        if r.section == ".rela__mcount_loc"
    ]
    assert {name for name, _ in before} == {".text.before", ".text.patched", ".text.after"}
    carried = [
        (r.symbol_name, r.addend)
        for r in readelf_relocations(part)
        if r.section == ".rela__mcount_loc"
    ]
    assert carried == [entry for entry in before if entry[0] == ".text.patched"]
    assert len(section_bytes(part, "__mcount_loc")) == 8 * len(carried)


def test_entry_size_that_does_not_divide_the_table_is_a_bug(tmp_path: Path) -> None:
    post_source = SOURCE.replace("x * 2", "x * 3")
    assert len(section_bytes(compile_c(tmp_path, post_source, "probe"), "__ex_table")) % 20
    with pytest.raises(InternalError, match="__ex_table"):
        extract_unit(tmp_path, SOURCE, post_source, resolver, {"__ex_table": 20})
