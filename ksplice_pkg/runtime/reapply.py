"""Boot: load every update installed for the running kernel, in dependency order.

A failing update does not stop the others; only those built on it are skipped. The outcome of
each update goes to the log (the journal, under the unit) and to report.json for `view`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.manifest import Manifest
from ksplice_pkg.runtime import guard, kernel, order
from ksplice_pkg.runtime.apply import Outcome, Timing, apply_bundle
from ksplice_pkg.runtime.bundle import load_installed
from ksplice_pkg.runtime.state import LIVE, State
from ksplice_pkg.runtime.store import Store, read_json, write_json


@dataclass(frozen=True)
class Result:
    id: str
    state: str  # a State; report.json of an older boot may hold any string
    reason: str = ""
    seconds: float = 0.0


def reapply(store: Store, timing: Timing) -> list[Result]:
    """Apply what is installed for this kernel; the caller holds the lock."""
    release = kernel.release()
    results: dict[str, Result] = {}
    # Reported once: by the result line of each installed update, here for one that is not.
    newly = guard.judge_previous_boot(store, kernel.boot_id())
    manifests: dict[str, Manifest] = {}
    bundles = {}
    for update_id in store.installed_ids(release):
        try:
            bundle = load_installed(store, release, update_id)
        except KspliceError as e:
            results[update_id] = Result(update_id, State.FAILED, str(e))
            continue
        manifests[update_id] = bundle.manifest
        bundles[update_id] = bundle
    quarantined = store.quarantined()
    superseded = order.superseded_at_boot(manifests)
    for update_id in order.dependency_order(manifests):
        manifest = manifests[update_id]
        if update_id in superseded:
            results[update_id] = Result(
                update_id,
                State.SUPERSEDED,
                f"replaced by the cumulative update {superseded[update_id]}",
            )
            continue
        if update_id in quarantined:
            results[update_id] = Result(update_id, State.QUARANTINED, quarantined[update_id])
            continue
        if blocker := next((d for d in manifest.depends_on if _not_ok(results, d)), None):
            why = results[blocker].state if blocker in results else "not installed"
            results[update_id] = Result(
                update_id, State.SKIPPED, f"it is built on {blocker}, which is {why}"
            )
            continue
        try:
            applied = apply_bundle(store, bundles[update_id], timing)
        except KspliceError as e:
            results[update_id] = Result(update_id, State.FAILED, e.message, 0.0)
            continue
        state = State.ALREADY_APPLIED if applied.outcome is Outcome.ALREADY else State.APPLIED
        results[update_id] = Result(update_id, state, "", applied.seconds)
    for update_id in sorted(newly.keys() - results.keys()):
        logger.warning("%s: quarantined: %s", update_id, newly[update_id])
    ordered = list(results.values())
    write_json(
        store.report_file,
        {"time": time.time(), "release": release, "results": [asdict(r) for r in ordered]},
    )
    return ordered


def _not_ok(results: dict[str, Result], dependency: str) -> bool:
    found = results.get(dependency)
    return found is None or found.state not in LIVE


def last_report(store: Store) -> dict[str, Result]:
    data = read_json(store.report_file)
    out: dict[str, Result] = {}
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        for r in data["results"]:
            try:
                out[str(r["id"])] = Result(**r)
            except (TypeError, KeyError):
                continue
    return out
