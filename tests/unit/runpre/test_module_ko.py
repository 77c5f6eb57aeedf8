"""Run-pre against a module's .ko and module sympos, on objects gcc builds here from C.

The "pre object" is compiled as create compiles it (one section per function, KERNEL_CFLAGS);
the ".ko" is the same source compiled as a distro module is, without -ffunction-sections, so
calls between its functions are resolved by the assembler inside one .text: the shapes
ModuleBinary must compare and read evidence from.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, RefusedError, RunPreMismatchError
from ksplice_pkg.runpre.evidence import ModuleEvidence, pre_function
from ksplice_pkg.runpre.module import ModuleBinary, module_ko
from tests.unit.tools import KERNEL_CFLAGS

SOURCE = """
extern int printk(const char *fmt, ...);
static int counter;
int shared_total;

static __attribute__((noinline)) int helper(int x)
{
    counter += x;
    return counter * 3;
}

int entry(int x)
{
    shared_total += helper(x);
    printk("entry %d\\n", x);
    return shared_total;
}
"""


def _compile(tmp_path: Path, name: str, source: str, sections: bool, extra: list[str]) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    flags = [f for f in KERNEL_CFLAGS if sections or "sections" not in f]
    out = tmp_path / f"{name}.o"
    subprocess.run(["gcc", "-c", *flags, *extra, "-o", out, src], check=True, capture_output=True)
    return out


def _ko(tmp_path: Path, source: str = SOURCE, extra: tuple[str, ...] = ()) -> ModuleBinary:
    return ModuleBinary("mymod", _compile(tmp_path, "ko", source, False, list(extra)))


def _pre(tmp_path: Path, source: str = SOURCE) -> ModuleEvidence:
    ko = _ko(tmp_path)
    pre = read_object(_compile(tmp_path, "pre", source, True, []))
    return ModuleEvidence("mymod/t.o", pre, ko)


def test_pre_code_matches_the_ko_and_evidence_names_module_symbols(tmp_path: Path) -> None:
    evidence = _pre(tmp_path)
    match = evidence.verify("entry")
    assert match.sympos == 0
    ko = evidence.ko
    seen = {
        ko.obj.symbols[match.references[r.offset]].name
        for r in pre_function(evidence.pre, "entry").relocs
        if r.offset in match.references
    }
    assert {"helper", "shared_total", "printk"} <= seen, seen
    # The call to helper is resolved inside the .ko's .text (no relocation there): its
    # displacement still names helper. shared_total and printk come from the .ko's relocations.
    for name in ("helper", "shared_total", "printk"):
        index = evidence.lookup(name)
        assert index is not None, name
        assert ko.obj.symbols[index].name == name
    printk = evidence.lookup("printk")
    assert printk is not None and ko.obj.symbols[printk].shndx == 0  # undefined: external
    # counter is referenced only by helper: found by verifying helper on demand.
    counter = evidence.lookup("counter")
    assert counter is not None and ko.obj.symbols[counter].name == "counter"


def test_changed_code_is_a_mismatch_naming_module_and_function(tmp_path: Path) -> None:
    ko = _ko(tmp_path, SOURCE.replace("counter * 3", "counter * 5"))
    pre = read_object(_compile(tmp_path, "pre", SOURCE, True, []))
    with pytest.raises(RunPreMismatchError) as e:
        ko.verify(pre_function(pre, "helper"))
    assert "mymod" in e.value.message and "helper" in e.value.message


def test_function_missing_from_the_ko_is_a_mismatch(tmp_path: Path) -> None:
    ko = _ko(tmp_path, SOURCE.replace("int entry(", "int other_entry("))
    pre = read_object(_compile(tmp_path, "pre", SOURCE, True, []))
    with pytest.raises(RunPreMismatchError) as e:
        ko.verify(pre_function(pre, "entry"))
    assert "mymod" in e.value.message and "entry" in e.value.message


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
    ko = _compile(tmp_path, "ko", DUPLICATES, False, [])
    subprocess.run(["objcopy", "--redefine-sym", "dup2=dup", ko], check=True, capture_output=True)
    return ModuleBinary("mymod", ko)


def test_sympos_counts_the_module_symbols_in_symtab_order(tmp_path: Path) -> None:
    source = """
static __attribute__((noinline)) int dup(int x) { return x + 1; }
static __attribute__((noinline)) int dup2(int x) { return x + 2; }
int use(int x) { return dup(x) + dup2(x); }
"""
    ko_path = _compile(tmp_path, "ko", source, False, [])
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
