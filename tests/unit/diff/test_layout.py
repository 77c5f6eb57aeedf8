"""Struct layouts read from the debug info of objects gcc builds here (diff.layout): a layout
that changes through a constant the struct uses is found and blamed on its declaring header."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.compile.kbuild import DEBUG_SOURCE_DIR
from ksplice_pkg.diff.layout import LayoutError, check_layouts, layout_changes
from ksplice_pkg.upload.reasons import Reason, reason_of

pytestmark = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("pahole")), reason="needs gcc and pahole"
)

HEADER = """\
enum { CACHE_A = 20, CACHE_B, MAX_CACHE };
struct cache { int entries[MAX_CACHE]; long hits; };
struct other { int n; };
"""
UNIT = """\
#include "inc/dev.h"
long hits(struct cache *c, struct other *o) { return c->hits + o->n; }
"""


def _object(tmp_path: Path, name: str, header: str, unit: str = UNIT) -> Path:
    tree = tmp_path / name
    (tree / "inc").mkdir(parents=True)
    (tree / "inc" / "dev.h").write_text(header)
    (tree / "unit.c").write_text(unit)
    subprocess.run(
        ["gcc", "-g", "-O2", "-c", f"-fdebug-prefix-map={tree}={DEBUG_SOURCE_DIR}",
         "-o", "unit.o", "unit.c"],
        cwd=tree, check=True,
    )  # fmt: skip
    return tree / "unit.o"


def test_an_enum_constant_sizing_an_array_changes_the_layout(tmp_path: Path) -> None:
    pre = _object(tmp_path, "pre", HEADER)
    post = _object(tmp_path, "post", HEADER.replace("CACHE_A = 20, ", "CACHE_A = 20, CACHE_X, "))
    changes = layout_changes(pre, post)
    assert [(c.type, c.file) for c in changes] == [("struct cache", "inc/dev.h")]
    with pytest.raises(LayoutError) as refused:
        check_layouts("unit.o", pre, post)
    assert reason_of(refused.value) is Reason.LAYOUT
    assert "struct cache (inc/dev.h)" in refused.value.message


def test_names_alone_and_new_types_are_no_layout_change(tmp_path: Path) -> None:
    pre = _object(tmp_path, "pre", HEADER)
    renamed = HEADER.replace("long hits;", "long hit_count;").replace("c->hits", "c->hit_count")
    unit = UNIT.replace("c->hits", "c->hit_count")
    post = _object(tmp_path, "post", renamed + "struct added { char c; };\n", unit)
    assert layout_changes(pre, post) == []
    check_layouts("unit.o", pre, pre)
