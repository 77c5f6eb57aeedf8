"""Run a shell script as root in the target kernel, booted on a generated busybox initramfs."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from importlib import resources
from pathlib import Path

from ksplice_pkg.errors import KspliceError, VmError
from ksplice_pkg.vm.initramfs import Initramfs
from ksplice_pkg.vm.qemu import (
    CONSOLE_VERBOSITY,
    BootResult,
    Disk,
    boot,
    console_story,
    keep_console,
)

BUSYBOX = Path("/bin/busybox")
OUTPUT_DISK_MB = 64


@dataclass(frozen=True)
class GuestResult:
    status: int
    console: str
    outputs: dict[str, bytes] = field(default_factory=dict)  # what the script left in $OUT

    def crash_lines(self) -> list[str]:
        return BootResult(self.status, self.console).crash_lines()

    def output_text(self, name: str) -> str:
        return self.outputs[name].decode(errors="replace")


def guest_file(name: str) -> bytes:
    return (resources.files("ksplice_pkg.vm") / "guest" / name).read_bytes()


def module_load_order(modules_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """The .ko files to insmod, dependencies first, for the named modules (from modules.dep)."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    dep_file = modules_dir / "modules.dep"
    if not dep_file.is_file():
        raise KspliceError(f"{dep_file} is missing", hint="run `depmod -b` on the image tree")
    for line in dep_file.read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    wanted: list[str] = []
    for name in names:
        key = name.replace("-", "_")
        if key not in by_name:
            raise KspliceError(f"module {name} is not in {dep_file}")
        wanted.append(by_name[key])
    sorter: TopologicalSorter[str] = TopologicalSorter()
    pending = list(wanted)
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            sorter.add(path, *deps.get(path, []))
            pending += deps.get(path, [])
    return [modules_dir / p for p in sorter.static_order()]


def build_initramfs(
    script: str,
    files: Mapping[str, Path],
    modules: list[Path],
) -> Initramfs:
    ramfs = Initramfs()
    ramfs.add_host_file("bin/busybox", BUSYBOX, 0o755)
    ramfs.add_file("init", guest_file("init.sh"), 0o755)
    ramfs.add_file("lab/lib.sh", guest_file("lib.sh"))
    ramfs.add_file("lab/script", script.encode(), 0o755)
    ramfs.add_dir("lab/files")
    for name, source in files.items():
        ramfs.add_host_file(f"lab/files/{name}", source)
    for ko in modules:
        ramfs.add_host_file(f"lab/modules/{ko.name}", ko)
    ramfs.add_file("lab/modules.order", "".join(f"{ko.name}\n" for ko in modules).encode())
    return ramfs


# The drivers that give the guest its virtio disks; in Debian's cloud kernel they are modules.
DISK_MODULES = ("virtio_pci", "virtio_blk")


def read_outputs(disk: Path) -> dict[str, bytes]:
    outputs: dict[str, bytes] = {}
    data = disk.read_bytes()
    if not data.strip(b"\0"):
        return outputs
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                outputs[member.name.removeprefix("./")] = extracted.read()
    return outputs


def run_script(
    kernel: Path,
    modules_dir: Path,
    script: str,
    *,
    files: Mapping[str, Path] | None = None,
    append: str = "",
    timeout: float = 300,
) -> GuestResult:
    """Boot kernel, run script (busybox sh, as root, in lab/files), return its status and $OUT.

    A panic, an oops or a timeout raises VmError with the console's tail.
    """
    if not BUSYBOX.is_file():
        raise KspliceError(f"{BUSYBOX} is missing", hint="apt-get install busybox-static")
    modules = module_load_order(modules_dir, DISK_MODULES)
    with tempfile.TemporaryDirectory(prefix="ksplice-lab-") as tmp:
        work = Path(tmp)
        build_initramfs(script, files or {}, modules).write(work / "initrd.gz")
        out = work / "out.img"
        with out.open("wb") as f:
            f.truncate(OUTPUT_DISK_MB << 20)
        result = boot(
            kernel,
            work / "initrd.gz",
            f"{CONSOLE_VERBOSITY} {append}".strip(),
            work,
            disks=(Disk(out, "ksplice-out"),),
            timeout=timeout,
        )
        if result.status is None:
            raise crash_error(result, work / "console.log")
        outputs = read_outputs(out)
    return GuestResult(status=result.status, console=result.console, outputs=outputs)


def crash_error(result: BootResult, console: Path) -> VmError:
    crash = result.crash_lines()
    what = crash[0].strip() if crash else "the guest stopped without reporting a status"
    return VmError(
        f"the VM crashed: {what}; its console:\n" + console_story(result.console),
        hint=f"the whole console is kept in {keep_console(console)}",
    )
