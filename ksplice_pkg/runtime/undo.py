"""Taking an update back: disable, wait for the reverse transition, unload."""

from __future__ import annotations

from ksplice_pkg.log import logger
from ksplice_pkg.manifest import Manifest
from ksplice_pkg.runtime import order, sysfs
from ksplice_pkg.runtime.apply import Timing
from ksplice_pkg.runtime.errors import DependencyError, NotFoundError, TransitionError
from ksplice_pkg.runtime.store import Store


def applied_manifests(store: Store) -> dict[str, Manifest]:
    """What ksplice-pkg applied and the kernel still holds."""
    return {i: m for i, (m, _) in store.applied_records().items() if sysfs.present(m.module_name)}


def undo(store: Store, update_id: str, timing: Timing) -> bool:
    """Undo one update; False when it was not applied. The caller holds the lock."""
    name = f"ksplice_{update_id}"
    if not sysfs.present(name):
        if sysfs.module_loaded(name):  # left over by an interrupted undo
            sysfs.rmmod(name)
        known = store.applied_dir(update_id).is_dir() or any(
            store.installed_dir(r.name, update_id).is_dir()
            for r in (store.updates_dir.iterdir() if store.updates_dir.is_dir() else [])
        )
        store.forget_applied(update_id)
        if not known:
            raise NotFoundError(f"{update_id}: no such update is applied or installed")
        return False
    applied = applied_manifests(store)
    if dependents := order.dependents(applied, update_id):
        raise DependencyError(
            f"update {', '.join(dependents)} is built on {update_id} and still applied",
            hint=f"undo {' and '.join(dependents)} first, or use `undo --all`",
        )
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
