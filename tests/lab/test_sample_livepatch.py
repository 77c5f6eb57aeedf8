"""The kernel's sample livepatch, built against the fetched tree, in the real distro kernel."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from tests.lab.sample import SAMPLE_PATCHED_CMDLINE, load_sample_in_vm

TAINT_OOT_MODULE = 1 << 12
TAINT_LIVEPATCH = 1 << 15


def test_module_has_distro_vermagic(artifacts: KernelArtifacts, sample_ko: Path) -> None:
    info = subprocess.run(
        ["modinfo", "-F", "vermagic", sample_ko], capture_output=True, text=True, check=True
    )
    assert info.stdout.split()[0] == artifacts.release
    livepatch = subprocess.run(
        ["modinfo", "-F", "livepatch", sample_ko], capture_output=True, text=True, check=True
    )
    assert livepatch.stdout.strip() == "Y"


def test_sample_patches_and_unpatches_proc_cmdline(
    artifacts: KernelArtifacts, sample_ko: Path
) -> None:
    outcome = load_sample_in_vm(artifacts, sample_ko)
    assert outcome.before.strip() != SAMPLE_PATCHED_CMDLINE
    assert outcome.result.output_text("enabled").strip() == "1"
    assert outcome.patched.strip() == SAMPLE_PATCHED_CMDLINE
    assert outcome.restored == outcome.before
    assert outcome.tainted & TAINT_LIVEPATCH
    assert outcome.tainted & TAINT_OOT_MODULE
    assert outcome.result.crash_lines() == []
    assert outcome.ok
