"""Changed code without an ftrace entry (diff.callers): patched through its callers when it is
file-local, refused when it is global."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.diff.callers import patch_through_callers
from ksplice_pkg.elf.query import functions, has_ftrace_entry
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import RefusedError
from tests.unit.tools import diff

NOTRACE = """
#define notrace __attribute__((noinline, no_instrument_function))
{scope} notrace int body(int x) {{ return x * {factor} + 1; }}
int f1(int x) {{ return body(x) + 1; }}
int f2(int x) {{ return body(x) - 1; }}
int f3(int x) {{ return x; }}
"""


def test_changed_notrace_static_is_carried_and_its_callers_patched(tmp_path: Path) -> None:
    pre_src, post_src = (NOTRACE.format(scope="static", factor=f) for f in (3, 5))
    d = diff(tmp_path, pre_src, post_src)
    assert set(d.changed) == {"body"}
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    assert not has_ftrace_entry(pre, functions(pre)["body"])
    assert has_ftrace_entry(pre, functions(pre)["f1"])
    patch_through_callers("t.o", pre, post, d)
    assert set(d.changed) == {"f1", "f2"}
    assert d.new_functions == ["body"]
    assert all("body" in why for why in d.changed.values())


def test_changed_notrace_global_is_refused(tmp_path: Path) -> None:
    pre_src, post_src = (NOTRACE.format(scope="", factor=f) for f in (3, 5))
    d = diff(tmp_path, pre_src, post_src)
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    with pytest.raises(RefusedError, match=r"\bbody\b"):
        patch_through_callers("t.o", pre, post, d)


# Two notrace statics that call each other (kernel/trace is built without ftrace entries: its
# expression parser recurses), reached from a traced global.
RECURSIVE = """
#define notrace __attribute__((noinline, no_instrument_function))
static notrace int odd(int x);
static notrace int even(int x) {{ return x <= 0 ? {factor} : odd(x - 1); }}
static notrace int odd(int x) {{ return x <= 0 ? 0 : even(x - 1); }}
int parity(int x) {{ return even(x); }}
"""


def test_notrace_statics_calling_each_other_are_carried_once_each(tmp_path: Path) -> None:
    pre_src, post_src = (RECURSIVE.format(factor=f) for f in (1, 7))
    d = diff(tmp_path, pre_src, post_src)
    assert "even" in d.changed
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    patch_through_callers("t.o", pre, post, d)  # returned: before, it handed them back for ever
    assert sorted(d.new_functions) == ["even", "odd"]
    assert set(d.changed) == {"parity"}
