"""Taking an update back: disable, wait for the reverse transition, unload.

A package removal defers its undo to the end of the package manager's run (`defer_undo`, then
`undo_deferred` from the runtime package's dpkg trigger): apt removes a package that a
cumulative update supersedes before it installs that update, and undoing at once would leave
the kernel with neither of them until the new package's postinst applies it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.manifest import Manifest, check_update_id, module_name_of
from ksplice_pkg.runtime import kernel, order, sysfs
from ksplice_pkg.runtime.apply import Timing
from ksplice_pkg.runtime.bundle import installed_manifest
from ksplice_pkg.runtime.errors import DependencyError, NotFoundError, TransitionError
from ksplice_pkg.runtime.store import Store


def applied_manifests(store: Store) -> dict[str, Manifest]:
    """What ksplice-pkg applied and the kernel still holds."""
    return {i: m for i, (m, _) in store.applied_records().items() if sysfs.present(m.module_name)}


def undo(store: Store, update_id: str, timing: Timing) -> bool:
    """Undo one update; False when it was not applied. The caller holds the lock."""
    name = module_name_of(check_update_id(update_id))
    if not sysfs.present(name):
        known = store.applied_dir(update_id).is_dir() or any(
            store.installed_dir(r, update_id).is_dir() for r in store.installed_releases()
        )
        if not known and not sysfs.module_loaded(name):
            raise NotFoundError(f"{update_id}: no such update is applied or installed")
        if sysfs.module_loaded(name):  # left over by an interrupted undo
            sysfs.rmmod(name)
        store.forget_applied(update_id)
        return False
    _refuse_dependents(applied_manifests(store), update_id)
    sysfs.set_enabled(name, False)
    blockers = sysfs.wait_for(
        name, sysfs.gone(name), sysfs.UNPATCHED, timing.timeout, timing.signal_after
    )
    if blockers:
        # Writing 1 during the disabling transition turns it back: the update stays applied.
        sysfs.set_enabled(name, True)
        sysfs.wait_for(name, sysfs.settled(name), sysfs.PATCHED, timing.timeout, 0)
        raise TransitionError(
            f"{name}: undoing it did not complete within {timing.timeout:.0f} s; it was turned "
            f"back and stays applied. Tasks blocking it:\n{sysfs.describe_tasks(blockers)}",
            hint="retry when the named tasks have left the patched functions, or raise --timeout",
        )
    sysfs.rmmod(name)
    store.forget_applied(update_id)
    logger.debug("%s: undone", update_id)
    return True


def _refuse_dependents(
    applied: dict[str, Manifest], update_id: str, going: Collection[str] = ()
) -> None:
    """Refuse to take update_id away while an applied update built on it stays (`going`: the
    dependents whose own undo is already on its way)."""
    dependents = [d for d in order.dependents(applied, update_id) if d not in going]
    if dependents:
        raise DependencyError(
            f"update {', '.join(dependents)} is built on {update_id} and still applied",
            hint=f"undo {' and '.join(dependents)} first, or use `undo --all`",
        )


def defer_undo(store: Store, update_id: str) -> bool:
    """Check now that update_id can be undone and leave the undo to `undo_deferred`; False
    when it is not applied. The check is made now so that a package removal the runtime
    refuses (an applied update is built on this one) fails in its prerm, package kept."""
    applied = applied_manifests(store)
    if update_id not in applied:
        return False
    _refuse_dependents(applied, update_id, going=store.deferred_undos())
    store.record_deferred_undo(update_id)
    return True


@dataclass(frozen=True)
class Deferred:
    id: str
    outcome: str  # what became of the deferred undo, one line
    failed: bool = False


def undo_deferred(store: Store, timing: Timing) -> list[Deferred]:
    """Carry out the deferred undos, dependents first. An update whose package came back, or
    that a newer installed cumulative update supersedes (it stays live until that one is
    applied, at the latest at the next boot), is left applied. A failed undo keeps its record
    for the next run; the others go on."""
    applied = applied_manifests(store)
    installed = _installed_manifests(store, kernel.release())
    results: list[Deferred] = []
    to_undo: dict[str, Manifest] = {}
    for update_id in store.deferred_undos():
        manifest = applied.get(update_id)
        if manifest is None:
            outcome = "no longer applied"
        elif update_id in installed:
            outcome = "installed again, stays applied"
        elif by := order.superseded_by(manifest, installed.values()):
            outcome = f"stays applied: the installed cumulative update {by} takes it over"
        else:
            to_undo[update_id] = manifest
            continue
        store.forget_deferred_undo(update_id)
        results.append(Deferred(update_id, outcome))
    for update_id in reversed(order.dependency_order(to_undo)):
        try:
            undone = undo(store, update_id, timing)
        except KspliceError as e:
            results.append(Deferred(update_id, f"{e} (still applied)", failed=True))
            continue
        store.forget_deferred_undo(update_id)
        results.append(Deferred(update_id, "undone" if undone else "no longer applied"))
    return results


def _installed_manifests(store: Store, release: str) -> dict[str, Manifest]:
    out = {}
    for update_id in store.installed_ids(release):
        try:
            out[update_id] = installed_manifest(store, release, update_id)
        except KspliceError:  # unreadable: it supersedes nothing
            continue
    return out


def undo_all(store: Store, timing: Timing) -> list[str]:
    """Undo every applied update, dependents before what they are built on, newest first."""
    applied = applied_manifests(store)
    records = store.applied_records()

    # Reversed below: among updates free to go, the newest applied goes first.
    def applied_at(update_id: str) -> tuple[float, str]:
        when = records[update_id][1].get("applied_at", 0.0)
        return (when if isinstance(when, float) else 0.0, update_id)

    undone = []
    for update_id in reversed(order.dependency_order(applied, applied_at)):
        if undo(store, update_id, timing):
            undone.append(update_id)
    return undone
