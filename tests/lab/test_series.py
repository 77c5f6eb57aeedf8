"""Stacked (--series) and cumulative (--replace) updates, and exports in a namespace, built by
create from the real source and loaded in the real kernel in both orders that make sense."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ksplice_pkg.config import create_options
from ksplice_pkg.create import gather
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.run import run_text
from ksplice_pkg.target.files import TargetSpec
from ksplice_pkg.vm.guest import run_script
from tests.lab.updates import build_update


def _cmdline_patch(old: str, new: str) -> str:
    """A change of cmdline_proc_show's output: `old` is the line it replaces (the tree's own
    line, or the one an earlier update of the series wrote)."""
    return (
        "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -6,6 +6,6 @@\n \n"
        " static int cmdline_proc_show(struct seq_file *m, void *v)\n {\n"
        f"-\t{old}\n+\t{new}\n"
        " \tseq_putc(m, '\\n');\n \treturn 0;\n"
    )


ORIGINAL = "seq_puts(m, saved_command_line);"
A_LINE = 'seq_printf(m, "A: %s", saved_command_line);'
B_LINE = 'seq_printf(m, "B: %s", saved_command_line);'
C_LINE = 'seq_printf(m, "C: %s", saved_command_line);'


def _build(
    artifacts: KernelArtifacts,
    kallsyms: Path,
    out: Path,
    update_id: str,
    patch: str,
    **options: Any,
) -> tuple[Path, dict[str, object], Path]:
    built = build_update(
        artifacts, kallsyms, patch, out, update_id, description=f"series test {update_id}",
        **options,
    )  # fmt: skip
    return built.tarball, built.manifest, built.ko


@pytest.fixture(scope="module")
def updates(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, object], Path]]:
    out = tmp_path_factory.mktemp("series")
    a = _build(artifacts, kallsyms, out, "sera", _cmdline_patch(ORIGINAL, A_LINE))
    # B is made against the tree with A applied: its patch replaces A's line.
    b = _build(artifacts, kallsyms, out, "serb", _cmdline_patch(A_LINE, B_LINE), series=(a[0],))
    c = _build(artifacts, kallsyms, out, "serc", _cmdline_patch(ORIGINAL, C_LINE), replace=True)
    return {"a": a, "b": b, "c": c}


def test_manifests_say_the_stack(updates: dict[str, tuple[Path, dict[str, object], Path]]) -> None:
    assert updates["a"][1]["depends_on"] == [] and updates["a"][1]["replace"] is False
    assert updates["b"][1]["depends_on"] == ["sera"]
    assert updates["c"][1]["replace"] is True
    b_patched = updates["b"][1]["patched"]
    assert isinstance(b_patched, list)
    assert [p["name"] for p in b_patched] == ["cmdline_proc_show"]


STACK_SCRIPT = """
set -e
cat /proc/cmdline > "$OUT/0-none"
insmod ksplice_sera.ko && klp_wait_transition ksplice_sera
cat /proc/cmdline > "$OUT/1-a"
insmod ksplice_serb.ko && klp_wait_transition ksplice_serb
cat /proc/cmdline > "$OUT/2-ab"
klp_disable ksplice_serb && rmmod ksplice_serb
cat /proc/cmdline > "$OUT/3-a"
insmod ksplice_serc.ko && klp_wait_transition ksplice_serc
cat /proc/cmdline > "$OUT/4-c"
# The cumulative update disabled A once its transition was done: A's directory goes away.
t=0; while [ -d /sys/kernel/livepatch/ksplice_sera ] && [ $t -lt 300 ]; do
    sleep 0.1; t=$((t + 1)); done
ls /sys/kernel/livepatch > "$OUT/5-left"
rmmod ksplice_sera
klp_disable ksplice_serc && rmmod ksplice_serc
cat /proc/cmdline > "$OUT/6-none"
"""


def test_stack_and_cumulative_update_in_the_kernel(
    artifacts: KernelArtifacts, updates: dict[str, tuple[Path, dict[str, object], Path]]
) -> None:
    files = {ko.name: ko for _, _, ko in updates.values()}
    result = run_script(artifacts.vmlinuz, artifacts.modules_dir, STACK_SCRIPT, files=files)
    assert result.status == 0, result.console[-3000:]
    assert result.crash_lines() == []
    original = result.output_text("0-none")
    assert result.output_text("1-a") == "A: " + original
    assert result.output_text("2-ab") == "B: " + original
    assert result.output_text("3-a") == "A: " + original
    assert result.output_text("4-c") == "C: " + original
    assert result.output_text("5-left").split() == ["ksplice_serc"]
    assert result.output_text("6-none") == original


def test_series_of_another_kernel_is_refused(
    artifacts: KernelArtifacts,
    kallsyms: Path,
    tmp_path: Path,
    updates: dict[str, tuple[Path, dict[str, object], Path]],
) -> None:
    options = create_options(
        artifacts.source_tree,
        TargetSpec(
            artifacts.target_dir,
            system_map=kallsyms,
            binary=None,
            release="6.1.0-0-other-amd64",
        ),
        cache=cache_dir(),
        patch=_cmdline_patch(A_LINE, B_LINE).encode(),
        series=(updates["a"][0],),
    )
    with pytest.raises(KspliceError) as e:
        gather(options)
    assert artifacts.release in e.value.message and "6.1.0-0-other-amd64" in e.value.message


# crypto_cipher_setkey is exported into the CRYPTO_INTERNAL namespace: the module links only
# when it imports that namespace.
NAMESPACE_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -3,9 +3,11 @@
 #include <linux/init.h>
 #include <linux/proc_fs.h>
 #include <linux/seq_file.h>
+#include <crypto/internal/cipher.h>
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_printf(m, "%ps: ", crypto_cipher_setkey);
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\\n');
 	return 0;
"""


def test_export_in_a_namespace_links_and_loads(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    _, manifest, ko = _build(artifacts, kallsyms, tmp_path, "nsimport", NAMESPACE_PATCH)
    imports = run_text(["modinfo", "-F", "import_ns", ko]).split()
    assert imports == ["CRYPTO_INTERNAL"]
    script = """
set -e
cat /proc/cmdline > "$OUT/before"
insmod ksplice_nsimport.ko && klp_wait_transition ksplice_nsimport
cat /proc/cmdline > "$OUT/patched"
"""
    result = run_script(artifacts.vmlinuz, artifacts.modules_dir, script, files={ko.name: ko})
    assert result.status == 0, result.console[-3000:]
    # %ps prints the symbol's name: the reference resolved to the namespaced export.
    expected = "crypto_cipher_setkey: " + result.output_text("before")
    assert result.output_text("patched") == expected
    assert manifest["patched"] == [{"object": "vmlinux", "name": "cmdline_proc_show", "sympos": 0}]
