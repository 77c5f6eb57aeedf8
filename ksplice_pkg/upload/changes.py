"""What differs between two kernel trees, file by file and hunk by hunk.

A hunk is what `diff -u` would print as one `@@` block: changed lines with up to three lines of
context on each side, nearby changes merged. It is the finest grain at which a change is kept
or left out: finer (one changed line of a hunk) would make code nobody wrote.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

CONTEXT = 3


class Change(Enum):
    MODIFIED = "modified"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class Hunk:
    index: int  # its place in the file's diff, from 0
    old_start: int  # first line in the old file (0-based) of the replaced range
    old_end: int
    new_start: int  # and of its replacement in the new file
    new_end: int
    header: str  # @@ -a,b +c,d @@, as diff -u numbers it

    @property
    def old_lines(self) -> range:
        return range(self.old_start, self.old_end)


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the tree, "/"-separated
    change: Change
    old: bytes | None  # the file in each tree; None where it does not exist
    new: bytes | None
    hunks: tuple[Hunk, ...]  # of a text file that is in both trees; () otherwise

    def text(self, accepted: Set[int]) -> bytes:
        """The old file with the `accepted` hunks applied: the "after" side of the update."""
        if self.old is None or self.new is None:
            raise ValueError(f"{self.path} is not in both trees")
        old, new = _lines(self.old), _lines(self.new)
        out: list[bytes] = []
        at = 0
        for hunk in self.hunks:
            if hunk.index not in accepted:
                continue
            out += old[at : hunk.old_start]
            out += new[hunk.new_start : hunk.new_end]
            at = hunk.old_end
        out += old[at:]
        return b"".join(out)

    def unified(self, accepted: Set[int]) -> bytes:
        """diff -u of the old file and text(accepted), for the update's recorded patch."""
        if self.old is None:
            return b""
        after = self.text(accepted)
        lines = difflib.diff_bytes(
            difflib.unified_diff,
            _lines(self.old),
            _lines(after),
            f"a/{self.path}".encode(),
            f"b/{self.path}".encode(),
            n=CONTEXT,
        )
        return b"".join(ln if ln.endswith(b"\n") else ln + b"\n\\ No newline at end of file\n"
                        for ln in lines)  # fmt: skip


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def hunks_of(old: bytes, new: bytes) -> tuple[Hunk, ...]:
    """The hunks of diff -u, each a replaced range of old lines and its new lines."""
    a, b = _lines(old), _lines(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    found: list[Hunk] = []
    for group in matcher.get_grouped_opcodes(CONTEXT):
        changed = [op for op in group if op[0] != "equal"]
        old_start, old_end = changed[0][1], changed[-1][2]
        new_start, new_end = changed[0][3], changed[-1][4]
        # The header counts the context too, as diff -u does.
        c_a0, c_a1, c_b0, c_b1 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        header = f"@@ -{_range(c_a0, c_a1)} +{_range(c_b0, c_b1)} @@"
        found.append(Hunk(len(found), old_start, old_end, new_start, new_end, header))
    return tuple(found)


def _range(start: int, end: int) -> str:
    count = end - start
    return f"{start + 1 if count else start},{count}"


def _is_text(data: bytes) -> bool:
    return b"\0" not in data[:8192]


def compare_trees(old: Path, new: Path, known: Sequence[str] | None = None) -> list[FileChange]:
    """Every file that differs between the two trees, in path order. Symbolic links compare
    by target; a directory in one tree and a file in the other counts as a removal and an
    addition. `known`: the paths that differ, from an earlier comparison of the same trees."""
    old_files, new_files = dict(_files(old, known)), dict(_files(new, known))
    changes = []
    for path in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(path), new_files.get(path)
        if a is not None and b is not None:
            if a.size != b.size or a.link != b.link:
                pass
            elif a.link is not None or _same_content(old / path, new / path):
                continue
        old_data = _read(old / path) if a is not None and a.link is None else None
        new_data = _read(new / path) if b is not None and b.link is None else None
        if a is None:
            kind = Change.ADDED
        elif b is None:
            kind = Change.REMOVED
        else:
            kind = Change.MODIFIED
        hunks: tuple[Hunk, ...] = ()
        if old_data is not None and new_data is not None and _is_text(old_data + new_data):
            hunks = hunks_of(old_data, new_data)
        changes.append(FileChange(path, kind, old_data, new_data, hunks))
    return changes


@dataclass(frozen=True)
class _Entry:
    size: int
    link: str | None


def _files(root: Path, only: Sequence[str] | None) -> Iterator[tuple[str, _Entry]]:
    if only is not None:
        for path in only:
            known = root / path
            if known.is_symlink():
                yield path, _Entry(0, os.readlink(known))
            elif known.is_file():
                yield path, _Entry(known.stat().st_size, None)
        return
    for dirpath, dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(dirpath, d)))]:
            full = os.path.join(dirpath, name)
            path = name if rel == "." else f"{rel}/{name}"
            if os.path.islink(full):
                yield path, _Entry(0, os.readlink(full))
            else:
                yield path, _Entry(os.stat(full).st_size, None)


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _same_content(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True
