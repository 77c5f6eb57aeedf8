"""The two trees compared, and the "after" text of any subset of the hunks, checked against
GNU diff and patch themselves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ksplice_pkg.upload.changes import Change, compare_trees, hunks_of

OLD = "".join(f"line {i}\n" for i in range(1, 61)).encode()
NEW = (
    OLD.replace(b"line 5\n", b"line five\n")
    .replace(b"line 30\n", b"line 30\nline 30a\n")
    .replace(b"line 55\n", b"")
)


def _diff_headers(tmp_path: Path, old: bytes, new: bytes) -> list[str]:
    (tmp_path / "a").write_bytes(old)
    (tmp_path / "b").write_bytes(new)
    out = subprocess.run(
        ["diff", "-u", "a", "b"], cwd=tmp_path, capture_output=True, check=False
    ).stdout
    return [ln for ln in out.decode().splitlines() if ln.startswith("@@")]


def test_hunks_are_those_of_diff_u(tmp_path: Path) -> None:
    hunks = hunks_of(OLD, NEW)
    assert [h.header for h in hunks] == _diff_headers(tmp_path, OLD, NEW)
    assert len(hunks) == 3


def test_any_subset_of_hunks_applies_as_patch_would(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root, data in ((old, OLD), (new, NEW)):
        (root / "fs").mkdir(parents=True)
        (root / "fs" / "a.c").write_bytes(data)
    (change,) = compare_trees(old, new)
    assert change.text({0, 1, 2}) == NEW
    assert change.text(set()) == OLD
    for subset in ({0}, {1}, {2}, {0, 2}):
        work = tmp_path / f"w{sorted(subset)}"
        (work / "fs").mkdir(parents=True)
        (work / "fs" / "a.c").write_bytes(OLD)
        subprocess.run(["patch", "-p1", "-s"], cwd=work, input=change.unified(subset), check=True)
        assert (work / "fs" / "a.c").read_bytes() == change.text(subset), subset
        # The hunks left out are exactly what still differs from NEW.
        rest = _diff_headers(tmp_path, change.text(subset), NEW)
        assert len(rest) == 3 - len(subset)


def test_trees_compare_by_content_links_and_presence(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "d").mkdir(parents=True)
        (root / "same.c").write_text("x\n")
        (root / "d" / "same.h").write_text("y\n")
    (old / "mod.c").write_text("a\n")
    (new / "mod.c").write_text("b\n")  # same size, other bytes
    (old / "gone.h").write_text("g\n")
    (new / "d" / "new.c").write_text("n\n")
    os.symlink("same.c", old / "link")
    os.symlink("mod.c", new / "link")
    (old / "blob").write_bytes(b"\0\1")
    (new / "blob").write_bytes(b"\0\2")
    os.link(old / "same.c", tmp_path / "hard")  # a hard link shared by both trees
    (new / "same.c").unlink()
    os.link(tmp_path / "hard", new / "same.c")
    found = {c.path: c for c in compare_trees(old, new)}
    assert set(found) == {"mod.c", "gone.h", "d/new.c", "link", "blob"}
    assert found["mod.c"].change is Change.MODIFIED and len(found["mod.c"].hunks) == 1
    assert found["gone.h"].change is Change.REMOVED and found["gone.h"].new is None
    assert found["d/new.c"].change is Change.ADDED and found["d/new.c"].old is None
    assert found["link"].old is None and found["link"].hunks == ()
    assert found["blob"].hunks == ()  # binary: no hunks to take apart


def test_known_paths_give_the_same_comparison_without_the_walk(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root, data in ((old, OLD), (new, NEW)):
        (root / "fs").mkdir(parents=True)
        (root / "fs" / "a.c").write_bytes(data)
        (root / "same.c").write_text("s\n")
    (new / "added.h").write_text("n\n")
    full = compare_trees(old, new)
    assert compare_trees(old, new, [c.path for c in full]) == full
    assert [c.path for c in full] == ["added.h", "fs/a.c"]
