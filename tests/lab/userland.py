"""A full Debian userland for the lab: systemd as PID 1 on the real target kernel.

The image is built once per kernel release and cached: debootstrap (the slow part, shared by all
releases), then an ext4 image with that release's modules and the lab's runner service. Each boot
runs on a copy-on-write view of it, so tests never change the cached image; a test that needs
state across reboots passes its own qcow2 overlay.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import atomic_directory
from ksplice_pkg.log import step
from ksplice_pkg.run import run
from ksplice_pkg.vm.guest import (
    DISK_MODULES,
    OUTPUT_DISK_MB,
    GuestResult,
    build_initramfs,
    crash_error,
    guest_file,
    module_load_order,
    read_outputs,
)
from ksplice_pkg.vm.qemu import CONSOLE_VERBOSITY, BootResult, Disk, boot

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("systemd-sysv", "udev", "dbus", "kmod", "python3", "python3-click")
IMAGE_SIZE = "2G"


class Poweroff(Enum):
    """How the guest goes down once its script has reported back."""

    FORCED = "forced"  # poweroff -f: no service is stopped (the lab's fast default)
    CLEAN = "clean"  # systemctl poweroff: every unit stopped, as an administrator shuts down


@dataclass(frozen=True)
class Interrupted:
    """A boot that ended without reporting: power cut from the host, or a crash or reset."""

    console: str
    power_cut: bool  # qemu was killed at the marker; False: the guest went down by itself


def _rootfs_key() -> str:
    return hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]


def _debootstrap(cache: Path) -> Path:
    """A minbase Debian root with systemd, cached; built in a temporary dir, then renamed."""
    root = cache / "userland" / f"{SUITE}-{_rootfs_key()}"
    if (root / ".complete").is_file():
        return root
    with (
        step(f"debootstrap {SUITE} ({', '.join(PACKAGES)})"),
        atomic_directory(root) as partial,
    ):
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                partial,
                MIRROR,
            ],
            timeout=1800,
        )
        shutil.rmtree(partial / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (partial / ".complete").write_text("")
    return root


def _lab_files() -> dict[str, tuple[bytes, int]]:
    return {
        "usr/local/lib/ksplice-lab/lib.sh": (guest_file("lib.sh"), 0o644),
        "usr/local/lib/ksplice-lab/run": (guest_file("userland-run.sh"), 0o755),
        "etc/systemd/system/ksplice-lab.service": (guest_file("ksplice-lab.service"), 0o644),
    }


def image_for(artifacts: KernelArtifacts, cache: Path) -> Path:
    """The cached ext4 root image for this kernel release, built if missing or outdated."""
    rootfs = _debootstrap(cache)
    files = _lab_files()
    digest = hashlib.sha256(_rootfs_key().encode() + artifacts.version.encode())
    for name, (data, _) in sorted(files.items()):
        digest.update(name.encode() + data)
    image = cache / "userland" / f"{artifacts.release}-{digest.hexdigest()[:12]}.ext4"
    if image.is_file():
        return image
    with (
        step(f"building the lab's Debian image for {artifacts.release}"),
        tempfile.TemporaryDirectory(prefix="ksplice-userland-", dir=image.parent) as tmp,
    ):
        stage = Path(tmp) / "root"
        # cp -a keeps device nodes, owners and hard links that mke2fs -d then copies in.
        run(["cp", "-a", rootfs, stage])
        for name, (data, mode) in files.items():
            path = stage / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
        wants = stage / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "ksplice-lab.service").symlink_to("/etc/systemd/system/ksplice-lab.service")
        (stage / "etc/fstab").write_text("LABEL=ksplice-root / ext4 defaults 0 1\n")
        (stage / "etc/hostname").write_text("ksplice-lab\n")
        modules = stage / "lib" / "modules" / artifacts.release
        shutil.rmtree(modules, ignore_errors=True)
        shutil.copytree(artifacts.modules_dir, modules, symlinks=True)
        partial = Path(tmp) / "image.ext4"
        run(["mke2fs", "-q", "-t", "ext4", "-L", "ksplice-root", "-d", stage, partial, IMAGE_SIZE])
        partial.rename(image)
    return image


def new_overlay(image: Path, path: Path) -> Path:
    """A qcow2 file whose writes persist across boots while the cached image stays untouched.
    `image` may itself be an overlay (.qcow2): a state that several tests start from."""
    backing = "qcow2" if image.suffix == ".qcow2" else "raw"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", backing, path])
    return path


def _input_tar(script: str, files: Mapping[str, Path], poweroff: Poweroff) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        add("script", script.encode(), 0o755)
        add("poweroff", poweroff.value.encode(), 0o644)
        for name, source in files.items():
            add(f"files/{name}", source.read_bytes(), source.stat().st_mode & 0o777)
    return buf.getvalue()


def run_userland(
    artifacts: KernelArtifacts,
    cache: Path,
    script: str,
    *,
    files: Mapping[str, Path] | None = None,
    overlay: Path | None = None,
    timeout: float = 600,
    append: str = "",
    poweroff: Poweroff = Poweroff.FORCED,
) -> GuestResult:
    """Boot the Debian image on the target kernel; run script (sh, root) once systemd is up.
    `append`: more words for the kernel command line (e.g. a switch a test boots with)."""
    with tempfile.TemporaryDirectory(prefix="ksplice-lab-") as tmp:
        work = Path(tmp)
        result = _boot(artifacts, cache, script, work, files, overlay, timeout, append, poweroff)
        if result.status is None:
            raise crash_error(result, work / "console.log")
        outputs = read_outputs(work / "out.img")
    return GuestResult(status=result.status, console=result.console, outputs=outputs)


def cut_power(
    artifacts: KernelArtifacts,
    cache: Path,
    script: str,
    marker: str | None,
    *,
    overlay: Path,
    files: Mapping[str, Path] | None = None,
    timeout: float = 600,
    append: str = "",
) -> Interrupted:
    """Boot like run_userland and kill qemu the moment `marker` shows on the console (the
    script prints it with lab_cut). A guest that crashes or resets itself first ends the boot
    too (marker None: the script does that itself); one that reports back instead is an
    error: the cut never happened."""
    with tempfile.TemporaryDirectory(prefix="ksplice-lab-") as tmp:
        work = Path(tmp)
        result = _boot(
            artifacts, cache, script, work, files, overlay, timeout, append, Poweroff.FORCED,
            cut_power_at=marker,
        )  # fmt: skip
        if result.status is not None:
            raise KspliceError(
                f"the guest reported status {result.status} instead of going down (marker "
                f"{marker!r}): no power cut happened; its console ended with:\n"
                + result.console[-3000:]
            )
    return Interrupted(result.console, result.power_cut)


def _boot(
    artifacts: KernelArtifacts,
    cache: Path,
    script: str,
    work: Path,
    files: Mapping[str, Path] | None,
    overlay: Path | None,
    timeout: float,
    append: str,
    poweroff: Poweroff,
    cut_power_at: str | None = None,
) -> BootResult:
    image = image_for(artifacts, cache)
    modules = module_load_order(artifacts.modules_dir, DISK_MODULES)
    build_initramfs("", {}, modules).write(work / "initrd.gz")
    (work / "in.tar").write_bytes(_input_tar(script, files or {}, poweroff))
    out = work / "out.img"
    with out.open("wb") as f:
        f.truncate(OUTPUT_DISK_MB << 20)
    root = (
        Disk(overlay, "ksplice-root", fmt="qcow2")
        if overlay
        else Disk(image, "ksplice-root", snapshot=True)
    )
    if overlay is not None and not overlay.is_file():
        raise KspliceError(f"{overlay} does not exist", hint="create it with new_overlay()")
    return boot(
        artifacts.vmlinuz,
        work / "initrd.gz",
        f"ksplice.lab=userland {CONSOLE_VERBOSITY} {append}".strip(),
        work,
        disks=(
            root,
            Disk(work / "in.tar", "ksplice-in", readonly=True),
            Disk(out, "ksplice-out"),
        ),
        timeout=timeout,
        cut_power_at=cut_power_at,
    )
