"""What is and is not a change (diff.compare): bytes and relocation targets compared by what
they point at, GCC's clone numbering seen through, on pre/post objects gcc builds here."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.diff.compare import base_name
from ksplice_pkg.diff.unit import diff_objects
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import functions
from ksplice_pkg.elf.reader import read_object
from tests.unit.tools import BASE, PRINTK, assert_empty, build, diff

# -O2 clones a function for constant arguments only when every caller agrees; with -fipa-cp-clone
# (on at -O3) it specialises per calling context, which is how several numbered clones appear.
# -O2 clones a function for constant arguments only when every caller agrees; with -fipa-cp-clone
# (on at -O3) it specialises per calling context, which is how several numbered clones appear.
CLONE_FLAGS = ("-fipa-cp-clone",)


def test_unchanged_source_gives_an_empty_diff(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE)
    assert_empty(d)
    assert d.empty


def test_comment_only_change_is_no_change(tmp_path: Path) -> None:
    post = BASE.replace("int scale(int x)", "/* scales x */ int scale(int x)")
    assert_empty(diff(tmp_path, BASE, post))


def test_reordering_functions_and_their_strings_is_no_change(tmp_path: Path) -> None:
    """Moving code around renumbers sections and symbols, not what the code refers to."""
    lines = BASE.splitlines(keepends=True)
    greet = next(i for i, line in enumerate(lines) if line.startswith("int greet"))
    lines[greet], lines[greet + 1] = lines[greet + 1], lines[greet]
    assert_empty(diff(tmp_path, BASE, "".join(lines)))


def test_changed_constant_changes_only_that_function(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE.replace("x + 17", "x + 18"))
    assert set(d.changed) == {"offset"}
    assert d.pre_names == {"offset": "offset"}
    assert d.new_functions == []


def test_changed_call_target_with_identical_bytes_is_a_change(tmp_path: Path) -> None:
    """Only the relocation tells the two apart: call printk vs call other."""
    pre = (
        PRINTK
        + "extern int other(const char *fmt, ...);\n"
        + 'int f(void) { return printk("x"); }\n'
    )
    post = pre.replace('return printk("x")', 'return other("x")')
    d = diff(tmp_path, pre, post)
    assert set(d.changed) == {"f"}
    # The premise: the code bytes are the same, so the verdict came from the relocations.
    assert _code_of(_side(tmp_path, "pre"), "f") == _code_of(_side(tmp_path, "post"), "f")
    assert "printk" in d.changed["f"] and "other" in d.changed["f"]


def test_changed_inlined_static_helper_changes_its_callers(tmp_path: Path) -> None:
    pre = r"""
static inline int helper(int x) { return x * 5; }
int first(int x) { return helper(x) + 1; }
int second(int x) { return helper(x) - 1; }
int bystander(int x) { return x * 5; }
"""
    post = pre.replace("return x * 5; }\nint first", "return x * 6; }\nint first")
    assert post != pre
    d = diff(tmp_path, pre, post)
    assert set(d.changed) == {"first", "second"}
    assert "helper" not in functions(read_object(tmp_path / "post" / "t.o"))  # really inlined


def test_changed_string_literal_is_a_change(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE.replace("hello %d", "hallo %d"))
    assert set(d.changed) == {"greet"}
    # Same bytes, same offset into a string section: only the string the relocation reaches
    # tells the versions apart.
    pre, post = _side(tmp_path, "pre"), _side(tmp_path, "post")
    assert _code_of(pre, "greet") == _code_of(post, "greet")
    assert "hello" in d.changed["greet"] and "hallo" in d.changed["greet"]


# ---------------------------------------------------------------------------------------------
# GCC's numbering of clones.

CLONES = (
    PRINTK
    + r"""
static int __attribute__((noinline)) bar(int arg) { return arg * arg + 7 * arg; }
int f1(void) { printk("%d\n", bar(3)); return bar(3); }
#ifdef POST
int f0(void) { printk("%d\n", bar(2)); return bar(2) + 1; }
#endif
int f2(int x) { return bar(x); }
"""
)


def _side(tmp_path: Path, side: str) -> ElfObject:
    return read_object(tmp_path / side / "t.o")


def _code_of(obj: ElfObject, name: str) -> bytes:
    fn = functions(obj)[name]
    return obj.sections[fn.section].data[fn.offset : fn.offset + fn.size]


def _clone_pair(tmp_path: Path) -> tuple[ElfObject, ElfObject]:
    pre = build(tmp_path, "pre", CLONES, CLONE_FLAGS)
    post = build(tmp_path, "post", CLONES.replace("#ifdef POST", "#if 1"), CLONE_FLAGS)
    # The situation under test: bar(3)'s clone is bar.constprop.0 before and bar.constprop.1
    # after, because the new bar(2) clone took number 0.
    assert {n for n in functions(pre) if n.startswith("bar.")} == {"bar.constprop.0"}
    assert {n for n in functions(post) if n.startswith("bar.")} == {
        "bar.constprop.0",
        "bar.constprop.1",
    }
    assert _code_of(post, "bar.constprop.1") == _code_of(pre, "bar.constprop.0")
    assert _code_of(post, "bar.constprop.0") != _code_of(pre, "bar.constprop.0")
    return pre, post


def test_clones_with_other_numbers_are_matched_by_base_name(tmp_path: Path) -> None:
    pre, post = _clone_pair(tmp_path)
    d = diff_objects("t.o", pre, post)
    assert "bar.constprop.1" not in d.new_functions
    assert "bar.constprop.1" not in d.changed
    assert "f0" in d.new_functions
    assert "f1" not in d.changed and "f2" not in d.changed


def test_a_new_clone_does_not_replace_an_old_one_of_the_same_name(tmp_path: Path) -> None:
    pre, post = _clone_pair(tmp_path)
    d = diff_objects("t.o", pre, post)
    assert "bar.constprop.0" not in d.changed
    assert "bar.constprop.0" in d.new_functions


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("count.3", "count"),
        ("count", "count"),
        ("foo.isra.0", "foo.isra"),
        ("foo.constprop.12", "foo.constprop"),
        ("foo.part.0", "foo.part"),
        ("foo.cold", "foo.cold"),
        ("__UNIQUE_ID_ddebug417", "__UNIQUE_ID_ddebug"),
        (".bss.count.1", ".bss.count"),
    ],
)
def test_base_name(name: str, base: str) -> None:
    assert base_name(name) == base
