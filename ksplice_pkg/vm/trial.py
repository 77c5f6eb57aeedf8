"""Trying an update in the real target kernel: behaviour before loading, after the patching
transition, and after disabling and removing it again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.vm.guest import GuestResult, run_script


@dataclass(frozen=True)
class Trial:
    before: str
    patched: str
    restored: str
    result: GuestResult


def trial_script(ko_name: str, patch_name: str, check: str) -> str:
    return f"""
set -e
check() {{
{check}
}}
check > "$OUT/before" 2>&1
insmod {ko_name}
klp_wait_transition {patch_name}
check > "$OUT/patched" 2>&1
klp_disable {patch_name}
rmmod {patch_name}
check > "$OUT/restored" 2>&1
"""


def try_update(
    kernel: Path,
    modules_dir: Path,
    ko: Path,
    patch_name: str,
    check: str,
    files: dict[str, Path] | None = None,
) -> Trial:
    """Run the shell snippet `check` at each stage; a failing stage or a crash is an error."""
    result = run_script(
        kernel,
        modules_dir,
        trial_script(ko.name, patch_name, check),
        files={ko.name: ko, **(files or {})},
    )
    if result.status != 0:
        raise KspliceError(
            f"trying {ko.name} in the VM failed (status {result.status}); console:\n"
            + result.console[-3000:]
        )
    if crash := result.crash_lines():
        raise KspliceError(f"trying {ko.name} in the VM hit a kernel problem: {crash[0]}")
    return Trial(
        before=result.output_text("before"),
        patched=result.output_text("patched"),
        restored=result.output_text("restored"),
        result=result,
    )
