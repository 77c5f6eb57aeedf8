"""The differ's entry point (diff.unit): each post function new, changed or the same, what a
livepatch cannot do with __init code refused, and diff_pairs over every unit of an update."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.compile.objects import ObjectPair
from ksplice_pkg.diff.unit import diff_pairs
from ksplice_pkg.elf.query import functions
from ksplice_pkg.errors import RefusedError
from tests.unit.tools import BASE, build, diff


def test_new_function_is_listed_as_new(tmp_path: Path) -> None:
    post = BASE + "int added(int x) { return x ^ 0x55; }\n"
    d = diff(tmp_path, BASE, post)
    assert d.new_functions == ["added"]
    assert d.changed == {}
    assert not d.empty


# ---------------------------------------------------------------------------------------------
# __init code.

INIT = '__attribute__((section(".init.text"))) '


def test_changed_init_function_is_refused(tmp_path: Path) -> None:
    pre = INIT + "int setup(int x) { return x * 3; }\nint runtime(int x) { return x; }\n"
    with pytest.raises(RefusedError, match=r"\bsetup\b"):
        diff(tmp_path, pre, pre.replace("x * 3", "x * 4"))


def test_new_init_function_is_refused(tmp_path: Path) -> None:
    pre = "int runtime(int x) { return x; }\n"
    with pytest.raises(RefusedError, match=r"\bsetup\b"):
        diff(tmp_path, pre, pre + INIT + "int setup(int x) { return x * 3; }\n")


def test_function_leaving_init_text_is_carried(tmp_path: Path) -> None:
    """The running kernel freed its __init copy after boot: the update carries the function as
    new code, and the caller that now calls it is what gets patched."""
    pre = (
        INIT
        + "__attribute__((noinline)) int parse(int x) { return x * 7 + 1; }\n"
        + "int use(int x) { return x + 1; }\n"
    )
    post = (
        "__attribute__((noinline)) int parse(int x) { return x * 7 + 1; }\n"
        "int use(int x) { return parse(x) + 1; }\n"
    )
    d = diff(tmp_path, pre, post)
    assert set(d.changed) == {"use"}
    assert d.new_functions == ["parse"]


# ---------------------------------------------------------------------------------------------
# diff_pairs: every compiled pair of the update.


def _pair(tmp_path: Path, unit: str, pre: str, post: str) -> ObjectPair:
    root = tmp_path / unit
    build(root, "pre", pre)
    build(root, "post", post)
    return ObjectPair(unit, root / "pre" / "t.o", root / "post" / "t.o")


def test_diff_pairs_keeps_the_units_that_change(tmp_path: Path) -> None:
    same = _pair(tmp_path, "same", BASE, BASE)
    changed = _pair(tmp_path, "changed", BASE, BASE.replace("x + 17", "x + 18"))
    (change,) = diff_pairs([same, changed])
    assert change.unit == "changed"
    assert set(change.diff.changed) == {"offset"}
    assert "offset" in functions(change.post) and "offset" in functions(change.pre)


def test_diff_pairs_patches_notrace_statics_through_their_callers(tmp_path: Path) -> None:
    pre = "static __attribute__((noinline, no_instrument_function)) int body(int x)"
    pre += " { return x * 3; }\nint caller(int x) { return body(x) + 1; }\n"
    (change,) = diff_pairs([_pair(tmp_path, "u", pre, pre.replace("x * 3", "x * 5"))])
    assert (set(change.diff.changed), change.diff.new_functions) == ({"caller"}, ["body"])


def test_patch_that_changes_no_code_is_refused(tmp_path: Path) -> None:
    comment = BASE.replace("int scale(int x)", "/* scales x */ int scale(int x)")
    with pytest.raises(RefusedError):
        diff_pairs([_pair(tmp_path, "a", BASE, comment), _pair(tmp_path, "b", BASE, BASE)])
