"""New globals that one unit of the update adds and another unit's new code uses.

A fix often adds a helper in one file and calls it from another (6.1.192 adds
fb_set_var_from_user in fbmem.c for fbsysfs.c, irq_evtchn_from_virq in events_base.c for
events_2l.c). The running kernel has no such symbol; the update does, in the defining unit's
part. Both parts go into the one livepatch module, so the reference is an ordinary undefined
global that the module's own link resolves, provided the definition is global in its part and
the code that calls it can only run when the definition's object is present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.query import functions


@dataclass(frozen=True)
class SharedNew:
    """name -> the object of the unit that newly defines it (None: vmlinux)."""

    owners: Mapping[str, str | None]

    def reachable_from(self, name: str, objname: str | None, depends: Iterable[str] = ()) -> bool:
        """Whether code of objname (None: vmlinux) may call the new name directly: the new
        code lives in the update whatever is loaded, but a module unit's new code refers to its
        module through klp relocations that are written only while that module is loaded, so
        only code of the same module, or of a module that depends on it, may call it."""
        if name not in self.owners:
            return False
        owner = self.owners[name]
        if owner is None:
            return True
        loaded_with = {_norm(objname)} if objname else set()
        return _norm(owner) in loaded_with | {_norm(d) for d in depends}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.owners)


NO_SHARED = SharedNew({})


def shared_new(changes: Iterable[UnitChange]) -> SharedNew:
    """The global functions and variables the units add, each with its object. A name two
    units add is not shared: the module cannot hold both, and which one a reference meant is
    the kernel's final link's to say (each stays a reference to resolve in the target)."""
    owners: dict[str, str | None] = {}
    twice: set[str] = set()
    for change in changes:
        funcs = functions(change.post)
        for name in [*change.diff.new_functions, *change.diff.new_data]:
            fn = funcs.get(name)
            globally = (
                not change.post.symbols[fn.symbol].is_local
                if fn is not None
                else any(s.name == name and s.is_defined and not s.is_local
                         for s in change.post.symbols)
            )  # fmt: skip
            if not globally:
                continue
            if name in owners:
                twice.add(name)
            owners[name] = change.module
    return SharedNew({n: o for n, o in owners.items() if n not in twice})


def _norm(module: str) -> str:
    # KBUILD_MODNAME spells a module with underscores, modinfo's depends= as its file name.
    return module.replace("-", "_")
