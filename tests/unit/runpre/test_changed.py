"""Run-pre for the functions an update replaces (runpre.changed), on the kernel in miniature:
each is found in the target and gets its sympos; what livepatch cannot redirect, or what the
target does not have as one vmlinux function, is refused by type and name."""

from __future__ import annotations

import dataclasses

import pytest

from ksplice_pkg.diff.compare import UnitDiff
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.runpre.changed import verify_changed
from ksplice_pkg.runpre.evidence import Evidence
from ksplice_pkg.target.symbols import SymbolMap
from tests.unit.runpre.conftest import Kernel


def changed(unit: str, *names: str) -> UnitDiff:
    return UnitDiff(
        unit=unit, changed=dict.fromkeys(names, "changed"), pre_names={n: n for n in names}
    )


def evidence(kernel: Kernel, unit: str, symbols: SymbolMap, binary: bool) -> Evidence:
    vmlinux = Vmlinux.open(kernel.vmlinux) if binary else None
    return Evidence(unit, read_object(kernel.unit(unit)), symbols, vmlinux)


def test_each_replaced_function_gets_its_sympos(kernel: Kernel) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    sympos = verify_changed(
        changed("b.o", "show_stat", "b_entry"), evidence(kernel, "b", symbols, True)
    )
    # show_stat's second definition (in address order, as in kallsyms) is the one b.o holds.
    assert sympos == {"show_stat": 2, "b_entry": 0}


def test_without_a_binary_a_unique_name_needs_no_proof(kernel: Kernel) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    assert verify_changed(changed("a.o", "a_entry"), evidence(kernel, "a", symbols, False)) == {}


def test_without_a_binary_same_named_functions_cannot_be_told_apart(kernel: Kernel) -> None:
    symbols = SymbolMap.load(kernel.system_map)
    with pytest.raises(KspliceError) as e:
        verify_changed(changed("a.o", "show_stat"), evidence(kernel, "a", symbols, False))
    assert "show_stat" in e.value.message and "a.o" in e.value.message
    assert e.value.hint is not None


def test_without_a_binary_a_function_the_map_lacks_is_refused(kernel: Kernel) -> None:
    full = SymbolMap.load(kernel.system_map)
    symbols = SymbolMap(s for s in full.symbols if s.name != "a_entry")
    with pytest.raises(KspliceError, match=r"\ba_entry\b"):
        verify_changed(changed("a.o", "a_entry"), evidence(kernel, "a", symbols, False))


def test_function_of_a_module_is_refused(kernel: Kernel) -> None:
    """The name is in the map, but only as a loadable module's symbol."""
    full = SymbolMap.load(kernel.system_map)
    symbols = SymbolMap(
        dataclasses.replace(s, module="virtio_blk") if s.name == "a_entry" else s
        for s in full.symbols
    )
    with pytest.raises(RefusedError) as e:
        verify_changed(changed("a.o", "a_entry"), evidence(kernel, "a", symbols, True))
    assert "a_entry" in e.value.message and "virtio_blk" in e.value.message


def test_function_without_an_ftrace_entry_is_refused(kernel: Kernel) -> None:
    """The runtime's printk is notrace: livepatch cannot redirect it."""
    symbols = SymbolMap.load(kernel.system_map)
    runtime = Evidence(
        "runtime.o",
        read_object(kernel.directory / "runtime" / "runtime.o"),
        symbols,
        Vmlinux.open(kernel.vmlinux),
    )
    with pytest.raises(RefusedError, match=r"\bprintk\b"):
        verify_changed(changed("runtime.o", "printk"), runtime)
