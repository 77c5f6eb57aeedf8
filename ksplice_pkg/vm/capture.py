"""What the lab learns from booting the target kernel: its real symbol map and build-id.

Debian's image package ships a stub System.map; the booted kernel's /proc/kallsyms is the real one
(with KASLR its addresses are shifted by one constant, which `_text` reveals).
"""

from __future__ import annotations

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import step
from ksplice_pkg.runtime.kernel import parse_build_id
from ksplice_pkg.vm.guest import run_script

_CAPTURE_SCRIPT = """
set -e
cat /proc/kallsyms > "$OUT/kallsyms"
cat /sys/kernel/notes > "$OUT/notes"
"""


def capture_kallsyms(artifacts: KernelArtifacts) -> tuple[str, str | None]:
    """Boot the kernel, save its /proc/kallsyms beside its target files; return it and build-id."""
    with step(f"booting {artifacts.release} to read /proc/kallsyms"):
        result = run_script(artifacts.vmlinuz, artifacts.modules_dir, _CAPTURE_SCRIPT)
    if result.status != 0 or "kallsyms" not in result.outputs:
        raise KspliceError(f"reading /proc/kallsyms in the VM failed (status {result.status})")
    kallsyms = result.output_text("kallsyms")
    if " _text\n" not in kallsyms:
        raise KspliceError("the captured /proc/kallsyms has no _text: it was read without root?")
    artifacts.kallsyms.write_text(kallsyms)
    # The same parser as the runtime's, which reads the running kernel's own notes.
    build_id = parse_build_id(result.outputs.get("notes", b""))
    if build_id:
        (artifacts.target_dir / "build-id").write_text(build_id + "\n")
    return kallsyms, build_id
