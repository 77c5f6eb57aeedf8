"""The vmlinux inside a distro's compressed vmlinuz (bzImage), extracted with the kernel tree's
scripts/extract-vmlinux: distros ship no vmlinux outside their -dbg packages, and Debian's
image is LZ4-compressed."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.cache import mark_used
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.fsutil import atomic_output, copy_at_most, sha256_file
from ksplice_pkg.log import step
from ksplice_pkg.run import piped

ELF_MAGIC = b"\x7fELF"
_MAX_VMLINUX = 2 << 30


def open_vmlinux(path: Path, source_tree: Path | None, cache: Path) -> Vmlinux:
    """Open an ELF vmlinux, or a compressed bzImage/vmlinuz: its payload is extracted with
    source_tree's script into the cache, never beside the user's file."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(ELF_MAGIC))
    except OSError as e:
        raise KspliceError(f"cannot read the kernel image {path}: {e.strerror}") from e
    return Vmlinux.open(path if magic == ELF_MAGIC else _extract(path, source_tree, cache))


def _extract(vmlinuz: Path, source_tree: Path | None, cache: Path) -> Path:
    """The vmlinux inside vmlinuz, extracted once per content of vmlinuz."""
    # Keyed by content, not name or mtime: two images of one name never share an entry.
    cached = cache / "vmlinux" / f"{sha256_file(vmlinuz)[:32]}.elf"
    if cached.is_file():
        mark_used(cache, [cached])
        return cached
    if source_tree is None:
        raise KspliceError(
            f"{vmlinuz} is a compressed kernel image and no source tree was given to extract it",
            hint="give the kernel source tree (its scripts/extract-vmlinux unpacks the image)",
        )
    script = source_tree / "scripts" / "extract-vmlinux"
    if not script.is_file():
        raise KspliceError(f"{source_tree} has no scripts/extract-vmlinux")
    hint = (
        "Debian's kernels are LZ4-compressed: install lz4 (scripts/setup does), and check "
        "that the file is a kernel image"
    )
    try:
        with (
            step(f"extracting vmlinux from {vmlinuz}"),
            atomic_output(cached) as out,
            piped(["sh", script, vmlinuz]) as extracted,
        ):
            if extracted.read(len(ELF_MAGIC)) != ELF_MAGIC:
                raise KspliceError(f"no vmlinux found inside {vmlinuz}", hint=hint)
            out.write(ELF_MAGIC)
            # Streamed and capped: the image comes from outside and decompresses to what it
            # likes, where a vmlinux without debug info (all a vmlinuz holds) is tens of MB.
            if not copy_at_most(extracted, out, _MAX_VMLINUX):
                raise KspliceError(
                    f"{vmlinuz} decompresses to more than {_MAX_VMLINUX} bytes: not a kernel",
                    hint=hint,
                )
    except CommandError as e:
        # extract-vmlinux hides the decompressors' errors, a missing one included.
        raise KspliceError(
            f"could not extract vmlinux from {vmlinuz}: {e.message}", hint=hint
        ) from e
    except OSError as e:
        raise KspliceError(
            f"cannot save the vmlinux extracted from {vmlinuz} as {cached}: {e.strerror}",
            hint=f"make {cached.parent} writable, or give an already extracted vmlinux",
        ) from e
    return cached
