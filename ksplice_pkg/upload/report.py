"""The report of an upload made into an update: per changed file, what the target builds of
it, the functions the update carries and the changes left out with their reasons; totals; the
CVEs by status. Written as JSON (--report) and summed up for the terminal."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ksplice_pkg.compile.headers import IncludeIndex
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.upload.derive import Derived
from ksplice_pkg.upload.reasons import LeftOut
from ksplice_pkg.upload.scope import Scope, Scoped

REPORT_VERSION = 1
SHOWN_LEFT_OUT = 30  # in the terminal summary; the report lists them all


@dataclass(frozen=True)
class Side:
    source: Path
    version: str | None


@dataclass
class Report:
    old: Side
    new: Side
    release: str
    scoped: list[Scoped]
    derived: Derived
    index: IncludeIndex
    cves: dict[str, str] = field(default_factory=dict)  # CVE id -> included|left-out|unknown
    changelog_entries: int = 0
    update: dict[str, Any] | None = None
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.derived.left_out

    def functions_by_file(self) -> dict[str, list[str]]:
        """The functions the update carries, under the changed file that changes them: a unit's
        own .c file, else each changed header it includes."""
        changed_headers = [
            s.path
            for s in self.scoped
            if s.scope is Scope.HEADER and self.derived.accepted.get(s.path)
        ]
        closures = {h: self.index.closure([h]) for h in changed_headers}
        found: dict[str, set[str]] = {}
        for change in self.derived.changes:
            source = self.derived.units.get(change.unit, change.unit)
            # A .cold part goes with its parent: one function to the reader.
            names = [n for n in [*change.diff.changed, *change.diff.new_functions]
                     if not n.endswith(".cold")]  # fmt: skip
            owners = (
                [source]
                if self.derived.accepted.get(source)
                else [h for h, users in closures.items() if source in users]
            )
            for owner in owners:
                found.setdefault(owner, set()).update(names)
        return {path: sorted(names) for path, names in found.items()}

    def to_json(self) -> dict[str, Any]:
        functions = self.functions_by_file()
        left_by_path: dict[str, list[LeftOut]] = {}
        for item in self.derived.left_out:
            left_by_path.setdefault(item.path, []).append(item)
        files = []
        for s in self.scoped:
            accepted = self.derived.accepted.get(s.path, set())
            files.append(
                {
                    "path": s.path,
                    "change": s.change.change.value,
                    "scope": s.scope.value,
                    "modules": list(s.modules),
                    "units": list(s.units),
                    "functions": functions.get(s.path, []),
                    "hunks": len(s.change.hunks),
                    "included_hunks": len(accepted),
                    "left_out": [
                        {"hunk": i.hunk, "reason": i.reason.value, "detail": i.detail}
                        for i in left_by_path.get(s.path, [])
                    ],
                }
            )
        changed = {s.path for s in self.scoped}
        # Units the upload changes only through its headers (init code they run at load):
        # their file is no changed file, and a change left out is never silent.
        elsewhere = [
            {"path": path, "reason": i.reason.value, "detail": i.detail}
            for path, items in sorted(left_by_path.items())
            if path not in changed
            for i in items
        ]
        return {
            "report_version": REPORT_VERSION,
            "from": {"source": str(self.old.source), "version": self.old.version},
            "to": {"source": str(self.new.source), "version": self.new.version},
            "kernel_release": self.release,
            "complete": self.complete,
            "update": self.update,
            "files": files,
            "left_out_in_other_files": elsewhere,
            "totals": self.totals(functions),
            "cves": self.cves,
            "changelog_entries": self.changelog_entries,
            "units_compiled": self.derived.compiled,
            "rounds": self.derived.rounds,
            "timings": [[name, round(seconds, 2)] for name, seconds in self.timings],
        }

    def totals(self, functions: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        scopes = Counter(s.scope for s in self.scoped)
        reasons = Counter(i.reason.value for i in self.derived.left_out)
        return {
            "changed_files": len(self.scoped),
            "not_built": scopes[Scope.NOT_BUILT],
            "built_in": scopes[Scope.BUILT_IN],
            "module": scopes[Scope.MODULE],
            "headers": scopes[Scope.HEADER],
            "build_system": scopes[Scope.BUILD_SYSTEM],
            "other": scopes[Scope.OTHER],
            "included_files": sum(1 for hunks in self.derived.accepted.values() if hunks),
            "included_hunks": sum(len(hunks) for hunks in self.derived.accepted.values()),
            "functions": len({n for names in functions.values() for n in names}),
            "left_out": len(self.derived.left_out),
            "left_out_by_reason": dict(sorted(reasons.items())),
        }

    def write(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.to_json(), indent=2) + "\n")

    def summary(self) -> str:
        functions = self.functions_by_file()
        t = self.totals(functions)
        lines = [
            f"upload {self.old.version or self.old.source} -> "
            f"{self.new.version or self.new.source} for {self.release}",
            f"  {t['changed_files']} file(s) changed: {t['not_built']} not built, "
            f"{t['built_in']} built in, {t['module']} in modules, {t['headers']} header(s), "
            f"{t['build_system']} build system, {t['other']} other",
            f"  included: {t['included_hunks']} hunk(s) of {t['included_files']} file(s), "
            f"{t['functions']} function(s) patched; {self.derived.compiled} unit(s) compiled "
            f"in {self.derived.rounds} round(s)",
        ]
        for path, names in sorted(functions.items())[:SHOWN_LEFT_OUT]:
            lines.append(f"    {path}: {', '.join(names)}")
        if self.cves:
            by_status = Counter(self.cves.values())
            lines.append(
                "  CVEs: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
            )
        left = self.derived.left_out
        if left:
            lines.append(
                f"  {len(left)} change(s) left out: a reboot is needed for them ("
                + ", ".join(f"{n} {r}" for r, n in t["left_out_by_reason"].items())
                + ")"
            )
            lines += [f"    {item.line()}" for item in left[:SHOWN_LEFT_OUT]]
            if len(left) > SHOWN_LEFT_OUT:
                lines.append(f"    ... and {len(left) - SHOWN_LEFT_OUT} more in the report")
        else:
            lines.append("  nothing left out: the update brings every change the target builds")
        return "\n".join(lines)
