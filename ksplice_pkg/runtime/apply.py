"""Loading an update into the running kernel and waiting for its patching transition."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ksplice_pkg.errors import CommandError
from ksplice_pkg.fsutil import atomic_write, make_dirs
from ksplice_pkg.log import logger
from ksplice_pkg.manifest import module_name_of
from ksplice_pkg.run import run
from ksplice_pkg.runtime import guard, kernel, sysfs
from ksplice_pkg.runtime.bundle import Bundle, check_kernel
from ksplice_pkg.runtime.errors import DependencyError, LoadError, TransitionError
from ksplice_pkg.runtime.store import Store


@dataclass(frozen=True)
class Timing:
    """How long a transition may take, and when its blockers are signalled."""

    timeout: float = 60.0
    signal_after: float = 3.0


class Outcome(Enum):
    APPLIED = "applied"
    ALREADY = "already applied"


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    seconds: float  # from the start of the load to the end of the transition
    superseded: list[str]


def check(bundle: Bundle) -> None:
    """What refuses an update before anything is loaded, beyond what reading it checked (its
    layout, its manifest and its module's sha256)."""
    check_kernel(bundle.manifest, kernel.release(), kernel.build_id())


@contextmanager
def staged_module(store: Store, bundle: Bundle) -> Iterator[Path]:
    """The module as a private file of root's, written from the bytes whose sha256 was
    checked: insmod loads this copy, which nobody can change between the check and the load
    (the update's own file may live where others can write)."""
    base = make_dirs(store.run_dir / "staging", 0o700)
    with tempfile.TemporaryDirectory(dir=base) as tmp:  # 0700 itself
        yield atomic_write(Path(tmp) / bundle.manifest.module, bundle.update.module, 0o600)


_KERNEL_WORDS = ("livepatch", "Loading of ", "Lockdown: ")


def _kernel_says(name: str) -> str:
    """The kernel log lines about the module: why insmod failed, in the kernel's words."""
    log = run(["dmesg"], check=False).stdout.decode(errors="replace").splitlines()
    # The module signature checks name no module: "Loading of unsigned module is rejected",
    # "Loading of module with unavailable key is rejected", "Lockdown: insmod: unsigned module".
    lines = [ln for ln in log if name in ln or any(w in ln for w in _KERNEL_WORDS)][-5:]
    return "\n".join("    " + ln for ln in lines)


def wait_patched(name: str, timing: Timing) -> None:
    """Wait for an enabling transition; on timeout reverse it, unload, raise TransitionError."""
    blockers = sysfs.wait_for(
        name,
        sysfs.settled(name),
        sysfs.PATCHED,
        timing.timeout,
        timing.signal_after,
    )
    if not blockers:
        return
    logger.info("%s: transition not done after %.0f s; reversing it", name, timing.timeout)
    sysfs.set_enabled(name, False)
    stuck = sysfs.wait_for(name, sysfs.gone(name), sysfs.UNPATCHED, timing.timeout, 0)
    if stuck:
        raise TransitionError(
            f"{name}: the transition did not complete within {timing.timeout:.0f} s and "
            "reversing it did not complete either; tasks blocking it:\n"
            + sysfs.describe_tasks(stuck),
            hint=f"the reversal goes on in the kernel; undo {name} once it is done",
        )
    sysfs.rmmod(name)
    raise TransitionError(
        f"{name}: the transition did not complete within {timing.timeout:.0f} s (the blocking "
        f"tasks were signalled); it was reversed and the module unloaded, the kernel is as it "
        f"was. Tasks blocking it:\n{sysfs.describe_tasks(blockers)}",
        hint="retry when the named tasks have left the patched functions, or raise --timeout",
    )


# What insmod (strerror) says when only signed modules may load: under module.sig_enforce=1 an
# unsigned module and one signed by a key the kernel does not trust are both EKEYREJECTED
# (kernel/module/signing.c, 6.1; the log says which), ENOKEY on kernels that pass the key
# lookup's error through; under lockdown (Secure Boot) an unsigned module is EPERM, told apart
# by the lockdown state.
_SIGNATURE_REFUSALS = ("Key was rejected by service", "Required key not available")
_LOCKDOWN = Path("/sys/kernel/security/lockdown")
_SIGNING_HINT = (
    "this kernel loads only modules signed by a key it trusts (module.sig_enforce=1, or "
    "lockdown under Secure Boot): sign the update (create --sign-key KEY --sign-cert CERT) and "
    "enroll the certificate with `mokutil --import CERT` (confirmed in MokManager at the next "
    "boot); nothing was loaded"
)


def _signature_refused(said: str) -> bool:
    if any(s in said for s in _SIGNATURE_REFUSALS):
        return True
    try:
        locked = "[none]" not in _LOCKDOWN.read_text()
    except OSError:  # no securityfs, or no lockdown LSM
        locked = False
    return locked and "Operation not permitted" in said


def apply_bundle(store: Store, bundle: Bundle, timing: Timing) -> Applied:
    """Check, load and wait for the transition; the caller holds the lock."""
    manifest = bundle.manifest
    name = manifest.module_name
    check(bundle)
    if sysfs.present(name) and sysfs.enabled(name) and not sysfs.in_transition(name):
        if not store.applied_dir(manifest.id).is_dir():
            store.record_applied(manifest, bundle.source, time.time())
        return Applied(Outcome.ALREADY, 0.0, [])
    missing = [d for d in manifest.depends_on if not sysfs.present(module_name_of(d))]
    if missing:
        raise DependencyError(
            f"update {manifest.id} is built on {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not applied",
            hint=f"apply {' and '.join(missing)} first",
        )
    if busy := sysfs.transition_in_progress():
        # The kernel runs one transition at a time and would refuse the load with EBUSY.
        logger.info("waiting for the transition of %s to end", busy)
        sysfs.wait_for(
            busy, lambda: sysfs.transition_in_progress() is None, 1, timing.timeout, math.inf
        )
    guard.note_loading(store, manifest.id)
    before = set(sysfs.patches())
    start = time.monotonic()
    try:
        with staged_module(store, bundle) as module:
            sysfs.insmod(module)
    except CommandError as e:
        said = _kernel_says(name)
        raise LoadError(
            f"the kernel refused {manifest.module}: {e.message}\n{said}",
            hint=_SIGNING_HINT if _signature_refused(e.message) else None,
        ) from e
    if not sysfs.present(name):
        raise LoadError(f"{name} loaded but /sys/kernel/livepatch/{name} did not appear")
    wait_patched(name, timing)
    seconds = time.monotonic() - start
    store.record_applied(manifest, bundle.source, time.time())
    guard.clear(store, manifest.id)
    store.clear_superseded(manifest.id)
    superseded = _unload_replaced(store, manifest.id, before) if manifest.replace else []
    return Applied(Outcome.APPLIED, seconds, superseded)


def _unload_replaced(store: Store, by: str, before: set[str]) -> list[str]:
    """After a cumulative update's transition the kernel has disabled every older patch and
    removes their sysfs directories: unload those modules and record them as superseded."""
    replaced = sorted(p for p in before if p.startswith("ksplice_") and p != module_name_of(by))
    for name in replaced:
        sysfs.wait_for(name, sysfs.gone(name), sysfs.UNPATCHED, 60, math.inf)
        if sysfs.module_loaded(name):
            sysfs.rmmod(name)
        update_id = name.removeprefix("ksplice_")
        store.forget_applied(update_id)
        store.record_superseded(update_id, by)
        logger.debug("%s: superseded by the cumulative update %s, unloaded", update_id, by)
    return [n.removeprefix("ksplice_") for n in replaced]
