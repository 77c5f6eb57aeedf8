"""Booting a kernel under qemu with a console log, a status port and virtio disks.

The guest reports its exit status on the second serial port, away from the console's noise. A
kernel panic (and an oops, with oops=panic) restarts the machine, which -no-reboot turns into qemu
exiting without a status: that is how a crash becomes a failure instead of a hang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import CommandTimeoutError, VmError
from ksplice_pkg.run import run

STATUS_PREFIX = "ksplice-lab-status"
# KVM is present on these machines but nested virtualisation hangs or fails: TCG is reliable.
_ACCEL = "tcg"
_CRASH_PATTERNS = re.compile(
    r"Kernel panic - not syncing|BUG: |Oops: |general protection fault|"
    r"WARNING: CPU: |Call Trace:|RIP: [0-9a-f]{4}:"
)


@dataclass(frozen=True)
class Disk:
    path: Path
    serial: str  # the guest finds it under /sys/block/vd*/serial
    fmt: str = "raw"
    readonly: bool = False
    snapshot: bool = False  # writes are discarded when qemu exits


@dataclass(frozen=True)
class BootResult:
    status: int | None  # what the guest reported; None when it never got that far
    console: str

    def crash_lines(self) -> list[str]:
        """Console lines that show a kernel crash or warning."""
        return [ln for ln in self.console.splitlines() if _CRASH_PATTERNS.search(ln)]


def console_tail(console: str, lines: int = 40) -> str:
    return "\n".join("    " + ln for ln in console.rstrip().splitlines()[-lines:])


def boot(
    kernel: Path,
    initrd: Path,
    append: str,
    workdir: Path,
    *,
    disks: tuple[Disk, ...] = (),
    timeout: float = 300,
    memory_mb: int = 1024,
    cpus: int = 2,
) -> BootResult:
    """Boot kernel+initrd, wait for the machine to power off, return what it reported."""
    console = workdir / "console.log"
    status = workdir / "status.log"
    for f in (console, status):
        f.unlink(missing_ok=True)
    cmd: list[str] = [
        "qemu-system-x86_64",
        "-accel",
        _ACCEL,
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        f"console=ttyS0 panic=-1 oops=panic {append}",
        "-serial",
        f"file:{console}",
        "-serial",
        f"file:{status}",
    ]
    for i, disk in enumerate(disks):
        opts = f"if=none,id=disk{i},file={disk.path},format={disk.fmt}"
        if disk.readonly:
            opts += ",readonly=on"
        if disk.snapshot:
            opts += ",snapshot=on"
        cmd += ["-drive", opts, "-device", f"virtio-blk-pci,drive=disk{i},serial={disk.serial}"]
    try:
        run(cmd, timeout=timeout)
    except CommandTimeoutError as e:
        text = console.read_text(errors="replace") if console.exists() else ""
        raise VmError(
            f"the VM did not power off within {timeout:.0f} s; its console ended with:\n"
            + console_tail(text),
            hint="a hung guest script or a kernel stall; the full console is in " + str(console),
        ) from e
    text = console.read_text(errors="replace") if console.exists() else ""
    reported: int | None = None
    if status.exists():
        m = re.search(rf"{STATUS_PREFIX} (\d+)", status.read_text(errors="replace"))
        if m:
            reported = int(m[1])
    return BootResult(status=reported, console=text)
