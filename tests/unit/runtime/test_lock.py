from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ksplice_pkg.runtime.errors import LockBusyError
from ksplice_pkg.runtime.lock import locked

HOLDER = """
import sys, time
from pathlib import Path
from ksplice_pkg.runtime.lock import locked
with locked(Path(sys.argv[1]), 5):
    print("held", flush=True)
    time.sleep(30)
"""


def test_second_command_waits_then_reports_busy(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusyError), locked(lock, 0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    # The holder died without unlocking: the lock is free (flock goes with the process).
    with locked(lock, 1):
        pass
