"""A hotpatch package for another kernel release, end to end: installed by apt while one kernel
runs, it leaves that kernel alone; when the machine boots the kernel it was made for, the boot
unit applies it. Both kernels are real Debian uploads of the same series, the current one and the
one before it, booted on the same disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts, available_releases, fetch
from ksplice_pkg.package import PackageFormat, build_packages
from ksplice_pkg.vm.capture import capture_kallsyms
from tests.lab.runtime_guest import PRELUDE as RUNTIME_PRELUDE
from tests.lab.runtime_guest import make_update, output, status
from tests.lab.test_package import MAINTAINER, stand_in_deb
from tests.lab.test_runtime import A_PATCH
from tests.lab.userland import image_for, new_overlay, run_userland
from tests.unit.package.own import build_debs

UPDATE_ID = "pkother"


@pytest.fixture(scope="module")
def other(artifacts: KernelArtifacts, cache: Path) -> KernelArtifacts:
    """The upload of the same series before the lab's kernel (discovered from apt)."""
    series = artifacts.release.split(".")[:2]
    offered = [r for r in available_releases("cloud-amd64") if r.split(".")[:2] == series]
    earlier = offered[: offered.index(artifacts.release)] if artifacts.release in offered else []
    if not earlier:
        pytest.fail(f"apt offers no release of the {'.'.join(series)} series before "
                    f"{artifacts.release}: {offered}")  # fmt: skip
    other = fetch(cache, earlier[-1])
    if not other.kallsyms.is_file():
        capture_kallsyms(other)
    return other


FIRST_BOOT = """
rc install apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb ./ksplice-update-{other}-{id}_*.deb
uname -r > "$OUT/uname"
cat /proc/cmdline > "$OUT/cmdline"
ls /sys/kernel/livepatch > "$OUT/live"
ls /usr/lib/ksplice-pkg/updates/{other}/{id} > "$OUT/files"
sync
"""

OTHER_KERNEL_BOOT = """
uname -r > "$OUT/uname"
cat /proc/cmdline > "$OUT/cmdline"
ls /sys/kernel/livepatch > "$OUT/live"
{ systemctl status ksplice-pkg.service; journalctl -b -o cat -u ksplice-pkg.service;
  ksplice-pkg view; } > "$OUT/unit" 2>&1 || true
"""


def test_update_for_another_kernel_is_applied_when_it_boots(
    artifacts: KernelArtifacts, other: KernelArtifacts, cache: Path, tmp_path: Path
) -> None:
    update = make_update(other, other.kallsyms, A_PATCH, tmp_path / "update", UPDATE_ID)
    assert update.manifest["kernel_release"] == other.release
    debs = build_debs(tmp_path / "own-debs")
    (hotpatch,) = build_packages(
        [update.tarball], PackageFormat.DEB, tmp_path / "hotpatch", maintainer=MAINTAINER
    )
    stand_in = stand_in_deb(f"linux-image-{other.release}", tmp_path / "stand-in")
    files = {p.name: p for p in [*debs, hotpatch, stand_in]}
    overlay = new_overlay(image_for(artifacts, cache), tmp_path / "disk.qcow2")
    fmt = {"other": other.release, "id": UPDATE_ID}

    first = run_userland(
        artifacts, cache, RUNTIME_PRELUDE + FIRST_BOOT.format(**fmt), files=files, overlay=overlay
    )
    assert first.status == 0, first.console[-4000:]
    out = first.outputs
    assert out["uname"].decode().strip() == artifacts.release
    assert status(out, "install") == 0, output(out, "install")
    # Installed where the runtime finds it, and the running (other) kernel left alone.
    assert "manifest.json" in out["files"].decode().split()
    assert out["live"].decode().split() == []
    assert not out["cmdline"].decode().startswith("ksplice: ")

    # The same disk, booted on the kernel the update was made for.
    second = run_userland(other, cache, OTHER_KERNEL_BOOT, overlay=overlay)
    assert second.status == 0, second.console[-4000:]
    assert second.crash_lines() == [], second.crash_lines()
    out = second.outputs
    assert out["uname"].decode().strip() == other.release
    unit = out["unit"].decode()
    assert out["live"].decode().split() == [f"ksplice_{UPDATE_ID}"], unit
    assert out["cmdline"].decode().startswith("ksplice: "), unit
