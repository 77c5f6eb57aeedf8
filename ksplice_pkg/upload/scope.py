"""Which changed files the target's configuration builds, and into what.

The target's kbuild dry run (compile/headers.py) lists every unit of vmlinux and of the modules
with its source; a header is built when a built unit includes it, directly or through other
headers. Everything else (other architectures, Documentation, tools, drivers the config leaves
out) is counted and never compiled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from ksplice_pkg.compile.headers import IncludeIndex, KernelBuild
from ksplice_pkg.upload.changes import Change, FileChange


class Scope(Enum):
    BUILT_IN = "built-in"  # a .c unit of vmlinux
    MODULE = "module"  # a .c unit of a loadable module
    HEADER = "header"  # included by built units
    NOT_BUILT = "not-built"
    BUILD_SYSTEM = "build-system"  # Kconfig, Makefiles: what gets built, not code
    OTHER = "other"  # built, but not something a livepatch can carry (assembly, a new unit)


_BUILD_SYSTEM = re.compile(r"(^|/)(Kconfig[^/]*|Makefile[^/]*|Kbuild[^/]*|[^/]*\.mk)$")
# Trees of the source that no kernel build compiles for this architecture.
_NEVER_BUILT = re.compile(
    r"^(Documentation|tools|samples|LICENSES|debian|\.[^/]+)/|^arch/(?!x86/)[^/]+/"
)


@dataclass(frozen=True)
class Scoped:
    change: FileChange
    scope: Scope
    units: tuple[str, ...] = ()  # the .o built from it (a .c or .S file)
    modules: tuple[str, ...] = ()  # the modules those units go into

    @property
    def path(self) -> str:
        return self.change.path


def scope_changes(
    changes: Iterable[FileChange], build: KernelBuild, index: IncludeIndex
) -> list[Scoped]:
    by_source: dict[str, list[str]] = {}
    for unit, source in [*build.units.items(), *build.assembly.items()]:
        by_source.setdefault(source, []).append(unit)
    built_sources = set(build.units.values())
    scoped = []
    for change in changes:
        path = change.path
        units = tuple(sorted(by_source.get(path, ())))
        modules = tuple(sorted({build.modules[u] for u in units if u in build.modules}))
        if _NEVER_BUILT.match(path):
            scope = Scope.NOT_BUILT
        elif _BUILD_SYSTEM.search(path):
            scope = Scope.BUILD_SYSTEM
        elif units and path.endswith(".c") and change.change is Change.MODIFIED:
            scope = Scope.MODULE if modules and len(modules) == len(units) else Scope.BUILT_IN
        elif units:
            scope = Scope.OTHER  # assembly, or a built unit the new upload removes
        elif path.endswith((".h", ".c")) and _included_by_built(path, change, index, built_sources):
            # A header (or a .c file another one includes) that built units see.
            scope = Scope.HEADER
        else:
            scope = Scope.NOT_BUILT
        scoped.append(Scoped(change, scope, units, modules))
    return scoped


def _included_by_built(
    path: str, change: FileChange, index: IncludeIndex, built_sources: set[str]
) -> bool:
    if change.change is Change.ADDED:
        # Nothing of the old tree includes a new header; the changes that do are judged on
        # their own, and the header is carried in the "after" tree for them.
        return False
    return bool(index.closure([path]) & built_sources)
