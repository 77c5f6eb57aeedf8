"""The kernel's own samples/livepatch/livepatch-sample.c, built out of tree against the fetched
tree and loaded in the fetched kernel: the lab's reference check that kbuild, the module and the
VM work before any of ksplice-pkg's own updates is judged (test_sample_livepatch.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.compile.kbuild import PreparedTree, build_external_module, default_jobs
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.vm.guest import GuestResult, run_script

SAMPLE_PATCHED_CMDLINE = "this has been live patched"

# Loads the sample, records /proc/cmdline at each stage into $OUT for the host to check.
SAMPLE_SCRIPT = """
set -e
cat /proc/cmdline > "$OUT/before"
insmod livepatch-sample.ko
klp_wait_transition livepatch_sample
cat /sys/kernel/livepatch/livepatch_sample/enabled > "$OUT/enabled"
cat /proc/cmdline > "$OUT/patched"
klp_disable livepatch_sample
rmmod livepatch_sample
cat /proc/cmdline > "$OUT/restored"
cat /proc/sys/kernel/tainted > "$OUT/tainted"
"""


def build_sample_livepatch(tree: PreparedTree, workdir: Path, jobs: int | None = None) -> Path:
    """Build samples/livepatch/livepatch-sample.c of the tree as an out-of-tree module."""
    source = tree.source / "samples" / "livepatch" / "livepatch-sample.c"
    if not source.is_file():
        raise KspliceError(f"{source} is missing: the tree has no livepatch sample")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copy2(source, workdir / source.name)
    (workdir / "Kbuild").write_text("obj-m := livepatch-sample.o\n")
    (ko,) = build_external_module(tree, workdir, jobs or default_jobs())
    return ko


@dataclass(frozen=True)
class SampleOutcome:
    before: str
    patched: str
    restored: str
    tainted: int
    result: GuestResult

    @property
    def ok(self) -> bool:
        return (
            self.patched.strip() == SAMPLE_PATCHED_CMDLINE
            and self.before == self.restored
            and self.before.strip() != SAMPLE_PATCHED_CMDLINE
        )


def load_sample_in_vm(artifacts: KernelArtifacts, ko: Path) -> SampleOutcome:
    result = run_script(
        artifacts.vmlinuz, artifacts.modules_dir, SAMPLE_SCRIPT, files={ko.name: ko}
    )
    if result.status != 0:
        raise KspliceError(
            f"the sample script failed in the VM (status {result.status}); console:\n"
            + result.console[-3000:]
        )
    return SampleOutcome(
        before=result.output_text("before"),
        patched=result.output_text("patched"),
        restored=result.output_text("restored"),
        tainted=int(result.output_text("tainted")),
        result=result,
    )
