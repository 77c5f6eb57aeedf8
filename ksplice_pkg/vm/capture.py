"""What the lab learns from booting the target kernel: its real symbol map and build-id.

Debian's image package ships a stub System.map; the booted kernel's /proc/kallsyms is the real one
(with KASLR its addresses are shifted by one constant, which `_text` reveals).
"""

from __future__ import annotations

import struct

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import step
from ksplice_pkg.vm.guest import run_script

NT_GNU_BUILD_ID = 3

_CAPTURE_SCRIPT = """
set -e
cat /proc/kallsyms > "$OUT/kallsyms"
cat /sys/kernel/notes > "$OUT/notes"
"""


def gnu_build_id(notes: bytes) -> str | None:
    """The GNU build-id in a sequence of ELF notes (such as /sys/kernel/notes), as hex."""
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, offset)
        offset += 12
        name = notes[offset : offset + namesz].rstrip(b"\0")
        offset += (namesz + 3) & ~3
        desc = notes[offset : offset + descsz]
        offset += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name == b"GNU":
            return desc.hex()
    return None


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
    build_id = gnu_build_id(result.outputs.get("notes", b""))
    if build_id:
        (artifacts.target_dir / "build-id").write_text(build_id + "\n")
    return kallsyms, build_id
