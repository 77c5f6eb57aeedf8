"""Run-pre for one unit of the update, whether it is built into vmlinux or into a module: the
sympos of each function it replaces, and the evidence of which target symbol each name of its
pre code is. The pipeline hands that proof to module/, which decides from it how the update's
code reaches each symbol it references."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.runpre.changed import verify_changed, verify_changed_in_module
from ksplice_pkg.runpre.evidence import Evidence, ModuleEvidence
from ksplice_pkg.source.series import PreviousUpdate
from ksplice_pkg.target.modules import TargetModules
from ksplice_pkg.target.symbols import SymbolMap


@dataclass(frozen=True)
class Proof:
    """What run-pre showed of one unit: the sympos of each function it replaces, and the
    evidence (vmlinux's or its module's .ko's) of what the names of its pre code are."""

    sympos: dict[str, int]
    evidence: Evidence | ModuleEvidence


class UnitRunPre:
    """What run-pre needs across the units of one update: the target's symbols and binary, its
    modules' .ko files (read once each), and the updates below a --series one."""

    def __init__(
        self,
        symbols: SymbolMap,
        vmlinux: Vmlinux | None,
        modules: TargetModules,
        series: Sequence[PreviousUpdate],
    ) -> None:
        self.symbols, self.vmlinux, self.modules = symbols, vmlinux, modules
        self.series = series

    def verify(self, change: UnitChange) -> Proof:
        """The sympos of each function the unit replaces, and the evidence run-pre gathered."""
        if change.module is not None:
            # Run-pre of a module unit is against its module's .ko.
            ko = self.modules.binary(change.module, change.unit)
            module_evidence = ModuleEvidence(change.unit, change.pre, ko)
            sympos = verify_changed_in_module(
                change.diff, module_evidence, self._earlier(change.module)
            )
            return Proof(sympos, module_evidence)
        evidence = Evidence(change.unit, change.pre, self.symbols, self.vmlinux)
        return Proof(verify_changed(change.diff, evidence, self._earlier("vmlinux")), evidence)

    def _earlier(self, objname: str) -> dict[str, int]:
        """What the updates below this one replaced (a --series) in one object (vmlinux or a
        module), with the sympos they used."""
        return {
            e.name: e.sympos for p in self.series for e in p.manifest.patched if e.object == objname
        }
