"""The generated klp_patch (module.link.main_source), compiled by gcc against a stub of the
kernel headers it uses and read back with GNU readelf and objcopy: every replacement is a
klp_func with its old name, new code and sympos, and the module is marked a livepatch. Linking
with kbuild (link_module, link_update) needs a kernel tree: the lab tests cover it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ksplice_pkg.module.extract import PatchedFunction
from ksplice_pkg.module.link import ObjectPatch, main_source
from tests.unit.tools import compile_c, readelf_relocations, section_bytes

# Only what main_source uses, shaped as in include/linux/livepatch.h and module.h (the field
# order of the structs here is the stub's own; the generated code uses designated initialisers).
STUB_HEADERS = {
    "linux/kernel.h": """
#define NULL ((void *)0)
#define __init __attribute__((section(".init.text")))
#define __exit __attribute__((section(".exit.text")))
""",
    "linux/module.h": """
struct module;
extern struct module __this_module;
#define THIS_MODULE (&__this_module)
#define module_init(fn) int init_module(void) __attribute__((alias(#fn)));
#define module_exit(fn) void cleanup_module(void) __attribute__((alias(#fn)));
#define MODULE_INFO(tag, info) static const char __modinfo_##tag[] \\
	__attribute__((section(".modinfo"), used, aligned(1))) = #tag "=" info
#define MODULE_LICENSE(l) MODULE_INFO(license, l)
#define MODULE_DESCRIPTION(d) MODULE_INFO(description, d)
""",
    "linux/livepatch.h": """
struct klp_func { const char *old_name; void *new_func; unsigned long old_sympos; };
struct klp_object { const char *name; struct klp_func *funcs; };
struct klp_patch { struct module *mod; struct klp_object *objs; };
int klp_enable_patch(struct klp_patch *patch);
""",
}

FUNCS = [
    (PatchedFunction("cmdline_proc_show", "__ksplice_u0_0"), 0),
    (PatchedFunction("c_start", "__ksplice_u1_0"), 3),
]
DESCRIPTION = 'Fix "cmdline" \\ output'


@pytest.fixture
def main_object(tmp_path: Path) -> Path:
    for name, text in STUB_HEADERS.items():
        (tmp_path / "include" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "include" / name).write_text(text)
    source = main_source("ksplice_abc", DESCRIPTION, [ObjectPatch(None, FUNCS)])
    return compile_c(tmp_path, source, "main", ("-Wall", "-Werror", "-Iinclude"))


def _pointers(obj: Path, section: str) -> dict[int, tuple[str, int]]:
    """offset -> (symbol, addend) of each 64-bit pointer readelf lists in a section."""
    return {
        r.offset: (r.symbol_name, r.addend)
        for r in readelf_relocations(obj)
        if r.section == f".rela{section}" and r.type_name == "R_X86_64_64"
    }


def test_klp_funcs_name_old_and_new_code(main_object: Path) -> None:
    data = section_bytes(main_object, ".data.funcs_0")
    entry = 24  # old_name, new_func, old_sympos
    assert len(data) == entry * (len(FUNCS) + 1)  # and the terminating empty entry
    pointers = _pointers(main_object, ".data.funcs_0")
    strings = section_bytes(main_object, ".rodata.str1.1")
    for i, (fn, sympos) in enumerate(FUNCS):
        string_section, offset = pointers[i * entry]
        assert string_section == ".rodata.str1.1"
        assert strings[offset:].split(b"\0")[0] == fn.old_name.encode()
        assert pointers[i * entry + 8] == (fn.new_symbol, 0)
        (old_sympos,) = struct.unpack_from("<Q", data, i * entry + 16)
        assert old_sympos == sympos
    assert data[-entry:] == bytes(entry)
    assert len(pointers) == 2 * len(FUNCS)


def test_one_vmlinux_object_and_the_patch(main_object: Path) -> None:
    objs = section_bytes(main_object, ".data.objs")
    assert objs == bytes(32)  # name NULL (vmlinux), funcs relocated; then the empty entry
    assert _pointers(main_object, ".data.objs") == {8: (".data.funcs_0", 0)}
    assert _pointers(main_object, ".data.patch") == {
        0: ("__this_module", 0),
        8: (".data.objs", 0),
    }
    # klp_enable_patch is called from the module's init.
    calls = {
        r.symbol_name for r in readelf_relocations(main_object) if r.section == ".rela.init.text"
    }
    assert "klp_enable_patch" in calls


def test_module_is_marked_a_livepatch(main_object: Path) -> None:
    info = section_bytes(main_object, ".modinfo").split(b"\0")
    assert b"livepatch=Y" in info
    assert b"license=GPL" in info
    # The description survives C string quoting exactly.
    assert f"description={DESCRIPTION}".encode() in info


def test_multi_line_description_survives(tmp_path: Path) -> None:
    description = "Fix /proc/cmdline\n\nThe prefix was missing."
    for name, text in STUB_HEADERS.items():
        (tmp_path / "include" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "include" / name).write_text(text)
    source = main_source("ksplice_abc", description, [ObjectPatch(None, FUNCS)])
    obj = compile_c(tmp_path, source, "main", ("-Wall", "-Werror", "-Iinclude"))
    info = section_bytes(obj, ".modinfo").split(b"\0")
    assert f"description={description}".encode() in info
