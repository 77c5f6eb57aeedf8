"""The post-patch tree (source.tree): a hard-link copy with the patch applied, the pristine tree
never touched, and patches that cannot be applied refused with nothing left behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.source.tree import make_post_tree, patched_tree
from tests.unit.tools import small_tree

B_PATCH = (
    b"--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -1,4 +1,5 @@\n"
    b" int b(void)\n {\n+\tb_calls++;\n \treturn 2;\n }\n"
)


def test_post_tree_is_patched_and_pristine_is_not(tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "src")
    post = make_post_tree(tree, tmp_path / "post", B_PATCH, "-p1")
    assert post.changed == ("kernel/b.c",)
    assert "b_calls++" in (post.post / "kernel/b.c").read_text()
    assert "b_calls" not in (tree / "kernel/b.c").read_text()
    # Unchanged files are hard links into the pristine tree, the changed one is not.
    assert (post.post / "fs/proc/a.c").stat().st_ino == (tree / "fs/proc/a.c").stat().st_ino
    assert (post.post / "kernel/b.c").stat().st_ino != (tree / "kernel/b.c").stat().st_ino


def test_patched_tree_keeps_line_numbers(tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "src")
    post = patched_tree(tree, tmp_path / "post", B_PATCH, "-p1")
    # The line after the added one is line 3 of the pristine file again.
    assert '#line 3 "kernel/b.c"\n' in (post.post / "kernel/b.c").read_text()


def test_patch_that_does_not_apply_leaves_nothing(tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "src")
    bad = (
        b"--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -1,3 +1,3 @@\n"
        b" int b(void)\n {\n-\treturn 7;\n+\treturn 8;\n"
    )
    with pytest.raises(KspliceError, match=re.escape(str(tree))):
        make_post_tree(tree, tmp_path / "post", bad, "-p1")
    assert not (tmp_path / "post").exists()


@pytest.mark.parametrize(
    ("patch", "patch_opt", "named"),
    [
        pytest.param(B_PATCH, "-R", "-R", id="patch-opt-not-pN"),
        pytest.param(b"not a patch\n", "-p1", None, id="names-no-file"),
    ],
)
def test_unusable_patch_is_refused_before_copying(
    tmp_path: Path, patch: bytes, patch_opt: str, named: str | None
) -> None:
    with pytest.raises(KspliceError) as e:
        make_post_tree(small_tree(tmp_path / "src"), tmp_path / "post", patch, patch_opt)
    if named is not None:
        assert named in e.value.message
    assert not (tmp_path / "post").exists()
