"""The ways create takes a patch: --patch, --diffext, --git; and its refusals of bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.source.patch import diffext_patch, git_patch, patch_paths
from ksplice_pkg.source.tree import make_post_tree


def _tree(root: Path) -> Path:
    (root / "fs" / "proc").mkdir(parents=True)
    (root / "fs" / "proc" / "a.c").write_text("int a(void)\n{\n\treturn 1;\n}\n")
    (root / "kernel").mkdir()
    (root / "kernel" / "b.c").write_text("int b(void)\n{\n\treturn 2;\n}\n")
    return root


def test_diffext_patch_applies_to_give_the_new_files(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    (tree / "fs" / "proc" / "a.c.new").write_text("int a(void)\n{\n\treturn 10;\n}\n")
    (tree / "kernel" / "b.c.new").write_text("int b(void)\n{\n\treturn 20;\n}\n")
    patch = diffext_patch(tree, ".new")
    assert patch_paths(patch, 1) == ["fs/proc/a.c", "kernel/b.c"]
    pristine = tmp_path / "pristine"
    shutil.copytree(tree, pristine, ignore=shutil.ignore_patterns("*.new"))
    post = make_post_tree(pristine, tmp_path / "post", patch, "-p1")
    assert (post.post / "fs/proc/a.c").read_text() == (tree / "fs/proc/a.c.new").read_text()
    assert (post.post / "kernel/b.c").read_text() == (tree / "kernel/b.c.new").read_text()
    # The pristine tree is untouched.
    assert "return 1;" in (pristine / "fs/proc/a.c").read_text()


def test_diffext_without_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KspliceError, match=r"no file ending in '\.new'"):
        diffext_patch(_tree(tmp_path / "src"), ".new")


def test_git_patch_is_the_commits_diff(tmp_path: Path) -> None:
    repo = _tree(tmp_path / "repo")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "base")
    (repo / "kernel" / "b.c").write_text("int b(void)\n{\n\treturn 3;\n}\n")
    git("commit", "-qam", "fix b")
    patch = git_patch(repo, "HEAD")
    assert patch_paths(patch, 1) == ["kernel/b.c"]
    assert "+\treturn 3;" in patch
    with pytest.raises(KspliceError, match="cannot read commit 'nope'"):
        git_patch(repo, "nope")


def test_patch_that_does_not_apply_leaves_nothing(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src")
    bad = (
        "--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -1,3 +1,3 @@\n"
        " int b(void)\n {\n-\treturn 7;\n+\treturn 8;\n"
    )
    with pytest.raises(KspliceError, match="the patch does not apply"):
        make_post_tree(tree, tmp_path / "post", bad, "-p1")
    assert not (tmp_path / "post").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --patch, --diffext, --git or --prebuild"),
        (["--diffext", ".new", "--git", "HEAD"], "give exactly one of"),
        (["--prebuild", "--id", "Bad-Id"], "--id 'Bad-Id': use 1 to 32 characters"),
        (["--prebuild"], "not found"),
    ],
)
def test_create_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    tree = _tree(tmp_path / "src")
    result = CliRunner().invoke(main, ["create", *args, str(tree)])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == [tree]
