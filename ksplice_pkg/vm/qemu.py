"""Booting a kernel under qemu with a console log, a status port and virtio disks.

The guest reports its exit status on the second serial port, away from the console's noise. A
kernel panic (and an oops, with oops=panic) restarts the machine, which -no-reboot turns into qemu
exiting without a status: that is how a crash becomes a failure instead of a hang.

A power cut is qemu killed (SIGKILL) from the host the moment a marker the guest prints shows
on the console: the guest's memory is lost (its page cache, /run), what it had written to its
disks stays, as on a machine whose power fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import CommandTimeoutError, VmError
from ksplice_pkg.run import run

STATUS_PREFIX = "ksplice-lab-status"
# KVM is present on these machines but nested virtualisation hangs or fails: TCG is reliable.
_ACCEL = "tcg"
# The console shows warnings (level 4) and above: "WARNING: CPU:" and the call traces of a
# warning, a soft lockup or a stall are printed at that level, and loglevel=4 hid them, so a
# test's "no crash lines" could not see a WARN the update caused. Notices stay off (quiet).
CONSOLE_VERBOSITY = "quiet loglevel=5"
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
    power_cut: bool = False  # qemu was killed at the cut_power_at marker

    def crash_lines(self) -> list[str]:
        """Console lines that show a kernel crash or warning."""
        return [ln for ln in self.console.splitlines() if _CRASH_PATTERNS.search(ln)]


def console_tail(console: str, lines: int = 40) -> str:
    return "\n".join("    " + ln for ln in console.rstrip().splitlines()[-lines:])


def console_story(console: str, before: int = 15, lines: int = 40) -> str:
    """The console's tail, and where the first crash line (a lockup, a BUG, a warning) began.

    A stalled guest repeats its lockup lines until the timeout: the tail alone shows only the
    repetition, not what the guest was doing when it began."""
    all_lines = console.rstrip().splitlines()
    first = next((i for i, ln in enumerate(all_lines) if _CRASH_PATTERNS.search(ln)), None)
    if first is None or first >= len(all_lines) - lines:
        return console_tail(console, lines)
    start = max(0, first - before)
    # The head stops where the tail begins: no line is shown twice.
    stop = min(first + before, len(all_lines) - lines)
    head = "\n".join("    " + ln for ln in all_lines[start:stop])
    return f"{head}\n    [...]\n{console_tail(console, lines)}"


def keep_console(console: Path) -> Path | None:
    """A copy of the console out of the boot's work directory, which its caller may delete."""
    if not console.exists():
        return None
    kept = Path(tempfile.mkdtemp(prefix="ksplice-lab-console-")) / "console.log"
    shutil.copy2(console, kept)
    return kept


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
    cut_power_at: str | None = None,
) -> BootResult:
    """Boot kernel+initrd, wait for the machine to power off, return what it reported.
    cut_power_at: kill qemu as soon as this text shows on the console (a power cut)."""
    console = workdir / "console.log"
    status = workdir / "status.log"
    pidfile = workdir / "qemu.pid"
    for f in (console, status, pidfile):
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
        "-pidfile",
        str(pidfile),
    ]
    for i, disk in enumerate(disks):
        opts = f"if=none,id=disk{i},file={disk.path},format={disk.fmt}"
        if disk.readonly:
            opts += ",readonly=on"
        if disk.snapshot:
            opts += ",snapshot=on"
        cmd += ["-drive", opts, "-device", f"virtio-blk-pci,drive=disk{i},serial={disk.serial}"]
    qemu_ended = threading.Event()
    cut: list[bool] = []
    watcher = None
    if cut_power_at is not None:
        watcher = threading.Thread(
            target=_cut_power_at,
            args=(cut_power_at, console, pidfile, qemu_ended, cut),
            daemon=True,
        )
        watcher.start()
    try:
        # A power cut kills qemu: its status is the watcher's to tell, not a failure.
        run(cmd, timeout=timeout, check=cut_power_at is None)
    except CommandTimeoutError as e:
        text = console.read_text(errors="replace") if console.exists() else ""
        raise VmError(
            f"the VM did not power off within {timeout:.0f} s; its console:\n"
            + console_story(text),
            hint=f"a hung guest script or a kernel stall; the whole console is kept in "
            f"{keep_console(console)}",
        ) from e
    finally:
        qemu_ended.set()
        if watcher is not None:
            watcher.join()
    text = console.read_text(errors="replace") if console.exists() else ""
    reported: int | None = None
    if status.exists():
        m = re.search(rf"{STATUS_PREFIX} (\d+)", status.read_text(errors="replace"))
        if m:
            reported = int(m[1])
    return BootResult(status=reported, console=text, power_cut=bool(cut))


def _cut_power_at(
    marker: str, console: Path, pidfile: Path, qemu_ended: threading.Event, cut: list[bool]
) -> None:
    """Kill qemu once `marker` shows on the console; the guest blocks after printing it, so
    the cut lands at that point of its script, not somewhere after."""
    wanted = marker.encode()
    seen = b""
    offset = 0
    while not qemu_ended.wait(0.02):
        with contextlib.suppress(FileNotFoundError), console.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
            offset += len(chunk)
            # Keep a marker's length of what came before: it may straddle two reads.
            seen = seen[-len(wanted) :] + chunk
        if wanted in seen:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
                cut.append(True)
            return
