"""The post-patch source tree: a hard-link copy of the pristine tree with the patch applied.

Hard links make the copy cost almost nothing, and GNU patch writes each file it changes anew
(it renames a temporary over the original), so the pristine tree's files are never touched.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.run import run, run_text

_DIFF_FILE = re.compile(r"^\+\+\+ (?P<path>\S+)", re.MULTILINE)
_CONDITIONAL_END = re.compile(r"^\s*#\s*(?:else|elif|endif)\b")
_HUNK = re.compile(r"^@@ -(?P<old>\d+)(?:,(?P<oldn>\d+))? \+(?P<new>\d+)(?:,(?P<newn>\d+))? @@")


@dataclass(frozen=True)
class PatchedTree:
    pristine: Path
    post: Path
    changed: tuple[str, ...]  # paths relative to the tree, as the patch names them


def patch_paths(patch: str, strip: int) -> list[str]:
    """The files a unified diff changes, after stripping `strip` leading components."""
    paths: list[str] = []
    for m in _DIFF_FILE.finditer(patch):
        path = m["path"]
        if path == "/dev/null":
            continue
        parts = path.split("/")[strip:]
        if parts and "/".join(parts) not in paths:
            paths.append("/".join(parts))
    return paths


def make_post_tree(pristine: Path, post: Path, patch: str, patch_opt: str) -> PatchedTree:
    """Hard-link pristine into post (fresh) and apply patch there; refuse what fails to apply."""
    m = re.fullmatch(r"-p(\d+)", patch_opt.strip())
    if not m:
        raise KspliceError(f"--patch-opt {patch_opt!r} is not supported", hint="use -pN, e.g. -p1")
    strip = int(m[1])
    changed = patch_paths(patch, strip)
    if not changed:
        raise KspliceError(
            "the patch changes no file", hint="give a unified diff (diff -u, git diff)"
        )
    if post.exists():
        shutil.rmtree(post)
    post.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-al", pristine, post])
    try:
        run(
            ["patch", f"-p{strip}", "--forward", "--batch", "--no-backup-if-mismatch", "-s"],
            cwd=post,
            input=patch.encode(),
        )
    except CommandError as e:
        shutil.rmtree(post, ignore_errors=True)
        raise KspliceError(
            f"the patch does not apply to {pristine}:\n{e.message}",
            hint="check that it was made against this kernel's source and that "
            "--patch-opt is right",
        ) from e
    for path in changed:
        target = post / path
        if target.exists() and target.stat().st_nlink > 1 and (pristine / path).exists():
            # A hard link still shared with the pristine tree means patch edited in place.
            raise KspliceError(f"internal error: patching {path} modified the pristine tree")
    return PatchedTree(pristine=pristine, post=post, changed=tuple(changed))


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


def git_patch(repo: Path, commit: str) -> str:
    """The diff a commit introduces, as --git COMMIT takes it (ksplice-create's --git)."""
    try:
        return run_text(["git", "-C", str(repo), "show", "--format=", "--no-color", commit])
    except CommandError as e:
        raise KspliceError(
            f"cannot read commit {commit!r} from {repo}: {e.message}",
            hint="--git needs KERNEL_SOURCE to be a git checkout that contains the commit",
        ) from e


def diffext_patch(source: Path, ext: str) -> str:
    """ksplice-create's --diffext: every FILE<EXT> in the tree is the new version of FILE."""
    if not ext or "/" in ext:
        raise KspliceError(f"--diffext {ext!r} is not a file name extension", hint="e.g. .new")
    chunks: list[str] = []
    for new in sorted(source.rglob(f"*{ext}")):
        old = new.with_name(new.name[: -len(ext)])
        rel = old.relative_to(source)
        proc = run(
            [
                "diff",
                "-u",
                "--label",
                f"a/{rel}",
                "--label",
                f"b/{rel}",
                old if old.exists() else "/dev/null",
                new,
            ],
            check=False,
        )
        if proc.returncode > 1:
            raise KspliceError(f"diff of {old} and {new} failed: {proc.stderr.decode().strip()}")
        chunks.append(proc.stdout.decode(errors="surrogateescape"))
    if not chunks:
        raise KspliceError(f"no file ending in {ext!r} under {source}", hint="check --diffext")
    return "".join(chunks)
