"""--prebuild: the whole kernel built once with the differ's flags."""

from __future__ import annotations

from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.compile.objects import PREBUILT_STAMP, SECTION_FLAGS
from ksplice_pkg.log import step
from ksplice_pkg.run import run


def prebuild(tree: PreparedTree, jobs: int) -> None:
    """Build the whole kernel once with the differ's flags: later creates then compile only what
    a patch needs, and header changes find their users in kbuild's dependency records."""
    with step(f"prebuilding vmlinux of {tree.source} ({SECTION_FLAGS})"):
        run([*tree.make_args(jobs, SECTION_FLAGS), "vmlinux"], timeout=6 * 3600)
    (tree.objdir / PREBUILT_STAMP).write_text(tree.release + "\n")
