"""Header changes without a full build, on the real kernel: a changed static inline of a header
included by thousands of units patches exactly the functions that inlined it, across units, and
the update loads; a changed struct layout is refused naming the type."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import RefusedError
from tests.lab.kernel import header_example_patch
from tests.lab.updates import build_update, try_update

# A new member of struct signal_struct changes the layout every user of it compiled against.
LAYOUT_PATCH = """\
--- a/include/linux/sched/signal.h
+++ b/include/linux/sched/signal.h
@@ -94,6 +94,7 @@
 struct signal_struct {
 	refcount_t		sigcnt;
 	atomic_t		live;
+	int			ksplice_test;
 	int			nr_threads;
 	int			quick_threads;
 	struct list_head	thread_head;
"""


def test_changed_inline_patches_every_function_that_inlined_it(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    update = build_update(
        artifacts, kallsyms, header_example_patch().decode(), tmp_path, "nrthreads"
    )
    # The example changes get_nr_threads(), a static inline of include/linux/sched/signal.h
    # (included by most of the kernel) that /proc/<pid>/status prints as "Threads:".
    # Its users in fs/proc/array.c and fs/proc/base.c, each a unit of its own.
    assert {"proc_pid_status", "do_task_stat", "proc_task_getattr"} <= set(update.patched_names)
    before, patched, restored, _ = try_update(
        artifacts, update, "grep '^Threads:' /proc/self/status"
    )
    assert before.split() == ["Threads:", "1"]
    assert patched.split() == ["Threads:", "1001"]
    assert restored == before


def test_changed_struct_layout_is_refused_naming_it(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    with pytest.raises(RefusedError) as e:
        build_update(artifacts, kallsyms, LAYOUT_PATCH, tmp_path / "out", "layout")
    assert "struct signal_struct" in e.value.message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
