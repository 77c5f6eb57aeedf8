"""The patch an update is made from, as ksplice-create takes it: a file (--patch), the files
beside their new versions in the tree (--diffext), or a commit of a git checkout (--git).

A patch is bytes from end to end: a mailed patch need not be UTF-8 (a Latin-1 name), and what
reaches `patch` and the update's tarball is what was given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import CommandError, InternalError, KspliceError
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


@dataclass(frozen=True)
class PatchInput:
    """Where the patch comes from: one of --patch FILE, --diffext EXT and --git COMMIT, or the
    patch itself (the demo's and the tests' way)."""

    file: Path | None = None
    diffext: str | None = None
    git_commit: str | None = None
    data: bytes | None = None

    def given(self) -> list[object]:
        return [x for x in (self.file, self.diffext, self.git_commit, self.data) if x is not None]


def read_patch(tree: Path, given: PatchInput) -> bytes:
    """The patch's bytes; --diffext and --git read them from the (unpacked) kernel tree."""
    if given.data is not None:
        return given.data
    if given.file is not None:
        return read_patch_file(given.file)
    if given.diffext is not None:
        return diffext_patch(tree, given.diffext)
    if given.git_commit is not None:
        return git_patch(tree, given.git_commit)
    raise InternalError("no patch given")


def file_changes(patch: bytes, strip: int) -> list[FileChange]:
    """The files a unified diff adds, deletes or changes, after stripping `strip` leading
    components; a path that is not plainly inside the tree is refused."""
    changes: dict[str, FileChange] = {}
    # Read as text: a byte that is not UTF-8 becomes a lone surrogate, which no plain path has.
    for m in _FILE_PAIR.finditer(patch.decode("utf-8", errors="surrogateescape")):
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


def patch_paths(patch: bytes, strip: int) -> list[str]:
    """The files a unified diff leaves in the tree (changed or added)."""
    return [c.path for c in file_changes(patch, strip) if not c.deleted]


def git_patch(repo: Path, commit: str) -> bytes:
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
        return run(["git", "-C", repo, "show", "--format=", "--no-color", sha, "--"]).stdout
    except CommandError as e:
        raise KspliceError(
            f"cannot read commit {commit!r} from {repo}: {e.message}",
            hint="--git needs KERNEL_SOURCE to be a git checkout that contains the commit",
        ) from e


def diffext_patch(source: Path, ext: str) -> bytes:
    """ksplice-create's --diffext: every FILE<EXT> in the tree is the new version of FILE."""
    # Glob characters would make rglob match every file: an extension is plain text.
    if not re.fullmatch(r"[A-Za-z0-9._+~-]+", ext) or not ext.strip("."):
        raise KspliceError(f"--diffext {ext!r} is not a file name extension", hint="e.g. .new")
    chunks: list[bytes] = []
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
        chunks.append(proc.stdout)
    if not chunks:
        raise KspliceError(f"no file ending in {ext!r} under {source}", hint="check --diffext")
    return b"".join(chunks)


def read_patch_file(path: Path) -> bytes:
    """A patch file, its bytes as they are."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise KspliceError(f"cannot read the patch {path}: {e.strerror}") from e
