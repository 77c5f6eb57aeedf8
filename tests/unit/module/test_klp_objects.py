"""Where the klp relocations of module code go, and the load-time tables refused for keys in
modules, on objects gcc builds here from C (klp symbols named with asm labels, weak and
undefined as extract leaves them for the module link)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.module.klp import convert
from ksplice_pkg.module.parts import check_module_keys
from ksplice_pkg.module.resolve import module_exports
from ksplice_pkg.target.symvers import Export
from tests.unit.tools import KERNEL_CFLAGS

# vfat's code calling fat's function, fat's code using fat's variable, and a vmlinux symbol.
SOURCE = """
extern int fat__fat_msg(int) __attribute__((weak));
extern int fat__fat_var __attribute__((weak));
extern int vmlinux__vm_var __attribute__((weak));
int vfat_mkdir(int x) { return fat__fat_msg(x) + vmlinux__vm_var; }
int fat_show(void) { return fat__fat_var; }
"""


def _object(tmp_path: Path, source: str) -> Path:
    """Compiled, then each `<object>__<name>` renamed `.klp.sym.<object>.<name>,0` (the
    assembler does not take commas in names; objcopy does)."""
    src = tmp_path / "t.c"
    src.write_text(source)
    out = tmp_path / "t.o"
    subprocess.run(["gcc", "-c", *KERNEL_CFLAGS, "-o", out, src], check=True, capture_output=True)
    renames = []
    for sym in read_object(out).symbols:
        if "__" in sym.name and not sym.name.startswith("__"):
            objname, name = sym.name.split("__", 1)
            renames += ["--redefine-sym", f"{sym.name}=.klp.sym.{objname}.{name},0"]
    subprocess.run(["objcopy", *renames, out], check=True, capture_output=True)
    return out


def _klp_sections(obj: Path) -> dict[str, set[str]]:
    o = read_object(obj)
    return {
        s.name: {o.symbols[r.symbol].name for r in s.relocations}
        for s in o.sections
        if s.name.startswith(".klp.rela.")
    }


def test_reference_to_a_dependency_stays_in_the_patched_module_section(tmp_path: Path) -> None:
    obj = _object(tmp_path, SOURCE)
    owners = {".text.vfat_mkdir": "vfat", ".text.fat_show": "fat"}
    assert convert(obj, owners, {"vfat", "fat", "vmlinux"}) == 3
    sections = _klp_sections(obj)
    # livepatch writes .klp.rela.vfat.* when vfat comes, fat (its dependency) being loaded.
    assert sections[".klp.rela.vfat.text.vfat_mkdir"] == {".klp.sym.fat.fat_msg,0"}
    # vmlinux symbols always go to vmlinux's sections: klp_resolve_symbols refuses them in a
    # module's.
    assert sections[".klp.rela.vmlinux.text.vfat_mkdir"] == {".klp.sym.vmlinux.vm_var,0"}
    assert sections[".klp.rela.fat.text.fat_show"] == {".klp.sym.fat.fat_var,0"}


def test_relocation_for_an_object_the_update_does_not_patch_is_refused(tmp_path: Path) -> None:
    obj = _object(tmp_path, SOURCE)
    # fat_show's section has no known owner and fat is not patched: never written.
    with pytest.raises(RefusedError) as e:
        convert(obj, {".text.vfat_mkdir": "vfat"}, {"vfat", "vmlinux"})
    assert "fat_var" in e.value.message and "fat" in e.value.message


JUMP_LABEL = r"""
int f(void)
{
    asm goto(".pushsection __jump_table, \"aw\"\n"
             ".long 1b - ., %l[l_yes] - .\n"
             ".quad fat__fat_key - .\n"
             ".popsection\n"
             "1: nop\n" : : : : l_yes);
    return 0;
l_yes:
    return 1;
}
"""


def test_jump_label_with_a_key_of_the_module_is_refused_naming_it(tmp_path: Path) -> None:
    obj = read_object(_object(tmp_path, JUMP_LABEL))
    with pytest.raises(RefusedError) as e:
        check_module_keys("fs/fat/inode.o", obj)
    assert "fat_key" in e.value.message and "__jump_table" in e.value.message


def test_jump_label_with_a_vmlinux_key_is_kept(tmp_path: Path) -> None:
    obj = read_object(_object(tmp_path, JUMP_LABEL.replace("fat__", "vmlinux__")))
    check_module_keys("fs/fat/inode.o", obj)


def test_module_exports_are_named_by_module_name() -> None:
    exports = [
        Export(0, "fat_getattr", "fs/fat/fat", True, ""),
        Export(0, "foo", "drivers/net/my-drv", False, ""),
        Export(0, "printk", "vmlinux", False, ""),
    ]
    assert module_exports(exports) == {"fat_getattr": "fat", "foo": "my_drv"}
