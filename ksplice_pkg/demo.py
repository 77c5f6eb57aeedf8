"""The built-in example, run by `ksplice-pkg demo`.

`run_demo` builds a real update with `create` from examples/proc-cmdline.patch against the
fetched Debian kernel source, boots the Debian kernel in qemu, loads it, sees /proc/cmdline
change, disables and removes it and sees /proc/cmdline restored.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ksplice_pkg.config import create_options
from ksplice_pkg.create import create, gather
from ksplice_pkg.distro.debian import fetch
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger, step
from ksplice_pkg.tarball import read_tarball
from ksplice_pkg.target.files import TargetSpec
from ksplice_pkg.vm.capture import capture_kallsyms
from ksplice_pkg.vm.trial import try_update


def example_patch() -> bytes:
    return (resources.files("ksplice_pkg") / "examples" / "proc-cmdline.patch").read_bytes()


def run_demo(cache: Path, release: str | None, jobs: int | None, output_dir: Path) -> Path:
    """Build the example update for the distro kernel with `create` and prove it in the VM."""
    artifacts = fetch(cache, release)
    if not artifacts.kallsyms.is_file():
        capture_kallsyms(artifacts)
    target = TargetSpec(
        artifacts.target_dir,
        system_map=artifacts.kallsyms,
        binary=artifacts.vmlinuz,
        release=artifacts.release,
    )
    patch = example_patch()
    options = create_options(
        artifacts.source_tree,
        target,
        cache=cache,
        patch=patch,
        description=patch.splitlines()[0].decode(),
        jobs=jobs,
        output_dir=output_dir,
    )
    tarball = create(gather(options))
    update = read_tarball(tarball)
    ko = artifacts.root / "demo" / update.manifest.module
    ko.parent.mkdir(parents=True, exist_ok=True)
    ko.write_bytes(update.module)
    with step(f"booting {artifacts.release} in qemu and trying {ko.name}"):
        trial = try_update(
            artifacts.vmlinuz,
            artifacts.modules_dir,
            ko,
            update.manifest.module_name,
            "cat /proc/cmdline",
        )
    logger.info("/proc/cmdline before:   %s", trial.before.strip())
    logger.info("/proc/cmdline patched:  %s", trial.patched.strip())
    logger.info("/proc/cmdline restored: %s", trial.restored.strip())
    if trial.patched != "ksplice: " + trial.before or trial.restored != trial.before:
        raise KspliceError("the example update did not change /proc/cmdline as expected")
    logger.info("the update loaded, took effect and was undone in %s", artifacts.release)
    return tarball
