"""--runtime-only on the real kernel: a patch that changes both an __init function and the
runtime code beside it is refused by default; with the option the update carries the runtime
change, says what it left out, and loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.vm.trial import try_update
from tests.lab.updates import build_update

INIT_AND_RUNTIME_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,14 +6,15 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "runtime-only: ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\\n');
 	return 0;
 }
 
 static int __init proc_cmdline_init(void)
 {
-	proc_create_single("cmdline", 0, NULL, cmdline_proc_show);
+	proc_create_single("cmdline", 0444, NULL, cmdline_proc_show);
 	return 0;
 }
 fs_initcall(proc_cmdline_init);
"""


def test_runtime_only_leaves_the_init_change_out(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    def config(runtime_only: bool) -> Path:
        return build_update(
            artifacts,
            kallsyms,
            INIT_AND_RUNTIME_PATCH,
            tmp_path,
            "rtonly",
            runtime_only=runtime_only,
        ).tarball

    with pytest.raises(RefusedError) as e:
        config(runtime_only=False)
    assert "proc_cmdline_init" in e.value.message
    assert list(tmp_path.iterdir()) == []
    config(runtime_only=True)
    top = tmp_path / "ksplice-rtonly"
    manifest = json.loads((top / "manifest.json").read_text())
    assert [p["name"] for p in manifest["patched"]] == ["cmdline_proc_show"]
    assert len(manifest["left_out"]) == 1 and "proc_cmdline_init" in manifest["left_out"][0]
    trial = try_update(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        top / manifest["module"],
        "ksplice_rtonly",
        "cat /proc/cmdline",
    )
    assert trial.patched == "runtime-only: " + trial.before
    assert trial.restored == trial.before
