"""The patch an update is made from, as ksplice-create takes it: a file (--patch), the files
beside their new versions in the tree (--diffext), or a commit of a git checkout (--git)."""

from __future__ import annotations

import re
from pathlib import Path

from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.run import run, run_text

_DIFF_FILE = re.compile(r"^\+\+\+ (?P<path>\S+)", re.MULTILINE)


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


def read_patch_file(path: Path) -> str:
    """A patch file as text; bytes that are not UTF-8 (a Latin-1 name in a mailed patch) survive
    the round trip to `patch` unchanged."""
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as e:
        raise KspliceError(f"cannot read the patch {path}: {e.strerror}") from e
