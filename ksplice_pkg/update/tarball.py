"""The update a create run ships: ksplice-<id>.tar.gz with the module, patch, description and
manifest.json. The manifest is the contract with the runtime side (apply, undo, view, reapply),
which reads it without any of the build side's libraries."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from ksplice_pkg.fsutil import atomic_output
from ksplice_pkg.manifest import MANIFEST_NAME, Manifest


def write_tarball(
    output_dir: Path, manifest: Manifest, ko: Path, patch: str, description: str, mtime: int
) -> Path:
    """Write ksplice-<id>.tar.gz atomically: a failed run leaves no partial tarball. Every
    time in it (members, gzip header) is `mtime`, and the gzip header names no file, so the
    same contents give the same bytes."""
    top = f"ksplice-{manifest.id}"
    final = output_dir / f"{top}.tar.gz"

    def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(f"{top}/{name}")
        info.size = len(data)
        info.mode = mode
        info.mtime = mtime
        tar.addfile(info, io.BytesIO(data))

    with (
        atomic_output(final) as f,
        gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=mtime) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dir_info = tarfile.TarInfo(top)
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        dir_info.mtime = mtime
        tar.addfile(dir_info)
        add(tar, manifest.module, ko.read_bytes())
        # The patch keeps its bytes: a mailed patch need not be UTF-8.
        add(tar, "patch", patch.encode(errors="surrogateescape"))
        add(tar, "description", (description.rstrip("\n") + "\n").encode())
        add(tar, MANIFEST_NAME, manifest.to_json().encode())
    return final
