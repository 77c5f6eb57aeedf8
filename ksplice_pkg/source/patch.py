"""The patch an update is made from, as ksplice-create takes it: a file (--patch), the files
beside their new versions in the tree (--diffext), or a commit of a git checkout (--git)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.run import run, run_text

# A file's header in a unified diff: `--- old` then `+++ new` (a tab and a date may follow).
_FILE_PAIR = re.compile(
    r"^--- (?P<old>[^\t\n]+?)(?:\t.*)?\n\+\+\+ (?P<new>[^\t\n]+?)(?:\t.*)?$", re.M
)
# A path inside the kernel tree. Paths reach make as targets and patch as file names: a leading
# "-" would be read as an option, "=" makes a make variable, ".." leaves the tree.
_TREE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.,+-]*)*")
DEV_NULL = "/dev/null"


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the tree, leading components stripped
    added: bool
    deleted: bool


def file_changes(patch: str, strip: int) -> list[FileChange]:
    """The files a unified diff adds, deletes or changes, after stripping `strip` leading
    components; a path that is not plainly inside the tree is refused."""
    changes: dict[str, FileChange] = {}
    for m in _FILE_PAIR.finditer(patch):
        old, new = m["old"].strip(), m["new"].strip()
        added, deleted = old == DEV_NULL, new == DEV_NULL
        if added and deleted:
            continue
        named = old if deleted else new
        path = "/".join(named.split("/")[strip:])
        if not _TREE_PATH.fullmatch(path) or ".." in path.split("/"):
            raise KspliceError(
                f"the patch names {named!r}, which is not a plain path inside the kernel tree",
                hint="check --patch-opt (-pN) and that the patch was made in the tree's root",
            )
        changes.setdefault(path, FileChange(path, added, deleted))
    return list(changes.values())


def patch_paths(patch: str, strip: int) -> list[str]:
    """The files a unified diff leaves in the tree (changed or added)."""
    return [c.path for c in file_changes(patch, strip) if not c.deleted]


def git_patch(repo: Path, commit: str) -> str:
    """The diff a commit introduces, as --git COMMIT takes it (ksplice-create's --git)."""
    try:
        # Resolved to a commit id first: the user's text never reaches `git show`, where
        # "--output=FILE" would be taken as an option. --end-of-options says the same to
        # rev-parse.
        sha = run_text(
            [
                "git",
                "-C",
                repo,
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                f"{commit}^{{commit}}",
            ]
        ).strip()
        return run(["git", "-C", repo, "show", "--format=", "--no-color", sha, "--"]).stdout.decode(
            "utf-8", errors="surrogateescape"
        )
    except CommandError as e:
        raise KspliceError(
            f"cannot read commit {commit!r} from {repo}: {e.message}",
            hint="--git needs KERNEL_SOURCE to be a git checkout that contains the commit",
        ) from e


def diffext_patch(source: Path, ext: str) -> str:
    """ksplice-create's --diffext: every FILE<EXT> in the tree is the new version of FILE."""
    # Glob characters would make rglob match every file: an extension is plain text.
    if not re.fullmatch(r"[A-Za-z0-9._+~-]+", ext) or not ext.strip("."):
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
