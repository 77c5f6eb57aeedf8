"""One runtime command at a time: loading, undoing and the state files are serialised.

The lock is a flock on a file under the per-boot state directory, so it is released when the
holder dies, and a lock file left by a crash is never mistaken for a held lock.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ksplice_pkg.runtime.errors import LockBusyError

POLL_SECONDS = 0.1


@contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on path; wait up to timeout seconds for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusyError(
                        f"another ksplice-pkg command holds {path} (waited {timeout:.0f} s)",
                        hint="wait for it to finish, or raise --lock-timeout",
                    ) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
