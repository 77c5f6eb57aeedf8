"""--series: an update built on top of earlier ones, as ksplice-create's series are.

Each earlier update's own patch, read from its tarball, is applied to the pristine tree in
order: that is the "pre" source of the new update, whose patch is made against it. The new
update's manifest says `depends_on` the earlier ones, so the runtime applies them first and will
not undo them while it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import Manifest
from ksplice_pkg.tarball import PATCH, read_tarball


@dataclass(frozen=True)
class PreviousUpdate:
    path: Path
    manifest: Manifest
    patch: bytes


def load_previous(path: Path, release: str) -> PreviousUpdate:
    """An earlier update of the series, from its ksplice-<id>.tar.gz, read and checked as the
    runtime reads it (nothing is extracted to disk)."""
    update = read_tarball(path)
    manifest = update.manifest
    if manifest.kernel_release != release:
        raise KspliceError(
            f"{path} is an update for kernel {manifest.kernel_release}, not for {release}",
            hint="a series is built for one kernel release",
        )
    return PreviousUpdate(path, manifest, update.files[PATCH])
