"""Run-pre for one unit of the update, whether it is built into vmlinux or into a module: the
sympos of each function it replaces, and how its code reaches each symbol it references (which
the evidence run-pre gathered settles)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.module.extract import Resolver
from ksplice_pkg.module.resolve import make_module_resolver, make_resolver, module_exports
from ksplice_pkg.runpre.changed import verify_changed, verify_changed_in_module
from ksplice_pkg.runpre.evidence import Evidence, ModuleEvidence
from ksplice_pkg.runpre.module import ModuleBinary, module_ko
from ksplice_pkg.source.series import PreviousUpdate
from ksplice_pkg.target.symbols import SymbolMap
from ksplice_pkg.target.symvers import Symvers


class UnitRunPre:
    """What run-pre needs across the units of one update: the target's symbols, binary and
    exports, its modules' .ko files (read once each), and the updates below a --series one."""

    def __init__(
        self,
        symbols: SymbolMap,
        vmlinux: Vmlinux | None,
        symvers: Symvers,
        modules_dir: Path | None,
        series: Sequence[PreviousUpdate],
    ) -> None:
        self.symbols, self.vmlinux, self.symvers = symbols, vmlinux, symvers
        self.modules_dir = modules_dir
        self.series = series
        self.read: dict[str, ModuleBinary] = {}

    def verify(self, change: UnitChange) -> tuple[dict[str, int], Resolver]:
        """The sympos of each function the unit replaces, and its resolver."""
        if change.module is not None:
            return self._in_module(change, change.module)
        evidence = Evidence(change.unit, change.pre, self.symbols, self.vmlinux)
        sympos = verify_changed(change.diff, evidence, self._earlier("vmlinux"))
        resolver = make_resolver(
            set(self.symvers.vmlinux_exports()),
            self.symbols,
            evidence.lookup,
            change.unit,
            change.diff.static_map,
        )
        return sympos, resolver

    def _earlier(self, objname: str) -> dict[str, int]:
        """What the updates below this one replaced (a --series) in one object (vmlinux or a
        module), with the sympos they used."""
        return {
            e.name: e.sympos for p in self.series for e in p.manifest.patched if e.object == objname
        }

    def module(self, module: str, unit: str) -> ModuleBinary:
        if self.modules_dir is None:
            raise KspliceError(
                f"{unit} is part of the loadable module {module}: patching it needs the "
                f"target's {module}.ko",
                hint="give --modules-dir with the target's lib/modules/<release> (from its "
                "image package), or a `modules` link to it in the --config dir (`ksplice-pkg "
                "fetch` lays one out)",
            )
        if ":" in module:
            # kbuild's KBUILD_MODNAME of an object linked into several modules joins their names.
            raise RefusedError(
                f"{unit} is linked into several modules ({module.replace(':', ', ')}): "
                "patching code shared between modules is not supported",
                hint="patch the callers in each module instead",
            )
        if module not in self.read:
            self.read[module] = ModuleBinary(module, module_ko(self.modules_dir, module))
        return self.read[module]

    def _in_module(self, change: UnitChange, module: str) -> tuple[dict[str, int], Resolver]:
        """Run-pre of a module unit against its module's .ko."""
        ko = self.module(module, change.unit)
        evidence = ModuleEvidence(change.unit, change.pre, ko)
        sympos = verify_changed_in_module(change.diff, evidence, self._earlier(module))
        resolver = make_module_resolver(
            set(self.symvers.vmlinux_exports()),
            module_exports(self.symvers.exports),
            self.symbols,
            ko,
            evidence.lookup,
            change.unit,
            change.diff.static_map,
            functools.partial(self.module, unit=change.unit),
        )
        return sympos, resolver
