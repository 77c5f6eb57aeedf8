"""The states an update is in on this machine, as `view` shows them and the boot's reapply
reports them: one set of names, spelled once (they are also the JSON of `view --json` and of
/run/ksplice-pkg/report.json, so their values never change)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already applied"  # reapply: it was live before the unit ran
    IN_TRANSITION = "in transition"
    INSTALLED = "installed"
    SUPERSEDED = "superseded"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    SKIPPED = "skipped"


LIVE = (State.APPLIED, State.ALREADY_APPLIED)
