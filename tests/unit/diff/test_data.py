"""Data in the differ (diff.data): new data recorded, static locals paired through the functions
that use them whatever GCC numbers them, changed initial values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.diff.compare import base_name
from ksplice_pkg.elf.model import STT_SECTION, ElfObject
from ksplice_pkg.elf.query import functions, relocations_in
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import RefusedError
from tests.unit.tools import BASE, diff


def referenced_objects(obj: ElfObject, function: str) -> set[str]:
    """The names of the data objects a function's relocations point at."""
    fn = functions(obj)[function]
    names = set()
    for r in relocations_in(obj, fn.section, fn.offset, fn.size):
        sym = obj.symbols[r.symbol]
        if sym.type == STT_SECTION:
            names |= {s.name for s in obj.symbols if s.shndx == sym.shndx and s.type != STT_SECTION}
        else:
            names.add(sym.name)
    return names


def test_new_variable_is_new_data(tmp_path: Path) -> None:
    post = BASE + "int added_limit = 3;\nint scaled(int x) { return x * added_limit; }\n"
    d = diff(tmp_path, BASE, post)
    assert d.new_data == ["added_limit"]
    assert d.new_functions == ["scaled"]
    assert d.changed == {}


# ---------------------------------------------------------------------------------------------
# GCC's numbering of static locals.

STATIC_LOCALS = """
int f1(void) { static int count; return ++count; }
int f2(void) { static int count; return ++count; }
"""


# GCC 12 numbers same-named static locals from the end of the file: a new one after the others
# renumbers them all (f2's count.0 becomes count.1, f1's count.1 becomes count.2).
NEW_STATIC_USER = "int f3(void) { static int count; return ++count; }\n"


def _static_of(obj: ElfObject, function: str) -> str:
    (name,) = {n for n in referenced_objects(obj, function) if base_name(n) == "count"}
    return name


def test_renumbered_static_locals_are_not_a_change(tmp_path: Path) -> None:
    d = diff(tmp_path, STATIC_LOCALS, STATIC_LOCALS + NEW_STATIC_USER)
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    # The test exercises renumbering: f1 and f2 reach differently named statics than before.
    assert _static_of(pre, "f1") != _static_of(post, "f1")
    assert _static_of(pre, "f2") != _static_of(post, "f2")
    assert d.changed == {}
    assert d.new_functions == ["f3"]
    # Each post static is known for the pre static it is, through the function using it.
    for fn in ("f1", "f2"):
        assert d.static_map[_static_of(post, fn)] == _static_of(pre, fn)


def test_static_local_of_a_new_function_is_new_data(tmp_path: Path) -> None:
    d = diff(tmp_path, STATIC_LOCALS, STATIC_LOCALS + NEW_STATIC_USER)
    post = read_object(tmp_path / "post" / "t.o")
    new_static = _static_of(post, "f3")
    assert new_static not in d.static_map
    assert d.new_data == [new_static]


def test_renumbered_initialised_static_locals_are_not_a_change(tmp_path: Path) -> None:
    pre = """
int f1(void) { static int count = 5; return ++count; }
int f2(void) { static int count = 7; return ++count; }
"""
    post = pre + "int f3(void) { static int count = 9; return ++count; }\n"
    d = diff(tmp_path, pre, post)
    assert d.changed == {}
    assert d.new_functions == ["f3"]


# ---------------------------------------------------------------------------------------------
# Changed data, refused.


def test_changed_initialised_data_is_refused(tmp_path: Path) -> None:
    pre = "int table[4] = {1, 2, 3, 4};\nint get(int i) { return table[i]; }\n"
    with pytest.raises(RefusedError, match=r"\btable\b"):
        diff(tmp_path, pre, pre.replace("3, 4}", "3, 5}"))


def test_changed_static_data_is_refused(tmp_path: Path) -> None:
    pre = 'static const char *names[2] = {"a", "b"};\nconst char *get(int i) { return names[i]; }\n'
    with pytest.raises(RefusedError, match=r"\bnames\b"):
        diff(tmp_path, pre, pre.replace('"b"', '"c"'))


def test_changed_size_of_zeroed_data_is_refused(tmp_path: Path) -> None:
    """Same (zero) bytes, more of them: the running kernel's variable is too small."""
    pre = "static char buf[16];\nchar *get(int i) { return &buf[i]; }\n"
    with pytest.raises(RefusedError, match=r"\bbuf\b"):
        diff(tmp_path, pre, pre.replace("buf[16]", "buf[32]"))
