"""Stable line numbers in the patched source: #line directives after each changed region."""

from __future__ import annotations

import re
from pathlib import Path

from ksplice_pkg.run import run

_CONDITIONAL_END = re.compile(r"^\s*#\s*(?:else|elif|endif)\b")


_HUNK = re.compile(r"^@@ -(?P<old>\d+)(?:,(?P<oldn>\d+))? \+(?P<new>\d+)(?:,(?P<newn>\d+))? @@")


def stabilise_line_numbers(pristine_file: Path, post_file: Path, display_name: str) -> None:
    """Insert #line directives so unchanged code keeps its pre-patch line numbers.

    __LINE__ feeds WARN, BUG, might_sleep and printk call sites; a patch that adds or removes
    lines would otherwise change every function below it. After each changed region, a #line
    directive resets the count to where the pristine file is, so only really changed code differs.
    """
    diff = run(
        ["diff", "-U0", pristine_file, post_file],
        check=False,
    ).stdout.decode(errors="replace")
    post_lines = post_file.read_text(errors="surrogateescape").splitlines(keepends=True)
    inserts: dict[int, int] = {}  # post line index (0-based) before which to insert -> pre line
    # (first post line after a hunk, first changed post line, lines added minus removed)
    shifts: list[tuple[int, int, int]] = []
    for line in diff.splitlines():
        m = _HUNK.match(line)
        if not m:
            continue
        old, oldn = int(m["old"]), int(m["oldn"] if m["oldn"] is not None else 1)
        new, newn = int(m["new"]), int(m["newn"] if m["newn"] is not None else 1)
        if oldn == newn:
            continue
        # The first unchanged line after the hunk: post line new+newn (1-based, adjusted for
        # pure insertions where new is the line before) corresponds to pre line old+oldn.
        next_post = new + newn if newn else new + 1
        next_pre = old + oldn if oldn else old + 1
        shifts.append((next_post, new if newn else next_post, newn - oldn))
        index = _safe_insert_point(post_lines, next_post - 1)
        if index is not None:
            inserts[index] = next_pre + (index - (next_post - 1))
    # A hunk inside a block the config compiles out leaves its directive unseen by the
    # preprocessor: resynchronise again after every #else/#elif/#endif that follows a shift.
    in_comment = False
    for i, text in enumerate(post_lines[:-1]):
        directive = not in_comment and _CONDITIONAL_END.match(text)
        in_comment = _comment_state_after(text, in_comment)
        following = i + 2  # 1-based number of the line after the directive
        delta = sum(d for after, _, d in shifts if after <= following)
        changed = any(first <= following < after for after, first, _ in shifts)
        if directive and delta and not changed and i + 1 not in inserts:
            inserts[i + 1] = following - delta
    if not inserts:
        return
    out: list[str] = []
    for i, text in enumerate(post_lines):
        if i in inserts:
            out.append(f'#line {inserts[i]} "{display_name}"\n')
        out.append(text)
    post_file.unlink()  # a hard link to the pristine file must never be written through
    post_file.write_text("".join(out), errors="surrogateescape")


def _safe_insert_point(lines: list[str], start: int) -> int | None:
    """The first line index >= start where a directive can go: outside comments, strings and
    continued lines. None when there is none nearby (the numbers then simply stay shifted)."""
    in_comment = False
    for i, text in enumerate(lines):
        # Track /* */ comment state up to the candidate line.
        if i >= start and not in_comment and (i == 0 or not lines[i - 1].rstrip().endswith("\\")):
            return i
        if i >= start + 50:
            return None
        in_comment = _comment_state_after(text, in_comment)
    return None


def _comment_state_after(text: str, in_comment: bool) -> bool:
    i = 0
    in_string: str | None = None
    while i < len(text):
        two = text[i : i + 2]
        ch = text[i]
        if in_comment:
            if two == "*/":
                in_comment = False
                i += 2
                continue
        elif in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == in_string:
                in_string = None
        elif two == "/*":
            in_comment = True
            i += 2
            continue
        elif two == "//":
            break
        elif ch in "\"'":
            in_string = ch
        i += 1
    return in_comment
