"""The differ's entry point (diff.unit): each post function new, changed or the same, and what
a livepatch cannot do with __init code, refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.errors import RefusedError
from tests.unit.tools import BASE, diff


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
