"""What the target binary says each pre-object symbol is (runpre.evidence), on the kernel in
miniature: the static a unit references is the one its own code was linked against."""

from __future__ import annotations

import pytest

from ksplice_pkg.elf.query import functions
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import InternalError
from ksplice_pkg.runpre.evidence import Evidence, pre_function
from ksplice_pkg.target.symbols import SymbolMap
from tests.unit.runpre.conftest import Kernel
from tests.unit.tools import readelf_relocations


def evidence(kernel: Kernel, unit: str, with_binary: bool = True) -> Evidence:
    vmlinux = Vmlinux.open(kernel.vmlinux) if with_binary else None
    return Evidence(
        unit, read_object(kernel.unit(unit)), SymbolMap.load(kernel.system_map), vmlinux
    )


@pytest.mark.parametrize(("unit", "position"), [("a", 0), ("b", 1)])
def test_lookup_finds_the_units_own_static(kernel: Kernel, unit: str, position: int) -> None:
    """Nothing was verified yet: lookup verifies a function that references counter."""
    found = evidence(kernel, unit).lookup("counter")
    assert found is not None and found.address == kernel.addresses("counter")[position]
    found = evidence(kernel, unit).lookup("show_stat")
    assert found is not None and found.address == kernel.addresses("show_stat")[position]


def test_without_a_binary_there_is_no_evidence(kernel: Kernel) -> None:
    e = evidence(kernel, "a", with_binary=False)
    assert e.lookup("counter") is None
    with pytest.raises(InternalError, match=r"\bshow_stat\b"):
        e.verify("show_stat")


def test_pre_function_is_the_objects_code_and_relocations(kernel: Kernel) -> None:
    obj = read_object(kernel.unit("a"))
    fn = pre_function(obj, "a_entry")
    f = functions(obj)["a_entry"]
    assert fn.code == obj.sections[f.section].data[f.offset : f.offset + f.size]
    expected = [
        (r.offset - f.offset, r.type)
        for r in readelf_relocations(kernel.unit("a"))
        if r.section == ".rela.text.a_entry"
    ]
    assert [(r.offset, r.type) for r in fn.relocs] == expected
    # Section-relative references are named: the string is not a symbol, show_stat is.
    assert {r.symbol for r in fn.relocs} == {"__fentry__", "printk", "show_stat", ""}
