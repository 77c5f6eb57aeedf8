"""The struct and union layouts a unit was compiled against, before and after.

A livepatch replaces code, never the data the running kernel already holds: new code that
reads a member at a new offset reads the old object wrongly. A layout can change with no
struct body changing in the patch's text: an enum constant or a macro that sizes an array
member, a member's own type growing. The objects' debug info says what each side was really
compiled against; pahole (dwarves, which kernel builds with BTF need anyway) prints it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.compile.kbuild import DEBUG_SOURCE_DIR
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.log import logger
from ksplice_pkg.run import run

# pahole -I: each type is preceded by where it is declared, "/* <die> FILE:LINE */".
_DECLARED = re.compile(r"^/\* <[0-9a-f]+> (.+):\d+ \*/$")
_HEADER = re.compile(r"^(struct|union) ([A-Za-z_]\w*) \{$")
# What a member line or the summary says of the layout: "/* 8 4 */", "/* 12: 3 4 */" (a
# bitfield), "/* size: 40, cachelines: 1, members: 2 */". Member names and type spellings are
# no layout.
_OFFSETS = re.compile(r"/\*\s*(\d+(?::\s*\d+)?\s+\d+)\s*\*/")
_SUMMARY = re.compile(r"/\* size: (\d+), cachelines: \d+, members: (\d+)")


@dataclass(frozen=True)
class LayoutChange:
    type: str  # "struct mlx5_core_dev"
    file: str  # where it is declared, relative to the tree when known


class LayoutError(RefusedError):
    """A unit's change needs a struct or union layout the running kernel does not have."""

    def __init__(self, unit: str, changes: list[LayoutChange]) -> None:
        named = ", ".join(f"{c.type} ({c.file})" for c in changes[:4])
        more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
        super().__init__(
            f"{unit}: the change needs a new layout of {named}{more}",
            hint="a livepatch cannot change data structures the running kernel already holds "
            "(here through a constant or type the struct uses, or its body); use a shadow "
            "variable for new fields",
        )
        self.changes = changes


def layouts(obj: Path) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each named struct and union in obj's debug info: its layout, and its declaring file."""
    if shutil.which("pahole") is None:
        raise KspliceError(
            "pahole is needed to compare struct layouts before and after",
            hint="apt-get install dwarves (dnf install dwarves)",
        )
    proc = run(["pahole", "-I", str(obj)], timeout=600, check=False)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace")
        if "no supported type information" in said:
            # Built without debug info (a config without CONFIG_DEBUG_INFO): nothing to read.
            logger.debug("%s has no debug info: its layouts are not compared", obj)
            return {}
        raise KspliceError(f"pahole could not read {obj}: {said.strip()[-500:]}")
    text = proc.stdout.decode(errors="replace")
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    for kind, name, body, declared in _blocks(text.splitlines()):
        layout = tuple(m[1] for line in body for m in [_OFFSETS.search(line)] if m) + tuple(
            f"{m[1]}/{m[2]}" for line in body for m in [_SUMMARY.search(line)] if m
        )
        # Two types of one name in one object (private to two scopes): kept apart by layout.
        key = f"{kind} {name}"
        if key in found and found[key][0] != layout:
            key = f"{key} @{declared}"
        found[key] = (layout, declared)
    return found


def _blocks(lines: list[str]) -> Iterator[tuple[str, str, list[str], str]]:
    declared = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _DECLARED.match(line):
            declared = m[1]
        elif h := _HEADER.match(line):
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("}"):
                body.append(lines[i])
                i += 1
            yield h[1], h[2], body, declared
            declared = ""
        i += 1


def layout_changes(pre: Path, post: Path) -> list[LayoutChange]:
    """The types both objects define whose layouts differ."""
    before, after = layouts(pre), layouts(post)
    return [
        LayoutChange(key.split(" @")[0], _relative(after[key][1]))
        for key in sorted(before.keys() & after.keys())
        if before[key][0] != after[key][0]
    ]


def check_layouts(unit: str, pre: Path, post: Path) -> None:
    """Refuse (LayoutError) a unit whose two objects disagree on a layout."""
    changes = layout_changes(pre, post)
    if changes:
        raise LayoutError(unit, changes)


def _relative(path: str) -> str:
    # Objects are compiled with -fdebug-prefix-map (compile/kbuild.py): the tree's files are
    # named under DEBUG_SOURCE_DIR whatever cache they were built in.
    prefix = DEBUG_SOURCE_DIR + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path
