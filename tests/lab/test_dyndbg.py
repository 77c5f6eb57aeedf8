"""Dynamic debug (pr_debug) sites in patched code, on the real kernel: a new site before others
in the same file renumbers GCC's descriptors (__UNIQUE_ID_ddebug<N>) without making anything
else look changed, and the new site travels with the update: dynamic debug lists it under the
update's module and prints it once enabled."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.vm.guest import run_script
from tests.lab.updates import build_update

# find_symbol() runs for every symbol a module being loaded imports. Its new pr_debug comes
# before the file's other sites, so every later descriptor's number moves.
FIND_SYMBOL_DEBUG_PATCH = """\
--- a/kernel/module/main.c
+++ b/kernel/module/main.c
@@ -309,6 +309,7 @@
 
 \tmodule_assert_mutex_or_preempt();
 
+\tpr_debug("ksplice: looking up %s\\n", fsa->name);
 \tfor (i = 0; i < ARRAY_SIZE(arr); i++)
 \t\tif (find_exported_symbol_in_section(&arr[i], NULL, fsa))
 \t\t\treturn true;
"""

SCRIPT = """
set -e
insmod ksplice_ddbg.ko
klp_wait_transition ksplice_ddbg
mount -t debugfs none /sys/kernel/debug
grep ksplice_ddbg /sys/kernel/debug/dynamic_debug/control > "$OUT/control"
echo 'module ksplice_ddbg +p' > /sys/kernel/debug/dynamic_debug/control
insmod crc7.ko
dmesg | grep 'ksplice: looking up' > "$OUT/messages" || true
klp_disable ksplice_ddbg
rmmod ksplice_ddbg
"""


def test_new_pr_debug_site_travels_with_the_update(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, FIND_SYMBOL_DEBUG_PATCH, tmp_path, "ddbg")
    # Only find_symbol changed: the renumbered descriptors of later sites are no change.
    assert update.patched_names == ["find_symbol"]
    assert update.manifest["new_functions"] == []
    crc7 = artifacts.modules_dir / "kernel" / "lib" / "crc7.ko"
    result = run_script(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        SCRIPT,
        files={update.ko.name: update.ko, "crc7.ko": crc7},
    )
    assert result.status == 0, result.console[-3000:]
    assert result.crash_lines() == []
    control = result.output_text("control")
    assert "[ksplice_ddbg]" in control and "find_symbol" in control
    # crc7 imports at least __fentry__: the new site printed for each import looked up.
    assert "ksplice: looking up" in result.output_text("messages")
