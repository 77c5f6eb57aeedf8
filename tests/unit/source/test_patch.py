"""The ways create takes a patch (source.patch): --patch, --diffext, --git, and the files a patch
names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.source.patch import diffext_patch, git_patch, patch_paths, read_patch_file
from ksplice_pkg.source.tree import make_post_tree
from tests.unit.tools import small_tree


def test_diffext_patch_applies_to_give_the_new_files(tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "src")
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
    tree = small_tree(tmp_path / "src")
    with pytest.raises(KspliceError) as e:
        diffext_patch(tree, ".new")
    assert "'.new'" in e.value.message and str(tree) in e.value.message


@pytest.mark.parametrize("ext", ["", "x/.new"])
def test_diffext_that_is_not_an_extension_is_refused(tmp_path: Path, ext: str) -> None:
    with pytest.raises(KspliceError) as e:
        diffext_patch(small_tree(tmp_path / "src"), ext)
    assert repr(ext) in e.value.message


def test_git_patch_is_the_commits_diff(tmp_path: Path) -> None:
    repo = small_tree(tmp_path / "repo")

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
    assert b"+\treturn 3;" in patch
    # git's own failure becomes the user's error, naming the commit: not a CommandError.
    with pytest.raises(KspliceError, match=r"\bnope\b") as e:
        git_patch(repo, "nope")
    assert type(e.value) is KspliceError


def test_patch_file_bytes_survive(tmp_path: Path) -> None:
    """A Latin-1 name in a mailed patch is not UTF-8; its bytes are kept as they are."""
    raw = b"--- a/kernel/b.c\n+++ b/kernel/b.c\n@@ -1 +1 @@\n-M\xfcller\n+Mueller\n"
    path = tmp_path / "fix.patch"
    path.write_bytes(raw)
    assert read_patch_file(path) == raw
    with pytest.raises(KspliceError, match=re.escape(str(tmp_path / "missing.patch"))):
        read_patch_file(tmp_path / "missing.patch")


# ---------------------------------------------------------------------------------------------
# patch_paths

GIT_PATCH = b"""\
diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 1234567..89abcde 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+\tseq_puts(m, "ksplice: ");
 \tseq_puts(m, saved_command_line);
diff --git a/include/linux/new.h b/include/linux/new.h
new file mode 100644
--- /dev/null
+++ b/include/linux/new.h
@@ -0,0 +1 @@
+#define NEW 1
diff --git a/kernel/gone.c b/kernel/gone.c
deleted file mode 100644
--- a/kernel/gone.c
+++ /dev/null
@@ -1 +0,0 @@
-int gone;
"""


def test_patch_paths_strips_components_and_skips_deleted_files() -> None:
    assert patch_paths(GIT_PATCH, 1) == ["fs/proc/cmdline.c", "include/linux/new.h"]
    assert patch_paths(GIT_PATCH, 0) == ["b/fs/proc/cmdline.c", "b/include/linux/new.h"]
    assert patch_paths(GIT_PATCH, 2) == ["proc/cmdline.c", "linux/new.h"]


def test_patch_paths_of_diff_u_output_with_timestamps() -> None:
    patch = (
        b"--- linux.orig/mm/slab.c\t2024-01-01 10:00:00.000000000 +0000\n"
        b"+++ linux/mm/slab.c\t2024-01-02 10:00:00.000000000 +0000\n"
        b"@@ -1 +1 @@\n-a\n+b\n"
        b"--- linux.orig/mm/slab.c\t2024-01-01 10:00:00.000000000 +0000\n"
        b"+++ linux/mm/slab.c\t2024-01-02 10:00:00.000000000 +0000\n"
        b"@@ -9 +9 @@\n-c\n+d\n"
    )
    assert patch_paths(patch, 1) == ["mm/slab.c"]  # once, though named twice
    assert patch_paths(b"not a patch\n", 1) == []
