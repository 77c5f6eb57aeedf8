"""Which objects an update compiles (build.objects.objects_for): a changed .c file's own object,
a changed header's users from the dependency records kbuild wrote in a full build."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.compile.objects import PREBUILT_STAMP, objects_for
from ksplice_pkg.errors import KspliceError


@pytest.fixture
def tree(tmp_path: Path) -> PreparedTree:
    """A source tree and an object dir where kbuild recorded, per object, the headers it read
    (`.<obj>.cmd`: `deps_<obj> := ...`, absolute paths under O=, or $(srctree)/ ones)."""
    source, objdir = tmp_path / "src", tmp_path / "obj"
    for unit, deps in {
        "fs/proc/cmdline": [f"{source}/include/linux/seq_file.h", "$(srctree)/fs/proc/internal.h"],
        "fs/proc/version": [f"{source}/include/linux/utsname.h", f"{source}/fs/proc/internal.h"],
        "kernel/sys": [f"{source}/include/linux/utsname.h"],
    }.items():
        (source / unit).parent.mkdir(parents=True, exist_ok=True)
        (source / f"{unit}.c").write_text("")
        cmd = objdir / Path(unit).parent / f".{Path(unit).name}.o.cmd"
        cmd.parent.mkdir(parents=True, exist_ok=True)
        cmd.write_text(f"cmd_{unit}.o := gcc ...\n\ndeps_{unit}.o := \\\n  " + " \\\n  ".join(deps))
    # A module's .mod.o reads headers too, but is no unit of the kernel.
    (objdir / "fs" / ".cmdline.mod.o.cmd").write_text(f"deps_x := {source}/fs/proc/internal.h\n")
    return PreparedTree(source=source, objdir=objdir, release="6.1.0-56-cloud-amd64")


def test_c_files_are_their_own_objects(tree: PreparedTree) -> None:
    assert objects_for(("fs/proc/cmdline.c", "kernel/sys.c"), tree) == [
        "fs/proc/cmdline.o",
        "kernel/sys.o",
    ]


def test_header_users_come_from_the_prebuilt_records(tree: PreparedTree) -> None:
    (tree.objdir / PREBUILT_STAMP).write_text(tree.release + "\n")
    assert objects_for(("include/linux/utsname.h",), tree) == ["fs/proc/version.o", "kernel/sys.o"]
    assert objects_for(("fs/proc/internal.h",), tree) == ["fs/proc/cmdline.o", "fs/proc/version.o"]
    # A unit named by the patch and by a header's users is compiled once.
    assert objects_for(("kernel/sys.c", "include/linux/utsname.h"), tree) == [
        "kernel/sys.o",
        "fs/proc/version.o",
    ]


def test_header_without_a_prebuild_is_refused(tree: PreparedTree) -> None:
    with pytest.raises(KspliceError) as e:
        objects_for(("include/linux/utsname.h",), tree)
    assert "include/linux/utsname.h" in e.value.message
    assert e.value.hint is not None and "--prebuild" in e.value.hint


def test_header_nothing_uses_is_refused(tree: PreparedTree) -> None:
    (tree.objdir / PREBUILT_STAMP).write_text(tree.release + "\n")
    with pytest.raises(KspliceError, match=r"include/linux/unused\.h"):
        objects_for(("include/linux/unused.h",), tree)


@pytest.mark.parametrize("path", ["Makefile", "Documentation/index.rst", "arch/x86/entry.S"])
def test_what_is_not_c_is_refused(tree: PreparedTree, path: str) -> None:
    with pytest.raises(KspliceError, match=path.replace(".", r"\.")):
        objects_for(("fs/proc/cmdline.c", path), tree)
