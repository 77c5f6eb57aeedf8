"""The full Debian userland: systemd as PID 1 on the real kernel, a command run under it."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from tests.lab.userland import image_for, new_overlay, run_userland

SCRIPT = """
cat /proc/1/comm > "$OUT/pid1"
uname -r > "$OUT/uname"
systemd-run --wait --quiet -p Type=oneshot -u lab-probe sh -c 'echo ran > /run/probe'
cat /run/probe > "$OUT/probe"
systemctl show -p Result --value lab-probe > "$OUT/result" || true
[ -f /var/lib/lab-mark ] && echo yes > "$OUT/seen-mark"
touch /var/lib/lab-mark
sync
"""


def test_systemd_boots_and_runs_a_unit(
    artifacts: KernelArtifacts, cache: Path, tmp_path: Path
) -> None:
    overlay = new_overlay(image_for(artifacts, cache), tmp_path / "disk.qcow2")
    first = run_userland(artifacts, cache, SCRIPT, overlay=overlay)
    assert first.status == 0, first.console[-3000:]
    assert first.output_text("pid1").strip() == "systemd"
    assert first.output_text("uname").strip() == artifacts.release
    assert first.output_text("probe").strip() == "ran"
    assert "seen-mark" not in first.outputs
    assert first.crash_lines() == []
    # State written in one boot is there in the next: what reboot tests of updates rely on.
    second = run_userland(artifacts, cache, SCRIPT, overlay=overlay)
    assert second.output_text("seen-mark").strip() == "yes"


def test_cached_image_is_not_changed_by_a_boot(artifacts: KernelArtifacts, cache: Path) -> None:
    image = image_for(artifacts, cache)
    before = image.stat().st_mtime_ns
    result = run_userland(artifacts, cache, "touch /var/lib/should-vanish")
    assert result.status == 0
    assert image.stat().st_mtime_ns == before
    again = run_userland(artifacts, cache, "[ ! -e /var/lib/should-vanish ]")
    assert again.status == 0
