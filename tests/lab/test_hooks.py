"""The patch author's hooks (<ksplice/hooks.h>) on the real kernel: a post-patch callback that
sets up data when the update is applied, and a shadow variable that adds a field (a read count)
to an existing structure (the /proc/cmdline inode), freed again by a post-unpatch callback."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.vm.guest import run_script
from tests.lab.updates import build_update

HOOKS_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -3,9 +3,32 @@
 #include <linux/init.h>
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
+#include <ksplice/hooks.h>
+
+/* Shadow variable id: a read count attached to the /proc/cmdline inode. */
+#define CMDLINE_READS 0x6b73706cUL
+
+static int cmdline_hooked;
+
+static void cmdline_fixup(void)
+{
+\tcmdline_hooked = 1;
+}
+KSPLICE_POST_PATCH(cmdline_fixup);
+
+static void cmdline_forget(void)
+{
+\tKSPLICE_SHADOW_FREE_ALL(CMDLINE_READS);
+}
+KSPLICE_POST_UNPATCH(cmdline_forget);
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+\tint *reads = KSPLICE_SHADOW_GET_OR_ALLOC(file_inode(m->file), CMDLINE_READS, int);
+
+\tif (reads)
+\t\t(*reads)++;
+\tseq_printf(m, "%s%d: ", cmdline_hooked ? "hooked " : "", reads ? *reads : -1);
 \tseq_puts(m, saved_command_line);
 \tseq_putc(m, '\\n');
 \treturn 0;
"""

SCRIPT = """
set -e
cat /proc/cmdline > "$OUT/before"
for round in 1 2; do
    insmod ksplice_hooks.ko
    klp_wait_transition ksplice_hooks
    cat /proc/cmdline > "$OUT/read-$round-1"
    cat /proc/cmdline > "$OUT/read-$round-2"
    klp_disable ksplice_hooks
    rmmod ksplice_hooks
    cat /proc/cmdline > "$OUT/after-$round"
done
"""


def test_callback_and_shadow_variable(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(artifacts, kallsyms, HOOKS_PATCH, tmp_path, "hooks")
    assert update.patched_names == ["cmdline_proc_show"]
    result = run_script(
        artifacts.vmlinuz, artifacts.modules_dir, SCRIPT, files={update.ko.name: update.ko}
    )
    assert result.status == 0, result.console[-3000:]
    assert result.crash_lines() == []
    before = result.output_text("before")
    for round_ in (1, 2):
        # The post-patch callback ran; the shadow count grows per read of the same inode...
        assert result.output_text(f"read-{round_}-1") == "hooked 1: " + before
        assert result.output_text(f"read-{round_}-2") == "hooked 2: " + before
        assert result.output_text(f"after-{round_}") == before
    # ... and starts again at 1 in the second round: the post-unpatch callback freed it.
