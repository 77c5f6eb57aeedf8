"""What the target builds of each changed file, from its kbuild dry run and the includes."""

from __future__ import annotations

from ksplice_pkg.compile.headers import IncludeIndex, KernelBuild
from ksplice_pkg.upload.changes import Change, FileChange
from ksplice_pkg.upload.scope import Scope, scope_changes

BUILD = KernelBuild(
    units={"fs/ext4/inode.o": "fs/ext4/inode.c", "fs/nfsd/nfs4state.o": "fs/nfsd/nfs4state.c"},
    modules={"fs/nfsd/nfs4state.o": "nfsd"},
    assembly={"arch/x86/lib/memcpy_64.o": "arch/x86/lib/memcpy_64.S"},
)
# inode.c includes ext4.h, which includes linux/used.h; nothing built includes unused.h.
INDEX = IncludeIndex(
    {
        "./fs/ext4/ext4.h": ["fs/ext4/inode.c"],
        "ext4.h": ["fs/ext4/inode.c"],
        "linux/used.h": ["fs/ext4/ext4.h"],
        "linux/unused.h": ["drivers/off/x.c"],
    }
)


def _change(path: str, kind: Change = Change.MODIFIED) -> FileChange:
    old = None if kind is Change.ADDED else b"a\n"
    new = None if kind is Change.REMOVED else b"b\n"
    return FileChange(path, kind, old, new, ())


def test_each_file_is_scoped_by_what_the_target_builds() -> None:
    paths = {
        "fs/ext4/inode.c": Scope.BUILT_IN,
        "fs/nfsd/nfs4state.c": Scope.MODULE,
        "fs/ext4/ext4.h": Scope.HEADER,
        "include/linux/used.h": Scope.HEADER,
        "include/linux/unused.h": Scope.NOT_BUILT,
        "drivers/off/x.c": Scope.NOT_BUILT,
        "Documentation/a.rst": Scope.NOT_BUILT,
        "arch/arm64/kernel/a.c": Scope.NOT_BUILT,
        "arch/arm64/Kconfig": Scope.NOT_BUILT,
        "fs/ext4/Makefile": Scope.BUILD_SYSTEM,
        "fs/Kconfig": Scope.BUILD_SYSTEM,
        "arch/x86/lib/memcpy_64.S": Scope.OTHER,
    }
    scoped = scope_changes([_change(p) for p in paths], BUILD, INDEX)
    assert {s.path: s.scope for s in scoped} == paths
    nfsd = next(s for s in scoped if s.path == "fs/nfsd/nfs4state.c")
    assert nfsd.modules == ("nfsd",) and nfsd.units == ("fs/nfsd/nfs4state.o",)


def test_a_removed_unit_is_built_but_not_patchable_and_a_new_header_is_not_built() -> None:
    scoped = scope_changes(
        [_change("fs/ext4/inode.c", Change.REMOVED), _change("fs/ext4/new.h", Change.ADDED)],
        BUILD,
        INDEX,
    )
    assert [s.scope for s in scoped] == [Scope.OTHER, Scope.NOT_BUILT]
