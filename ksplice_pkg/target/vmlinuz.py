"""The vmlinux inside a distro's compressed vmlinuz (bzImage), extracted with the kernel tree's
scripts/extract-vmlinux: distros ship no vmlinux outside their -dbg packages, and Debian's
image is LZ4-compressed."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.log import step
from ksplice_pkg.run import run

_ELF_MAGIC = b"\x7fELF"
EXTRACTED_NAME = "vmlinux"


def open_vmlinux(path: Path, source_tree: Path | None) -> Vmlinux:
    """Open an ELF vmlinux, or a compressed bzImage/vmlinuz (extracted with source_tree)."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(_ELF_MAGIC))
    except OSError as e:
        raise KspliceError(f"cannot read the kernel image {path}: {e.strerror}") from e
    return Vmlinux.open(path if magic == _ELF_MAGIC else _extract(path, source_tree))


def _extract(vmlinuz: Path, source_tree: Path | None) -> Path:
    """The vmlinux inside vmlinuz, extracted once into a `vmlinux` beside it."""
    # A compressed image that is itself called vmlinux must not be overwritten by its payload.
    cached = vmlinuz.with_name(
        EXTRACTED_NAME if vmlinuz.name != EXTRACTED_NAME else EXTRACTED_NAME + ".elf"
    )
    if cached.is_file() and cached.stat().st_mtime_ns > vmlinuz.stat().st_mtime_ns:
        return cached
    if source_tree is None:
        raise KspliceError(
            f"{vmlinuz} is a compressed kernel image and no source tree was given to extract it",
            hint="give the kernel source tree (its scripts/extract-vmlinux unpacks the image)",
        )
    script = source_tree / "scripts" / "extract-vmlinux"
    if not script.is_file():
        raise KspliceError(f"{source_tree} has no scripts/extract-vmlinux")
    with step(f"extracting vmlinux from {vmlinuz}"):
        try:
            proc = run(["sh", script, vmlinuz])
        except CommandError as e:
            # extract-vmlinux hides the decompressors' errors, a missing one included.
            raise KspliceError(
                f"could not extract vmlinux from {vmlinuz}: {e.message}",
                hint="Debian's kernels are LZ4-compressed: install lz4 (scripts/setup does), "
                "and check that the file is a kernel image",
            ) from e
    try:
        atomic_write(cached, proc.stdout)
    except OSError as e:
        raise KspliceError(
            f"cannot save the vmlinux extracted from {vmlinuz} as {cached}: {e.strerror}",
            hint=f"make {cached.parent} writable, or give an already extracted vmlinux",
        ) from e
    return cached
