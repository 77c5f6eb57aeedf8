"""The guest script that tries an update (vm.trial.trial_script), run here by sh with the
guest's module and livepatch helpers stubbed: the check runs before loading, once the
transition is done, and after disable and removal; a failing step stops it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ksplice_pkg.vm.trial import trial_script

# The guest's commands, recording what happened; the check prints the state they leave.
STUBS = """
STATE=original
insmod() { echo "insmod $1" >> "$OUT/log"; STATE=loaded; }
klp_wait_transition() { echo "wait $1" >> "$OUT/log"; STATE=patched; }
klp_disable() { echo "disable $1" >> "$OUT/log"; STATE=disabled; }
rmmod() { echo "rmmod $1" >> "$OUT/log"; STATE=original; }
"""


def _run(tmp_path: Path, stubs: str) -> int:
    script = stubs + trial_script("ksplice_fix1.ko", "ksplice_fix1", 'echo "state=$STATE"')
    env = {"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", script], env=env, check=False).returncode


def test_check_runs_at_each_stage(tmp_path: Path) -> None:
    assert _run(tmp_path, STUBS) == 0
    assert [(tmp_path / f).read_text() for f in ("before", "patched", "restored")] == [
        "state=original\n",
        "state=patched\n",
        "state=original\n",
    ]
    assert (tmp_path / "log").read_text().splitlines() == [
        "insmod ksplice_fix1.ko",
        "wait ksplice_fix1",
        "disable ksplice_fix1",
        "rmmod ksplice_fix1",
    ]


def test_failing_load_stops_the_trial(tmp_path: Path) -> None:
    assert _run(tmp_path, STUBS + "insmod() { return 1; }\n") != 0
    assert (tmp_path / "before").is_file()
    assert not (tmp_path / "patched").exists()
