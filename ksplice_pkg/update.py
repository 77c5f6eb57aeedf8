"""The update a create run ships: ksplice-<id>.tar.gz with the module, patch, description and
manifest.json. The manifest is the contract with the runtime side (apply, undo, view, reapply),
which reads it without any of the build side's libraries."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ksplice_pkg import __version__

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PatchedEntry:
    object: str  # "vmlinux" or a module name
    name: str
    sympos: int


@dataclass(frozen=True)
class Manifest:
    id: str
    description: str
    kernel_release: str
    target_build_id: str | None
    module: str  # the .ko file name
    module_name: str  # the livepatch name under /sys/kernel/livepatch
    module_sha256: str
    patched: list[PatchedEntry]
    verification: str  # "run-pre" or "skipped: ..."
    new_functions: list[str] = field(default_factory=list)
    klp_relocations: int = 0
    created: str = ""
    tool: str = f"ksplice-pkg {__version__}"
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_tarball(
    output_dir: Path, manifest: Manifest, ko: Path, patch: str, description: str
) -> Path:
    """Write ksplice-<id>.tar.gz atomically (a temporary name renamed into place)."""
    top = f"ksplice-{manifest.id}"
    final = output_dir / f"{top}.tar.gz"
    tmp = output_dir / f".{top}.tar.gz.partial"
    now = int(time.time())

    def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(f"{top}/{name}")
        info.size = len(data)
        info.mode = mode
        info.mtime = now
        tar.addfile(info, io.BytesIO(data))

    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            dir_info = tarfile.TarInfo(top)
            dir_info.type = tarfile.DIRTYPE
            dir_info.mode = 0o755
            dir_info.mtime = now
            tar.addfile(dir_info)
            add(tar, manifest.module, ko.read_bytes())
            add(tar, "patch", patch.encode())
            add(tar, "description", (description.rstrip("\n") + "\n").encode())
            add(tar, "manifest.json", manifest.to_json().encode())
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
