"""One runtime command at a time: loading, undoing and the state files are serialised.

The lock is a flock on a file under the per-boot state directory, so it is released when the
holder dies, and a lock file left by a crash is never mistaken for a held lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ksplice_pkg.fsutil import make_dirs
from ksplice_pkg.runtime.errors import LockBusyError

POLL_SECONDS = 0.1


@contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on path; wait up to timeout seconds for it."""
    make_dirs(path.parent)
    # Root's alone: a lock file others can open is a lock others can hold.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "r+b") as f:
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
