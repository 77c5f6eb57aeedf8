"""--series: an update built on top of earlier ones, as ksplice-create's series are.

Each earlier update's own patch, read from its tarball, is applied to the pristine tree in
order: that is the "pre" source of the new update, whose patch is made against it. The new
update's manifest says `depends_on` the earlier ones, so the runtime applies them first and will
not undo them while it is applied.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import MANIFEST_NAME, Manifest

# A manifest or patch larger than this is not an update's: refuse it before reading it whole.
_MAX_MEMBER = 64 << 20


@dataclass(frozen=True)
class PreviousUpdate:
    path: Path
    manifest: Manifest
    patch: str


def load_previous(path: Path, release: str) -> PreviousUpdate:
    """An earlier update of the series, from its ksplice-<id>.tar.gz (only its manifest and
    patch are read: no member is extracted to disk)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            files = {m.name: m for m in tar.getmembers() if m.isfile()}
            manifest_member = next(
                (m for name, m in files.items() if name.endswith(f"/{MANIFEST_NAME}")), None
            )
            if manifest_member is None:
                raise KspliceError(f"{path} holds no {MANIFEST_NAME}: it is not an update")
            top = manifest_member.name.rsplit("/", 1)[0]
            manifest = Manifest.from_json(_read(tar, manifest_member), f"{path}:{MANIFEST_NAME}")
            patch_member = files.get(f"{top}/patch")
            if patch_member is None:
                raise KspliceError(f"{path} holds no patch: --series needs the update's patch")
            patch = _read(tar, patch_member).decode("utf-8", errors="surrogateescape")
    except (tarfile.TarError, OSError) as e:
        raise KspliceError(
            f"cannot read the update {path}: {e}", hint="give a ksplice-<id>.tar.gz from create"
        ) from e
    if manifest.kernel_release != release:
        raise KspliceError(
            f"{path} is an update for kernel {manifest.kernel_release}, not for {release}",
            hint="a series is built for one kernel release",
        )
    return PreviousUpdate(path, manifest, patch)


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > _MAX_MEMBER:
        raise KspliceError(f"{member.name} is {member.size} bytes: too large for an update")
    f = tar.extractfile(member)
    if f is None:
        raise KspliceError(f"{member.name} cannot be read")
    return f.read()
