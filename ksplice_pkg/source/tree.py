"""The post-patch source tree: a hard-link copy of the pristine tree with the patch applied.

Hard links make the copy cost almost nothing, and GNU patch writes each file it changes anew
(it renames a temporary over the original), so the pristine tree's files are never touched.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ksplice_pkg.errors import CommandError, InternalError, KspliceError, RefusedError
from ksplice_pkg.run import run
from ksplice_pkg.source.lines import stabilise_line_numbers
from ksplice_pkg.source.patch import file_changes, patch_paths


@dataclass(frozen=True)
class PatchedTree:
    pristine: Path
    post: Path
    changed: tuple[str, ...]  # paths relative to the tree, as the patch names them


HOOKS_HEADER = resources.files("ksplice_pkg") / "include" / "ksplice" / "hooks.h"


def strip_count(patch_opt: str) -> int:
    """N of --patch-opt -pN: the only option of patch(1) that create passes on."""
    m = re.fullmatch(r"-p(\d+)", patch_opt.strip())
    if not m:
        raise KspliceError(f"--patch-opt {patch_opt!r} is not supported", hint="use -pN, e.g. -p1")
    return int(m[1])


def make_post_tree(pristine: Path, post: Path, patch: bytes, patch_opt: str) -> PatchedTree:
    """Hard-link pristine into post (fresh) and apply patch there; refuse what fails to apply."""
    strip = strip_count(patch_opt)
    files = file_changes(patch, strip)
    for c in files:
        # A new or removed unit would need the kernel's Makefiles, and the running kernel's
        # code for it to load or unload: neither is something a livepatch can carry.
        if c.path.endswith((".c", ".S")) and (c.added or c.deleted):
            raise RefusedError(
                f"the patch {'adds' if c.added else 'deletes'} {c.path}: a livepatch can change "
                "existing compilation units, not add or remove them",
                hint="move the new code into an existing .c file the patch changes",
            )
        if c.path.endswith(".h") and c.deleted:
            raise RefusedError(
                f"the patch deletes the header {c.path}",
                hint="leave the header in place; a livepatch can change the code that uses it",
            )
    # A header the patch adds can only be included by files it changes: no other user to find.
    changed = [c.path for c in files if not c.deleted and not (c.added and c.path.endswith(".h"))]
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
            input=patch,
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
            raise InternalError(f"patching {path} modified the pristine tree")
    return PatchedTree(pristine=pristine, post=post, changed=tuple(changed))


def patched_tree(
    pristine: Path, post: Path, patch: bytes, patch_opt: str, earlier: Sequence[bytes] = ()
) -> PatchedTree:
    """The post tree of an update: the patch applied to a hard-link copy, with #line directives
    so that code the patch only moved keeps its line numbers.

    `earlier` are the patches of the updates a --series update is built on: applied first, and
    numbered against the pristine tree too, so that both sides of the new update's diff count
    lines as the running kernel does. `changed` then lists only what `patch` itself changes.
    """
    tree = make_post_tree(pristine, post, b"".join([*earlier, patch]), patch_opt)
    # <ksplice/hooks.h>, for patches that declare callbacks or use shadow variables: a new
    # file of the post tree only (the pristine side never includes it).
    hooks_h = post / "include" / "ksplice" / "hooks.h"
    hooks_h.parent.mkdir(parents=True, exist_ok=True)
    hooks_h.write_bytes(HOOKS_HEADER.read_bytes())
    for path in tree.changed:
        if path.endswith((".c", ".h")) and (pristine / path).is_file():
            stabilise_line_numbers(pristine / path, post / path, path)
    if earlier:
        own = set(patch_paths(patch, strip_count(patch_opt)))
        tree = replace(tree, changed=tuple(p for p in tree.changed if p in own))
    return tree
