"""The built-in example: the kernel's own sample livepatch, loaded into the real distro kernel.

This proves the whole lab end to end: fetched artifacts, a tree prepared like the distro's, an
out-of-tree livepatch module with the distro vermagic, and a boot of the real kernel that loads
it, sees /proc/cmdline change, disables and removes it, and sees /proc/cmdline restored.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts, fetch
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.kbuild import PreparedTree, build_external_module, default_jobs, prepare_tree
from ksplice_pkg.log import logger, step
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


def prepared_tree(artifacts: KernelArtifacts, jobs: int | None = None) -> PreparedTree:
    return prepare_tree(
        artifacts.source_tree,
        artifacts.root / "obj",
        config=artifacts.config,
        symvers=artifacts.symvers,
        release=artifacts.release,
        jobs=jobs or default_jobs(),
    )


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


def run_demo(cache: Path, release: str | None, jobs: int | None) -> None:
    artifacts = fetch(cache, release)
    tree = prepared_tree(artifacts, jobs)
    with step("building samples/livepatch/livepatch-sample.c against the distro tree"):
        ko = build_sample_livepatch(tree, artifacts.root / "demo" / "sample", jobs)
    with step(f"booting {artifacts.release} in qemu and loading {ko.name}"):
        outcome = load_sample_in_vm(artifacts, ko)
    logger.info("/proc/cmdline before:   %s", outcome.before.strip())
    logger.info("/proc/cmdline patched:  %s", outcome.patched.strip())
    logger.info("/proc/cmdline restored: %s", outcome.restored.strip())
    if not outcome.ok:
        raise KspliceError("the sample livepatch did not change /proc/cmdline as expected")
    logger.info("the sample livepatch loaded, took effect, and was undone in %s", artifacts.release)
