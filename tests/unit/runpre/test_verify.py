"""Run-pre (runpre.verify) on a kernel in miniature that ld links here: the pre-patch object's
function, relocation sites masked, is found in the linked image, among same-named functions by
its bytes; its sympos and what its relocations reach are read from the image, as `nm -n` lists
the symbols."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import RunPreMismatchError
from ksplice_pkg.runpre.evidence import pre_function
from ksplice_pkg.runpre.verify import PreFunction, verify_function
from ksplice_pkg.target.symbols import SymbolMap
from tests.unit.runpre.conftest import Kernel
from tests.unit.tools import shifted_map

SHIFT = 0x2C800000


def pre(kernel: Kernel, unit: str, name: str) -> PreFunction:
    return pre_function(read_object(kernel.unit(unit)), name)


@pytest.mark.parametrize(("unit", "position"), [("a", 1), ("b", 2)])
def test_same_named_statics_are_told_apart_by_their_code(
    kernel: Kernel, unit: str, position: int
) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    match = verify_function(pre(kernel, unit, "show_stat"), symbols, Vmlinux.open(kernel.vmlinux))
    # Linked in command-line order: a's copy first.
    assert match.address == kernel.addresses("show_stat")[position - 1]
    assert match.sympos == position
    # The bytes at the relocation sites say which counter this copy uses: its unit's own.
    counters = {s.address for s in match.references.values() if s.name == "counter"}
    assert counters == {kernel.addresses("counter")[position - 1]}
    assert "__fentry__" in {s.name for s in match.references.values()}


def test_kaslr_shifted_map(kernel: Kernel, tmp_path: Path) -> None:
    symbols = SymbolMap.load(shifted_map(kernel.system_map, SHIFT, tmp_path / "kallsyms"))
    match = verify_function(pre(kernel, "b", "show_stat"), symbols, Vmlinux.open(kernel.vmlinux))
    assert (match.address, match.sympos) == (kernel.addresses("show_stat")[1] + SHIFT, 2)


def test_unique_function_has_sympos_0(kernel: Kernel) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    match = verify_function(pre(kernel, "a", "a_entry"), symbols, Vmlinux.open(kernel.vmlinux))
    (address,) = kernel.addresses("a_entry")
    assert (match.address, match.sympos) == (address, 0)
    # a_entry calls a's show_stat: the first one, as the linked call says.
    assert kernel.addresses("show_stat")[0] in {s.address for s in match.references.values()}


def test_changed_code_is_a_mismatch(kernel: Kernel) -> None:
    fn = pre(kernel, "a", "show_stat")
    masked = {r.offset + i for r in fn.relocs for i in range(4)}
    offset = next(o for o in range(len(fn.code)) if o not in masked and fn.code[o] != 0x90)
    code = bytearray(fn.code)
    code[offset] ^= 0xFF
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(
            dataclasses.replace(fn, code=bytes(code)),
            SymbolMap.load(kernel.system_map),
            Vmlinux.open(kernel.vmlinux),
        )
    assert "show_stat" in e.value.message and f"+{offset:#x}" in e.value.message


def test_relocation_sites_are_masked(kernel: Kernel) -> None:
    """The object holds zeros where the image holds linked values: those bytes never count."""
    fn = pre(kernel, "a", "show_stat")
    code = bytearray(fn.code)
    for r in fn.relocs:
        code[r.offset : r.offset + 4] = b"\xaa" * 4
    match = verify_function(
        dataclasses.replace(fn, code=bytes(code)),
        SymbolMap.load(kernel.system_map),
        Vmlinux.open(kernel.vmlinux),
    )
    assert match.sympos == 1


def test_reference_to_another_symbol_is_a_mismatch(kernel: Kernel) -> None:
    """Same bytes, but the object claims a_entry calls printk where the image calls show_stat."""
    fn = pre(kernel, "a", "a_entry")
    (call,) = [r for r in fn.relocs if r.symbol == "show_stat"]
    relocs = tuple(dataclasses.replace(r, symbol="printk") if r == call else r for r in fn.relocs)
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(
            dataclasses.replace(fn, relocs=relocs),
            SymbolMap.load(kernel.system_map),
            Vmlinux.open(kernel.vmlinux),
        )
    assert "a_entry" in e.value.message and "printk" in e.value.message


def test_function_the_kernel_lacks_is_a_mismatch(kernel: Kernel) -> None:
    fn = dataclasses.replace(pre(kernel, "a", "show_stat"), name="not_in_this_kernel")
    with pytest.raises(RunPreMismatchError, match=r"\bnot_in_this_kernel\b"):
        verify_function(fn, SymbolMap.load(kernel.system_map), Vmlinux.open(kernel.vmlinux))


def test_identical_copies_are_ambiguous(kernel: Kernel) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    vmlinux = Vmlinux.open(kernel.vmlinux)
    fn = pre(kernel, "c", "twin")
    copies = symbols.vmlinux_symbols_named("twin")
    assert len(copies) == 2
    # Each copy alone matches: the refusal is for ambiguity, not for a mismatch.
    for copy in copies:
        alone = SymbolMap(s for s in symbols.symbols if s not in copies or s == copy)
        assert verify_function(fn, alone, vmlinux).address == copy.address
    with pytest.raises(RunPreMismatchError) as e:
        verify_function(fn, symbols, vmlinux)
    assert "twin" in e.value.message
    assert all(f"{copy.address:#x}" in e.value.message for copy in copies)
