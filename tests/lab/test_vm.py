"""The VM runner itself: statuses, files, and crashes turned into failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.compile.kbuild import PreparedTree, build_external_module
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import VmError
from ksplice_pkg.vm.guest import run_script

# A module whose init dereferences a NULL pointer: the oops a broken update would cause.
OOPS_MODULE = r"""
#include <linux/module.h>
#include <linux/init.h>

static int *volatile target;

static int __init oops_init(void)
{
	return *target;
}

module_init(oops_init);
MODULE_LICENSE("GPL");
"""


def test_status_files_and_kernel(artifacts: KernelArtifacts, tmp_path: Path) -> None:
    given = tmp_path / "given.txt"
    given.write_text("from the host\n")
    result = run_script(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        'uname -r > "$OUT/uname"; cat given.txt > "$OUT/copy"; exit 3',
        files={"given.txt": given},
    )
    assert result.status == 3
    assert result.output_text("uname").strip() == artifacts.release
    assert result.output_text("copy") == "from the host\n"


def test_guest_oops_fails_the_run(
    artifacts: KernelArtifacts, tree: PreparedTree, tmp_path: Path
) -> None:
    (tmp_path / "oops.c").write_text(OOPS_MODULE)
    (tmp_path / "Kbuild").write_text("obj-m := oops.o\n")
    (ko,) = build_external_module(tree, tmp_path, 2)
    with pytest.raises(VmError) as e:
        run_script(
            artifacts.vmlinuz,
            artifacts.modules_dir,
            "insmod oops.ko; echo survived > $OUT/survived",
            files={"oops.ko": ko},
        )
    assert "BUG: kernel NULL pointer dereference" in str(e.value)


def test_guest_panic_fails_the_run(artifacts: KernelArtifacts) -> None:
    with pytest.raises(VmError) as e:
        run_script(artifacts.vmlinuz, artifacts.modules_dir, "echo c > /proc/sysrq-trigger")
    # The kernel's own words, from the console the error carries.
    assert "Kernel panic" in e.value.message


def test_hung_guest_is_killed(artifacts: KernelArtifacts) -> None:
    with pytest.raises(VmError, match=r"\b20 s\b"):  # the time it was given
        run_script(artifacts.vmlinuz, artifacts.modules_dir, "sleep 600", timeout=20)
