"""The built-in example, run by `ksplice-pkg demo`.

`run_demo` builds a real update with `create` from examples/proc-cmdline.patch against the
fetched Debian kernel source, boots the Debian kernel in qemu, loads it, sees /proc/cmdline
change, disables and removes it and sees /proc/cmdline restored.

The kernel's own samples/livepatch/livepatch-sample.c, built out of tree against the same tree,
is kept as the lab's reference check (tests/lab/test_sample_livepatch.py).
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ksplice_pkg.build.kbuild import PreparedTree, build_external_module, default_jobs, prepare_tree
from ksplice_pkg.distro.debian import KernelArtifacts, fetch
from ksplice_pkg.errors import InternalError, KspliceError
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


def example_patch() -> str:
    return (resources.files("ksplice_pkg") / "examples" / "proc-cmdline.patch").read_text()


def header_example_patch() -> str:
    """A change to a static inline of a header most of the kernel includes (benchmark)."""
    return (resources.files("ksplice_pkg") / "examples" / "nr-threads-header.patch").read_text()


def run_demo(cache: Path, release: str | None, jobs: int | None, output_dir: Path) -> Path:
    """Build the example update for the distro kernel with `create` and prove it in the VM."""
    from ksplice_pkg.config import create_config
    from ksplice_pkg.create import create
    from ksplice_pkg.target.files import resolve_target
    from ksplice_pkg.vm.capture import capture_kallsyms
    from ksplice_pkg.vm.trial import try_update

    artifacts = fetch(cache, release)
    if not artifacts.kallsyms.is_file():
        capture_kallsyms(artifacts)
    target = resolve_target(
        artifacts.target_dir,
        system_map=artifacts.kallsyms,
        kconfig=None,
        symvers=None,
        binary=artifacts.vmlinuz,
        release=artifacts.release,
    )
    patch = example_patch()
    cfg = create_config(
        artifacts.source_tree,
        target,
        cache=cache,
        patch=patch,
        description=patch.splitlines()[0],
        jobs=jobs,
        output_dir=output_dir,
    )
    update_id = cfg.id
    tarball = create(cfg)
    ko = artifacts.root / "demo" / f"ksplice_{update_id}.ko"
    ko.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(f"ksplice-{update_id}/ksplice_{update_id}.ko")
        if member is None:
            raise InternalError(f"{tarball} holds no ksplice_{update_id}.ko")
        ko.write_bytes(member.read())
    with step(f"booting {artifacts.release} in qemu and trying {ko.name}"):
        trial = try_update(
            artifacts.vmlinuz,
            artifacts.modules_dir,
            ko,
            f"ksplice_{update_id}",
            "cat /proc/cmdline",
        )
    logger.info("/proc/cmdline before:   %s", trial.before.strip())
    logger.info("/proc/cmdline patched:  %s", trial.patched.strip())
    logger.info("/proc/cmdline restored: %s", trial.restored.strip())
    if trial.patched != "ksplice: " + trial.before or trial.restored != trial.before:
        raise KspliceError("the example update did not change /proc/cmdline as expected")
    logger.info("the update loaded, took effect and was undone in %s", artifacts.release)
    return tarball
