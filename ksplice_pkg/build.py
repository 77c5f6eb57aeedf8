"""Compiling the pre and post objects that the differ compares.

Both sides are compiled by the target tree's own kbuild with the distro config and compiler, plus
-ffunction-sections -fdata-sections so that every function and variable lands in a section of
its own: that is what makes object code comparable function by function.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.kbuild import PreparedTree
from ksplice_pkg.log import logger
from ksplice_pkg.run import run

SECTION_FLAGS = "-ffunction-sections -fdata-sections"


@dataclass(frozen=True)
class ObjectPair:
    unit: str  # e.g. fs/proc/cmdline.o
    pre: Path
    post: Path


def objects_for(changed: tuple[str, ...], tree: PreparedTree) -> list[str]:
    """The kbuild objects to compile for the changed files: .c files directly, headers through
    the dependency lists kbuild recorded (.*.o.cmd) in a previous full build (--prebuild)."""
    units: list[str] = []
    headers: list[str] = []
    for path in changed:
        if path.endswith(".c"):
            units.append(path[:-2] + ".o")
        elif path.endswith(".h"):
            headers.append(path)
        else:
            raise KspliceError(
                f"the patch changes {path}, which ksplice-pkg cannot turn into object code",
                hint="updates can change .c files and headers that .c files include",
            )
    if headers:
        users = _header_users(tree, headers)
        if not users:
            raise KspliceError(
                f"no built object depends on {', '.join(headers)}",
                hint="run `ksplice-pkg create --prebuild` once so the build records its "
                "header dependencies",
            )
        units += [u for u in users if u not in units]
    return units


def _header_users(tree: PreparedTree, headers: list[str]) -> list[str]:
    wanted = {h for h in headers} | {h.removeprefix("include/") for h in headers}
    users: list[str] = []
    for cmd in tree.objdir.rglob(".*.o.cmd"):
        text = cmd.read_text(errors="replace")
        if not text.startswith("cmd_") or "deps_" not in text:
            continue
        deps = set(re.findall(r"\$\(srctree\)/(\S+\.h)|\s(\S+\.h)\s", text))
        names = {a or b for a, b in deps}
        if names & wanted:
            rel = cmd.relative_to(tree.objdir)
            obj = str(rel.parent / rel.name[1:].removesuffix(".cmd"))
            if not obj.endswith(".mod.o") and (tree.source / obj).with_suffix(".c").exists():
                users.append(obj)
    return sorted(users)


def compile_objects(source: Path, objdir: Path, release: str, units: list[str], jobs: int) -> None:
    run(
        [
            "make",
            "-C",
            source,
            f"O={objdir}",
            f"-j{jobs}",
            f"KERNELRELEASE={release}",
            f"KCFLAGS={SECTION_FLAGS}",
            *units,
        ]
    )


def clone_objdir(pre: PreparedTree, post_source: Path, post_objdir: Path) -> None:
    """A prepared object dir for the post tree: a copy of the pre one (timestamps kept, so kbuild
    sees it up to date), its Makefile pointing at the post source."""
    if post_objdir.exists():
        shutil.rmtree(post_objdir)
    run(["cp", "-a", pre.objdir, post_objdir])
    logger.debug("post object dir %s", post_objdir)


def build_pairs(
    pre: PreparedTree, post_source: Path, post_objdir: Path, units: list[str], jobs: int
) -> list[ObjectPair]:
    compile_objects(pre.source, pre.objdir, pre.release, units, jobs)
    compile_objects(post_source, post_objdir, pre.release, units, jobs)
    pairs = []
    for unit in units:
        a, b = pre.objdir / unit, post_objdir / unit
        if not a.is_file() or not b.is_file():
            raise KspliceError(
                f"{unit} was not built: is its source file compiled into this kernel's config?",
                hint="an update can only change code the target kernel's config builds",
            )
        pairs.append(ObjectPair(unit=unit, pre=a, post=b))
    return pairs
