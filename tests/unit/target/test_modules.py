"""The target's modules (ksplice_pkg.target.modules): sympos of module symbols, and a module's
.ko found by kbuild's name in modules.order; .ko files gcc builds here from C."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError, RefusedError, RunPreMismatchError
from ksplice_pkg.target.modules import ModuleBinary, module_ko
from tests.unit.tools import compile_object

# Two file-local functions called `dup`, as two units of one module may have: the second in
# an .init section, which the kernel's core kallsyms of a live module leaves out.
DUPLICATES = """
static __attribute__((noinline)) int dup(int x) { return x + 1; }
static __attribute__((noinline, section(".init.text"))) int dup2(int x) { return x + 2; }
int use(int x) { return dup(x) + dup2(x); }
int keep(int x) { return dup(x); }
"""


def _with_duplicate(tmp_path: Path) -> ModuleBinary:
    # objcopy renames dup2 to dup: one object with two symbols of that name, as the module's
    # link of two units gives.
    ko = compile_object(tmp_path, "ko", DUPLICATES, False, [])
    subprocess.run(["objcopy", "--redefine-sym", "dup2=dup", ko], check=True, capture_output=True)
    return ModuleBinary("mymod", ko)


def test_sympos_counts_the_module_symbols_in_symtab_order(tmp_path: Path) -> None:
    source = """
static __attribute__((noinline)) int dup(int x) { return x + 1; }
static __attribute__((noinline)) int dup2(int x) { return x + 2; }
int use(int x) { return dup(x) + dup2(x); }
"""
    ko_path = compile_object(tmp_path, "ko", source, False, [])
    subprocess.run(
        ["objcopy", "--redefine-sym", "dup2=dup", ko_path], check=True, capture_output=True
    )
    ko = ModuleBinary("mymod", ko_path)
    found = ko.defined_named("dup")
    assert len(found) == 2
    # Positions follow the symbol table, 1-based, as klp_find_callback counts them.
    assert [ko.sympos(i) for i in found] == [1, 2]
    assert ko.sympos(ko.defined_named("use")[0]) == 0


def test_sympos_that_depends_on_the_load_order_is_refused(tmp_path: Path) -> None:
    ko = _with_duplicate(tmp_path)
    found = ko.defined_named("dup")
    assert len(found) == 2
    text = [i for i in found if ko.obj.sections[ko.obj.symbols[i].shndx].name == ".text"]
    # While the module loads the .init one counts, once it is live it does not: no single
    # sympos names the .text dup in both cases.
    with pytest.raises(RefusedError) as e:
        ko.sympos(text[0])
    assert "mymod" in e.value.message and "dup" in e.value.message


def test_module_ko_is_found_by_kbuild_name_in_modules_order(tmp_path: Path) -> None:
    (tmp_path / "kernel/drivers/x").mkdir(parents=True)
    ko = tmp_path / "kernel/drivers/x/my-mod.ko"
    ko.write_bytes(b"")
    (tmp_path / "modules.order").write_text("kernel/drivers/x/my-mod.ko\n")
    # kbuild names the module my_mod (KBUILD_MODNAME turns - into _).
    assert module_ko(tmp_path, "my_mod") == ko
    with pytest.raises(RunPreMismatchError) as e:
        module_ko(tmp_path, "other")
    assert "other" in e.value.message


def test_compressed_module_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "kernel/fs").mkdir(parents=True)
    (tmp_path / "kernel/fs/zmod.ko.xz").write_bytes(b"")
    (tmp_path / "modules.order").write_text("kernel/fs/zmod.ko.xz\n")
    with pytest.raises(KspliceError) as e:
        module_ko(tmp_path, "zmod")
    assert "zmod.ko.xz" in e.value.message
