"""The crash-loop guard: an update that takes the machine down does not come back at boot.

Before an update is loaded, guard.json records it among what this boot loaded. Once the last
load is `window` seconds old (`ksplice-pkg confirm`, run by ksplice-pkg-stable.service and at
a clean shutdown), the boot is marked stable and its updates proven. The next boot judges the
previous one: if it never became stable, the machine crashed or was reset soon after loading.
Then the updates it loaded that never proved stable on this machine are quarantined; when all
of them had proven stable before, a second such boot in a row quarantines them all (so a loop
ends after two crashes at the most). Quarantined updates are skipped at boot, with those that
depend on them, until `ksplice-pkg apply ID` or `ksplice-pkg reapply --clear`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from ksplice_pkg.log import logger
from ksplice_pkg.runtime import kernel
from ksplice_pkg.runtime.store import Store, read_json, write_json

DEFAULT_WINDOW = 20.0
# Unstable boots in a row, all of whose updates had proven stable before, before they are all
# quarantined: one could be an unrelated power loss, two in a row point at the updates.
UNSTABLE_BOOTS_LIMIT = 2


def boottime() -> float:
    # CLOCK_BOOTTIME: NTP stepping the wall clock during boot must not shorten the window.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class GuardState:
    boot_id: str = ""
    loaded: list[str] = field(default_factory=list)
    last_load: float = 0.0  # CLOCK_BOOTTIME of the last load in that boot
    stable: bool = True
    proven: list[str] = field(default_factory=list)
    unstable_boots: int = 0

    @classmethod
    def read(cls, store: Store) -> GuardState:
        data = read_json(store.guard_file)
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(
                boot_id=str(data.get("boot_id", "")),
                loaded=[str(i) for i in data.get("loaded", [])],
                last_load=float(data.get("last_load", 0.0)),
                stable=bool(data.get("stable", True)),
                proven=[str(i) for i in data.get("proven", [])],
                unstable_boots=int(data.get("unstable_boots", 0)),
            )
        except (TypeError, ValueError):
            return cls()

    def write(self, store: Store) -> None:
        write_json(store.guard_file, asdict(self))


def quarantine(store: Store, update_id: str, reason: str) -> None:
    write_json(store.quarantine_file(update_id), {"reason": reason, "since": time.time()})


def clear(store: Store, update_id: str | None = None) -> list[str]:
    """Forget the quarantine of one update (or all); the ids cleared."""
    ids = [update_id] if update_id else list(store.quarantined())
    cleared = [i for i in ids if store.quarantine_file(i).is_file()]
    for i in cleared:
        store.quarantine_file(i).unlink()
    if update_id is None:
        state = GuardState.read(store)
        state.unstable_boots = 0
        state.write(store)
    return cleared


def judge_previous_boot(store: Store, boot_id: str) -> dict[str, str]:
    """Quarantine what an unstable previous boot loaded; start this boot's record.
    Returns the ids quarantined now, with the reason."""
    state = GuardState.read(store)
    if state.boot_id == boot_id:
        return {}
    newly: dict[str, str] = {}
    if not state.stable and state.loaded:
        unproven = [i for i in state.loaded if i not in state.proven]
        state.unstable_boots = 0 if unproven else state.unstable_boots + 1
        suspects = unproven or (
            state.loaded if state.unstable_boots >= UNSTABLE_BOOTS_LIMIT else []
        )
        for i in suspects:
            newly[i] = (
                f"the previous boot ({state.boot_id}) went down within the stability window "
                f"after loading it (loaded then: {', '.join(state.loaded)})"
            )
            quarantine(store, i, newly[i])
            logger.warning("%s: quarantined: %s", i, newly[i])
        if not unproven and suspects:
            state.unstable_boots = 0
    GuardState(boot_id=boot_id, proven=state.proven, unstable_boots=state.unstable_boots).write(
        store
    )
    return newly


def note_loading(store: Store, update_id: str) -> None:
    """Record, durably, that this boot is about to load update_id."""
    boot_id = kernel.boot_id()
    judge_previous_boot(store, boot_id)
    state = GuardState.read(store)
    if update_id not in state.loaded:
        state.loaded.append(update_id)
    state.last_load = boottime()
    state.stable = False
    state.write(store)


def remaining(store: Store, window: float) -> float:
    """Seconds until this boot's loads are `window` old; 0 when it can be marked stable."""
    state = GuardState.read(store)
    if state.boot_id != kernel.boot_id() or state.stable:
        return 0.0
    return max(0.0, state.last_load + window - boottime())


def boot_stable(store: Store) -> bool:
    """Whether what this boot loaded (if anything) has been marked stable."""
    state = GuardState.read(store)
    return state.boot_id != kernel.boot_id() or state.stable


def mark_stable(store: Store) -> list[str]:
    """This boot survived its loads: they are proven. Returns what was proven now."""
    state = GuardState.read(store)
    if state.boot_id != kernel.boot_id() or state.stable:
        return []
    state.stable = True
    state.unstable_boots = 0
    new = [i for i in state.loaded if i not in state.proven]
    state.proven = sorted({*state.proven, *state.loaded})
    state.write(store)
    return new
