"""Run-pre (runpre.verify) against the real Debian kernel: objects built from its source match
its vmlinuz.

Each test builds one object of the distro tree with -ffunction-sections (as the update builder
does), reads a function and its relocations with pyelftools, and checks it against the vmlinux
extracted from Debian's vmlinuz and the kallsyms captured from the booted kernel.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from ksplice_pkg.compile.kbuild import PreparedTree, default_jobs
from ksplice_pkg.elf.model import is_pc_relative
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import RunPreMismatchError
from ksplice_pkg.run import run
from ksplice_pkg.runpre.verify import Match, PreFunction, PreReloc, verify_function
from ksplice_pkg.target.symbols import SymbolMap
from tests.unit.tools import unshifted


def _build(tree: PreparedTree, *objects: str) -> list[Path]:
    run(
        [
            *tree.make_args(default_jobs(), "-ffunction-sections -fdata-sections"),
            *objects,
        ]
    )
    return [tree.objdir / o for o in objects]


def pre_function(obj: Path, name: str) -> PreFunction:
    """name's code and relocations in obj, section-symbol relocations rewritten to symbol+offset."""
    with obj.open("rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        elf_symbols = list(symtab.iter_symbols())
        text = elf.get_section_by_name(f".text.{name}")
        assert text is not None, f"{obj} has no .text.{name}"
        rela = elf.get_section_by_name(f".rela.text.{name}")
        relocs: list[PreReloc] = []
        if rela is not None:
            assert isinstance(rela, RelocationSection)
            for r in rela.iter_relocations():
                symbol = elf_symbols[r["r_info_sym"]]
                kind, addend = int(r["r_info_type"]), int(r["r_addend"])
                target_name = str(symbol.name)
                if symbol["st_info"]["type"] == "STT_SECTION":
                    # A PC-relative site is 4 bytes before the next instruction in the usual
                    # case; find the function or object that the section offset lands on.
                    offset = addend + (4 if is_pc_relative(kind) else 0)
                    named = [
                        s
                        for s in elf_symbols
                        if s["st_shndx"] == symbol["st_shndx"]
                        and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")
                        and s["st_value"] == offset
                    ]
                    if named:
                        target_name = str(named[0].name)
                        addend -= int(named[0]["st_value"])
                    else:
                        target_name = ""
                relocs.append(PreReloc(int(r["r_offset"]), kind, target_name, addend))
        return PreFunction(name=name, code=bytes(text.data()), relocs=tuple(relocs))


@pytest.fixture(scope="module")
def cmdline_proc_show(tree: PreparedTree) -> PreFunction:
    (obj,) = _build(tree, "fs/proc/cmdline.o")
    return pre_function(obj, "cmdline_proc_show")


def test_kaslr_shift(symbols: SymbolMap, vmlinux: Vmlinux) -> None:
    shift = symbols.kaslr_shift(vmlinux.text_address)
    # x86-64 KASLR moves the kernel in CONFIG_PHYSICAL_ALIGN (2 MiB) steps.
    assert shift % 0x200000 == 0
    plain = unshifted(symbols, shift)
    (fn,) = plain.vmlinux_symbols_named("cmdline_proc_show")
    assert vmlinux.is_executable(fn.address)


def test_cmdline_proc_show_matches(
    cmdline_proc_show: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    fn = cmdline_proc_show
    match = verify_function(fn, symbols, vmlinux)
    (expected,) = symbols.vmlinux_symbols_named("cmdline_proc_show")
    assert match.address == expected.address
    assert match.sympos == 0
    (call,) = [r for r in fn.relocs if r.symbol == "seq_puts"]
    assert match.references[call.offset].name == "seq_puts"
    # Every named relocation resolves, to the symbol it names: __fentry__, saved_command_line,
    # seq_puts, seq_putc and __x86_return_thunk.
    assert {o: s.name for o, s in match.references.items()} == {
        r.offset: r.symbol for r in fn.relocs
    }
    assert "__x86_return_thunk" in {r.symbol for r in fn.relocs}


def test_changed_byte_is_refused(
    cmdline_proc_show: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    fn = cmdline_proc_show
    masked = {r.offset + i for r in fn.relocs for i in range(4)}
    offset = next(o for o in range(len(fn.code) // 2, len(fn.code)) if o not in masked)
    code = bytearray(fn.code)
    code[offset] ^= 0xFF
    changed = dataclasses.replace(fn, code=bytes(code))
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(changed, symbols, vmlinux)
    assert "cmdline_proc_show" in e.value.message
    assert f"+{offset:#x}" in e.value.message  # where the code differs
    assert e.value.hint is not None


def test_masked_byte_is_ignored(
    cmdline_proc_show: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    """The relocation sites hold zeros in the object and linked values in vmlinux."""
    fn = cmdline_proc_show
    code = bytearray(fn.code)
    for r in fn.relocs:
        code[r.offset : r.offset + 4] = b"\xaa" * 4
    assert verify_function(dataclasses.replace(fn, code=bytes(code)), symbols, vmlinux).sympos == 0


def test_reference_to_another_symbol_is_refused(
    cmdline_proc_show: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    """Same bytes but a call to seq_putc where the kernel calls seq_puts: not the same code."""
    fn = cmdline_proc_show
    relocs = tuple(
        dataclasses.replace(r, symbol="seq_putc") if r.symbol == "seq_puts" else r
        for r in fn.relocs
    )
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(dataclasses.replace(fn, relocs=relocs), symbols, vmlinux)
    # What the kernel calls there and what the object claims.
    assert re.search(r"\bseq_puts\b", e.value.message) and "seq_putc" in e.value.message


def test_same_named_locals_get_their_sympos(
    tree: PreparedTree, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    """x2apic_send_IPI is a static function of both x2apic_phys.c and x2apic_cluster.c."""
    name = "x2apic_send_IPI"
    definitions = symbols.vmlinux_symbols_named(name)
    assert [s.type for s in definitions] == ["t", "t"]
    phys_o, cluster_o = _build(
        tree, "arch/x86/kernel/apic/x2apic_phys.o", "arch/x86/kernel/apic/x2apic_cluster.o"
    )
    phys = verify_function(pre_function(phys_o, name), symbols, vmlinux)
    cluster = verify_function(pre_function(cluster_o, name), symbols, vmlinux)
    for match in (phys, cluster):
        assert match.sympos in (1, 2)
        assert definitions[match.sympos - 1].address == match.address
    # The Makefile links x2apic_phys.o before x2apic_cluster.o.
    assert (phys.sympos, cluster.sympos) == (1, 2)
    # And the bytes' own evidence: only the cluster flavour reads the logical APIC ids.
    assert "x86_cpu_to_logical_apicid" in _names(cluster)
    assert "x86_cpu_to_apicid" in _names(phys)


def _names(match: Match) -> set[str]:
    return {s.name for s in match.references.values()}


def test_identical_copies_are_ambiguous(
    tree: PreparedTree, symbols: SymbolMap, vmlinux: Vmlinux
) -> None:
    """Both x2apic drivers carry the same out-of-line copy of a header's static inline."""
    name = "native_apic_msr_read"
    copies = symbols.vmlinux_symbols_named(name)
    assert len(copies) == 2
    (obj,) = _build(tree, "arch/x86/kernel/apic/x2apic_phys.o")
    fn = pre_function(obj, name)
    # Each copy alone matches the pre-patch code: the refusal is for ambiguity, not mismatch.
    for copy in copies:
        others = [s for s in symbols.symbols if s not in copies or s == copy]
        assert verify_function(fn, SymbolMap(others), vmlinux).address == copy.address
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(fn, symbols, vmlinux)
    assert name in e.value.message
    assert all(f"{copy.address:#x}" in e.value.message for copy in copies)
