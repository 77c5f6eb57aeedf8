"""A new global one unit of the update adds and another calls (module.shared): the caller's
reference stays an undefined global that the module's own link resolves to the definer's part,
where the new function is global under its name; code that could run without the definer's
module loaded is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.diff.unit import UnitChange, diff_objects
from ksplice_pkg.elf.model import SHN_UNDEF, STB_GLOBAL, STT_FUNC, ElfObject, Symbol
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.module.extract import ExternalRef
from ksplice_pkg.module.parts import write_part
from ksplice_pkg.module.resolve import make_resolver
from ksplice_pkg.module.shared import NO_SHARED, SharedNew, shared_new
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap
from tests.unit.tools import build, tool

# fbmem.c gains fb_set_var_from_user (and a static helper); fbsysfs.c starts calling it.
DEFINER_PRE = "int fb_set_var(int v) { return v + 1; }\n"
DEFINER_POST = """
static int __attribute__((noinline)) clamp_var(int v) { return v > 9 ? 9 : v; }
int __attribute__((noinline)) fb_set_var_from_user(int v) { return clamp_var(v) * 2; }
int fb_set_var(int v) { return fb_set_var_from_user(v) + 1; }
"""
CALLER_PRE = "extern int fb_set_var(int v);\nint store_var(int v) { return fb_set_var(v); }\n"
CALLER_POST = (
    "extern int fb_set_var_from_user(int v);\n"
    "int store_var(int v) { return fb_set_var_from_user(v); }\n"
)

EXPORTS = {"__fentry__"}
SYMBOLS = SymbolMap([KernelSymbol(0xFFFFFFFF81001000, "T", "fb_set_var", None)])


def _change(tmp_path: Path, unit: str, pre: str, post: str, module: str | None) -> UnitChange:
    where = tmp_path / unit
    a, b = build(where, "pre", pre), build(where, "post", post)
    return UnitChange(diff_objects(f"{unit}.o", a, b), a, b, module)


def _undefined(name: str) -> Symbol:
    return Symbol(name, 0, 0, STT_FUNC, STB_GLOBAL, SHN_UNDEF)


def no_evidence(name: str) -> KernelSymbol | None:
    return None


def test_a_new_global_of_one_unit_is_called_from_another_in_the_one_module(
    tmp_path: Path,
) -> None:
    definer = _change(tmp_path, "fbmem", DEFINER_PRE, DEFINER_POST, None)
    caller = _change(tmp_path, "fbsysfs", CALLER_PRE, CALLER_POST, None)
    shared = shared_new([definer, caller])
    # Only the global is shared: the static helper stays the definer's own.
    assert shared.owners == {"fb_set_var_from_user": None}

    # Without the update's own definitions, the target lacks the name: the old refusal.
    alone = make_resolver(EXPORTS, SYMBOLS, no_evidence, "fbsysfs.o", {})
    with pytest.raises(KspliceError, match="does not have"):
        alone(caller.post, _undefined("fb_set_var_from_user"))
    resolve = make_resolver(EXPORTS, SYMBOLS, no_evidence, "fbsysfs.o", {}, shared)
    ref = resolve(caller.post, _undefined("fb_set_var_from_user"))
    assert ref == ExternalRef("fb_set_var_from_user", exported=True)

    parts = tmp_path / "parts"
    definer_resolver = make_resolver(EXPORTS, SYMBOLS, no_evidence, "fbmem.o", {}, shared)
    first = write_part(definer, definer_resolver, 0, {}, {}, parts, shared.names)
    second = write_part(caller, resolve, 1, {}, {}, parts, shared.names)
    linked = tmp_path / "linked.o"
    tool("ld", "-r", "-o", linked, first.obj, second.obj)
    obj = read_object(linked)
    named = [s for s in obj.symbols if s.name == "fb_set_var_from_user"]
    # One symbol: defined by the definer's part, and the caller's reference resolved to it.
    assert len(named) == 1 and named[0].is_defined and not named[0].is_local
    assert not any(s.name == "clamp_var" and not s.is_local for s in obj.symbols)


def test_new_code_of_a_module_is_called_only_where_that_module_is_loaded() -> None:
    shared = SharedNew({"hid_safe_input_report": "hid", "dm_bufio_forget": "dm_bufio"})
    assert shared.reachable_from("hid_safe_input_report", "hid")
    assert shared.reachable_from("hid_safe_input_report", "uhid", {"hid"})
    assert shared.reachable_from("dm_bufio_forget", "dm_snapshot", {"dm-bufio"})
    assert not shared.reachable_from("hid_safe_input_report", "uhid", {"usbhid"})
    assert not shared.reachable_from("hid_safe_input_report", None)
    assert not NO_SHARED.reachable_from("hid_safe_input_report", "hid")
    resolve = make_resolver(EXPORTS, SYMBOLS, no_evidence, "kernel/t.o", {}, shared)
    with pytest.raises(RefusedError, match="module hid"):
        resolve(ElfObject([], []), _undefined("hid_safe_input_report"))


def test_a_name_two_units_add_is_not_shared(tmp_path: Path) -> None:
    one = _change(tmp_path, "one", DEFINER_PRE, DEFINER_POST, None)
    two = _change(tmp_path, "two", DEFINER_PRE, DEFINER_POST, "some_module")
    assert shared_new([one, two]).owners == {}
