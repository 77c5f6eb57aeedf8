"""The crash-loop guard: an update that takes the machine down does not come back at boot.

Before an update is loaded, guard.json records it among what this boot loaded. Once the last
load is `window` seconds old (`ksplice-pkg confirm`, run by ksplice-pkg-stable.service), or
when the boot ends with a clean shutdown (`confirm --shutdown`, the ExecStop= of
ksplice-pkg-shutdown.service), the boot is marked stable and its updates proven. The next boot
judges the previous one: if it never became stable, the machine crashed, was reset or lost
power soon after loading.
Then the updates it loaded that never proved stable on this machine are quarantined; when all
of them had proven stable before, a second such boot in a row quarantines them all (so a loop
ends after two crashes at the most). Quarantined updates are skipped at boot, with those that
depend on them, until `ksplice-pkg apply ID` or `ksplice-pkg reapply --clear`.
"""

from __future__ import annotations

import errno
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.run import run
from ksplice_pkg.runtime import kernel
from ksplice_pkg.runtime.store import Store, read_json, write_json

DEFAULT_WINDOW = 20.0
# Unstable boots in a row, all of whose updates had proven stable before, before they are all
# quarantined: one could be an unrelated power loss, two in a row point at the updates.
UNSTABLE_BOOTS_LIMIT = 2

# Stopping this unit is what a clean shutdown does and a crash, a reset or a power cut does not:
# its ExecStop= marks the boot stable. Its ExecStart= leaves SHUTDOWN_ARMED in /run, so that a
# load tells in a stat() whether this boot is covered (see systemd/ksplice-pkg-shutdown.service).
SHUTDOWN_UNIT = "ksplice-pkg-shutdown.service"
SHUTDOWN_ARMED = "shutdown-armed"
SYSTEMD_BOOTED = Path("/run/systemd/system")  # sd_booted(): systemd is PID 1


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
    # The caller reports what is quarantined now, once: reapply in its per-update result lines,
    # note_loading (a load in a boot that reapply did not judge) in the log.
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
        if not unproven and suspects:
            state.unstable_boots = 0
    GuardState(boot_id=boot_id, proven=state.proven, unstable_boots=state.unstable_boots).write(
        store
    )
    return newly


def arm_shutdown_mark(store: Store) -> None:
    """Make sure a clean shutdown of this boot marks its loads stable, whatever loads them.

    ksplice-pkg-shutdown.service is enabled for boot and started by the runtime package's
    postinst, but a load must not rely on either: the runtime may have been installed by hand,
    the unit stopped, or this boot may be one the package did not see start. So every load
    starts it, synchronously, unless its mark in /run says it is active already."""
    if (store.run_dir / SHUTDOWN_ARMED).is_file() or not SYSTEMD_BOOTED.is_dir():
        return  # without systemd, only `ksplice-pkg confirm` marks a boot stable
    try:
        result = run(["systemctl", "start", SHUTDOWN_UNIT], check=False, timeout=60)
        said = (result.stderr or result.stdout).decode(errors="replace").strip()
        failed = result.returncode != 0
    except CommandError as e:
        said, failed = e.message, True
    if failed:
        # A shutdown under way refuses the start: the load goes on (a package transaction must
        # not fail for this), but the next boot will count this one as unclean.
        logger.warning(
            "%s could not be started (%s): unless this boot lasts %.0f s after the load, the "
            "next boot takes it for a crash and quarantines the update",
            SHUTDOWN_UNIT,
            said or "no reason given",
            DEFAULT_WINDOW,
        )


def note_loading(store: Store, update_id: str) -> None:
    """Record, durably, that this boot is about to load update_id."""
    try:
        for i, reason in judge_previous_boot(store, kernel.boot_id()).items():
            logger.warning("%s: quarantined: %s", i, reason)
        arm_shutdown_mark(store)
        state = GuardState.read(store)
        if update_id not in state.loaded:
            state.loaded.append(update_id)
        state.last_load = boottime()
        state.stable = False
        state.write(store)
    except OSError as e:
        # No record, no load: a load the guard does not know of would escape its judgement.
        # Every write is atomic, so the previous record is intact.
        raise KspliceError(
            f"{update_id}: not loaded: the crash-loop guard cannot record the load in "
            f"{store.guard_file}: {e.strerror or e}",
            hint=f"free space on the file system that holds {store.state_dir}"
            if e.errno == errno.ENOSPC
            else f"check {store.state_dir} and its permissions",
        ) from e


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
    """This boot survived its loads: they are proven. Returns them (those proven in an earlier
    boot too: the mark is an event of this boot, reported whole); [] when there was nothing
    to mark."""
    state = GuardState.read(store)
    if state.boot_id != kernel.boot_id() or state.stable:
        return []
    state.stable = True
    state.unstable_boots = 0
    state.proven = sorted({*state.proven, *state.loaded})
    state.write(store)
    return list(state.loaded)
