"""Compiling the pre and post objects that the differ compares.

Both sides are compiled by the target tree's own kbuild with the distro config and compiler, plus
-ffunction-sections -fdata-sections so that every function and variable lands in a section of
its own: that is what makes object code comparable function by function.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ksplice_pkg.compile.headers import header_users
from ksplice_pkg.compile.kbuild import PreparedTree, check_make_path, debug_prefix_flags
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.log import logger, step
from ksplice_pkg.run import run, terminate_children
from ksplice_pkg.source.tree import PatchedTree

SECTION_FLAGS = "-ffunction-sections -fdata-sections"
# Written in the pre object dir once a --prebuild finished: kbuild's .cmd files then list the
# headers of every object of vmlinux.
PREBUILT_STAMP = ".ksplice-prebuilt"


@dataclass(frozen=True)
class ObjectPair:
    unit: str  # e.g. fs/proc/cmdline.o
    pre: Path
    post: Path
    module: str | None = None  # the loadable module kbuild links the unit into; None: vmlinux


def objects_for(
    changed: tuple[str, ...],
    tree: PreparedTree,
    find_users: Callable[[list[str]], list[str]] | None = None,
) -> list[str]:
    """The kbuild objects to compile for the changed files: .c files directly; headers through
    the dependency lists kbuild recorded (.*.o.cmd) in a previous full build (--prebuild), or
    else through find_users (build/headers.py: no full build needed)."""
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
        if (tree.objdir / PREBUILT_STAMP).is_file():
            users = _header_users(tree, headers)
        elif find_users is not None:
            users = find_users(headers)
        else:
            raise KspliceError(
                f"the patch changes {', '.join(headers)}: finding every object that includes it "
                "needs the dependency records of a full build",
                hint="run `ksplice-pkg create --prebuild KERNEL_SOURCE` (same --config) once",
            )
        if not users:
            raise RefusedError(
                f"no unit of vmlinux is changed by what the patch changes in {', '.join(headers)}",
                hint="nothing to update: is the changed code used by this configuration?",
            )
        units += [u for u in users if u not in units]
    return units


def _header_users(tree: PreparedTree, headers: list[str]) -> list[str]:
    wanted = set(headers)
    users: list[str] = []
    for cmd in tree.objdir.rglob(".*.o.cmd"):
        if _included(cmd, tree.source) & wanted:
            rel = cmd.relative_to(tree.objdir)
            obj = str(rel.parent / rel.name[1:].removesuffix(".cmd"))
            if not obj.endswith(".mod.o") and (tree.source / obj).with_suffix(".c").exists():
                users.append(obj)
    return sorted(users)


def headers_read(objdir: Path, source: Path, unit: str) -> set[str]:
    """The headers (relative to source) the compiler read for `unit`, from kbuild's record of
    its last compile in objdir; empty when there is none."""
    cmd = objdir / os.path.dirname(unit) / f".{os.path.basename(unit)}.cmd"
    return _included(cmd, source) if cmd.is_file() else set()


def _included(cmd: Path, source: Path) -> set[str]:
    text = cmd.read_text(errors="replace")
    if "deps_" not in text:
        return set()
    # kbuild lists each header a unit includes, by absolute path when building with O=.
    prefix = f"{source}/"
    return {
        token.removeprefix(prefix).removeprefix("$(srctree)/")
        for token in re.findall(r"\S+\.h\b", text.split("deps_", 1)[1])
    }


def compile_command(source: Path, objdir: Path, release: str, jobs: int) -> list[str]:
    """make of units of `source` into `objdir` the way both sides of an update are compiled
    (function and data sections, location-independent debug info); the units follow."""
    return [
        "make",
        "-C",
        str(source),
        f"O={objdir}",
        f"-j{jobs}",
        f"KERNELRELEASE={release}",
        f"KCFLAGS={SECTION_FLAGS} {debug_prefix_flags(source, objdir)}",
    ]


def compile_objects(source: Path, objdir: Path, release: str, units: list[str], jobs: int) -> None:
    check_make_path(objdir, "the object directory (under the cache)")
    run([*compile_command(source, objdir, release, jobs), *units])


def clone_objdir(pre: PreparedTree, post_objdir: Path, units: list[str]) -> None:
    """A prepared object dir for the post tree, kept across updates.

    It starts as a copy of the pre one; the first build from the post tree's path then rebuilds
    kbuild's host tools once (their recorded commands name the source path), later updates reuse
    them. The units an update compiles are deleted first: an object left by an earlier update's
    patch could otherwise look up to date against the pristine file's older timestamp.
    """
    stamp = post_objdir / ".ksplice-cloned-from"
    wanted = (pre.objdir / ".ksplice-prepared").read_text()
    if not stamp.is_file() or stamp.read_text() != wanted:
        if post_objdir.exists():
            shutil.rmtree(post_objdir)
        run(["cp", "-a", pre.objdir, post_objdir])
        stamp.write_text(wanted)
        logger.debug("post object dir %s cloned from %s", post_objdir, pre.objdir)
    for unit in units:
        obj = post_objdir / unit
        for stale in (obj, obj.with_name(f".{obj.name}.cmd"), obj.with_name(f".{obj.name}.d")):
            stale.unlink(missing_ok=True)


def build_pairs(
    pre: PreparedTree, post_source: Path, post_objdir: Path, units: list[str], jobs: int
) -> list[ObjectPair]:
    # The two sides are independent: each make spends seconds in kbuild's own checks, so running
    # them side by side roughly halves the wall time of a small update.
    with ThreadPoolExecutor(max_workers=2) as pool:
        sides = [
            pool.submit(compile_objects, pre.source, pre.objdir, pre.release, units, jobs),
            pool.submit(compile_objects, post_source, post_objdir, pre.release, units, jobs),
        ]
        try:
            for side in sides:
                side.result()
        except BaseException:
            # ^C or one side failing: the pool would otherwise wait for the other make.
            terminate_children()
            raise
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


def compile_pairs(
    tree: PreparedTree, post: PatchedTree, post_objdir: Path, jobs: int
) -> list[ObjectPair]:
    """Compile the objects the patch affects, from the pristine and from the patched tree."""
    # The post object dir is needed (for preprocessing) before the header users are known.
    clone_objdir(tree, post_objdir, [])

    def find_users(headers: list[str]) -> list[str]:
        # Units whose init code alone changes too: the diff refuses them by name (or, with
        # --runtime-only, lists them), as for a change in the unit's own file.
        return list(header_users(tree, post.post, post_objdir, headers, jobs))

    units = objects_for(post.changed, tree, find_users)
    clone_objdir(tree, post_objdir, units)
    with step(f"compiling {len(units)} object(s) before and after: {', '.join(units)}"):
        pairs = build_pairs(tree, post.post, post_objdir, units, jobs)
    # Each unit's klp object: vmlinux, or the module kbuild compiled it for.
    return [replace(p, module=module_of(tree.objdir, p.unit)) for p in pairs]


_MODNAME = re.compile(r"-DKBUILD_MODNAME='\"(?P<name>[^\"]+)\"'")


def module_of(objdir: Path, unit: str) -> str | None:
    """The loadable module a compiled unit belongs to, from kbuild's own record of the command
    (.<unit>.cmd): kbuild compiles module code with -DMODULE and names the module in
    KBUILD_MODNAME; built-in code has no -DMODULE."""
    obj = objdir / unit
    cmd = obj.with_name(f".{obj.name}.cmd")
    try:
        first = cmd.read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        return None
    if " -DMODULE " not in f"{first} ":
        return None
    m = _MODNAME.search(first)
    return m["name"] if m else obj.stem


def derived_tree(
    tree: PreparedTree, source: Path, objdir: Path, units: Sequence[str]
) -> PreparedTree:
    """`tree`'s preparation for another source tree (a --series base): the object dir is cloned
    as the post side's is, and the units about to be compiled are cleared in it."""
    clone_objdir(tree, objdir, list(units))
    return PreparedTree(source=source, objdir=objdir, release=tree.release)
