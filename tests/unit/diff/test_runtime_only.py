"""--runtime-only: changes to __init code and init-only data are refused by default, and left
out and listed when asked; on objects gcc builds here like kernel code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.diff.unit import diff_objects
from ksplice_pkg.errors import RefusedError
from tests.unit.tools import build

INIT = '__attribute__((__section__(".init.text"))) '
INITDATA = '__attribute__((__section__(".init.data"))) '
PRE = (
    f"static int limits[3] {INITDATA}= {{1, 2, 3}};\n"
    f"{INIT}int setup(int x) {{ return x * 3 + limits[x]; }}\n"
    "int runtime(int x) { return x + 1; }\n"
)


@pytest.mark.parametrize(
    ("post", "named"),
    [
        (PRE.replace("x * 3", "x * 4"), "setup"),
        (PRE.replace("{1, 2, 3}", "{1, 2, 4}"), "limits"),
        (PRE + f"{INIT}int more_setup(int x) {{ return x - 1; }}\n", "more_setup"),
    ],
    ids=["init-code", "init-data", "new-init-function"],
)
def test_init_changes_refused_by_default_left_out_when_asked(
    tmp_path: Path, post: str, named: str
) -> None:
    post = post.replace("x + 1", "x + 2")  # and a runtime change beside it
    pre_obj, post_obj = build(tmp_path, "pre", PRE), build(tmp_path, "post", post)
    with pytest.raises(RefusedError) as e:
        diff_objects("t.o", pre_obj, post_obj)
    assert named in e.value.message
    assert e.value.hint is not None and "--runtime-only" in e.value.hint
    d = diff_objects("t.o", pre_obj, post_obj, runtime_only=True)
    assert list(d.changed) == ["runtime"]
    assert len(d.init_changes) == 1 and named in d.init_changes[0]
    assert d.new_functions == []


def test_unchanged_init_data_is_no_change(tmp_path: Path) -> None:
    pre_obj = build(tmp_path, "pre", PRE)
    post_obj = build(tmp_path, "post", PRE.replace("x + 1", "x + 2"))
    d = diff_objects("t.o", pre_obj, post_obj)
    assert list(d.changed) == ["runtime"] and d.init_changes == []
