"""The kernel's livepatch interface: /sys/kernel/livepatch, /proc/<pid>/patch_state, and kmod.

Facts of the klp core this relies on (kernel/livepatch/, Linux 5.1 and later):
- one patch is in transition at a time; `transition` reads 1 while it is;
- writing the opposite value to `enabled` during a transition reverses it;
- writing 1 to `signal` sends a fake signal to the tasks that block the transition (it wakes
  interruptible sleepers only: a task in TASK_UNINTERRUPTIBLE keeps blocking);
- once a disabled patch's transition is over the kernel frees it asynchronously and its sysfs
  directory disappears: that, not `transition` reading 0, is when its module can be removed;
- /proc/<pid>/patch_state is -1 outside transitions, else the state the task is in (0 or 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.log import logger
from ksplice_pkg.run import run

LIVEPATCH = Path("/sys/kernel/livepatch")
MODULES = Path("/sys/module")
PROC = Path("/proc")
POLL_SECONDS = 0.05
PATCHED, UNPATCHED = 1, 0


def patch_dir(name: str) -> Path:
    return LIVEPATCH / name


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # the patch went away between two reads
        return None


def present(name: str) -> bool:
    return patch_dir(name).is_dir()


def enabled(name: str) -> bool:
    return _read(patch_dir(name) / "enabled") == "1"


def in_transition(name: str) -> bool:
    return _read(patch_dir(name) / "transition") == "1"


def patches() -> list[str]:
    """The names of the livepatches the kernel holds (enabled or on their way out)."""
    return sorted(p.name for p in LIVEPATCH.iterdir()) if LIVEPATCH.is_dir() else []


def gone(name: str) -> Callable[[], bool]:
    """A condition for wait_for: the patch's sysfs directory went away (it was freed)."""
    return lambda: not present(name)


def settled(name: str) -> Callable[[], bool]:
    """A condition for wait_for: the patch is there and out of transition."""
    return lambda: present(name) and not in_transition(name)


def transition_in_progress() -> str | None:
    """The patch in transition, if any."""
    return next((p for p in patches() if in_transition(p)), None)


def module_loaded(name: str) -> bool:
    return (MODULES / name).is_dir()


def set_enabled(name: str, value: bool) -> None:
    (patch_dir(name) / "enabled").write_text("1" if value else "0")


def send_signal(name: str) -> None:
    try:
        (patch_dir(name) / "signal").write_text("1")
    except OSError as e:  # EINVAL once the transition ended meanwhile
        logger.debug("signal %s: %s", name, e)


def insmod(module: Path) -> None:
    run(["insmod", module])


def rmmod(name: str) -> None:
    run(["rmmod", name])


@dataclass(frozen=True)
class Task:
    pid: int
    comm: str
    stack: list[str]

    def describe(self) -> str:
        frames = "".join(f"\n      {line}" for line in self.stack) or "\n      (no stack)"
        return f"{self.comm} (pid {self.pid}), kernel stack:{frames}"


def describe_tasks(tasks: list[Task]) -> str:
    return "\n".join("  " + t.describe() for t in tasks)


def blocking_tasks(target: int) -> list[Task]:
    """The tasks whose patch_state is not yet the transition's target state."""
    tasks: list[Task] = []
    for state_file in PROC.glob("[0-9]*/task/[0-9]*/patch_state"):
        state = _read(state_file)
        if state is None or state in ("-1", str(target)):
            continue
        task = state_file.parent
        tasks.append(
            Task(
                pid=int(task.name),
                comm=_read(task / "comm") or "?",
                stack=(_read(task / "stack") or "").splitlines(),
            )
        )
    return sorted(tasks, key=lambda t: t.pid)


def wait_for(
    name: str,
    done: Callable[[], bool],
    target: int,
    timeout: float,
    signal_after: float,
) -> list[Task]:
    """Wait until done(); signal the blocking tasks once after signal_after seconds.

    Returns [] on success, else the tasks still blocking when the timeout expired.
    """
    start = time.monotonic()
    signalled = False
    while not done():
        elapsed = time.monotonic() - start
        if not signalled and elapsed >= signal_after:
            blockers = blocking_tasks(target)
            logger.info(
                "%s: transition held up after %.0f s by %s; signalling them",
                name,
                elapsed,
                ", ".join(f"{t.comm} ({t.pid})" for t in blockers) or "no task",
            )
            send_signal(name)
            signalled = True
        if elapsed >= timeout:
            return blocking_tasks(target) or [Task(0, "(no task found)", [])]
        time.sleep(POLL_SECONDS)
    return []
