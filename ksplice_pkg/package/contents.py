"""Reading an update tarball (ksplice-<id>.tar.gz) for packaging.

The tarball comes from a build machine, maybe someone else's: it is read and checked by the
format's own reader (ksplice_pkg.tarball), and a package ships exactly the files that format
names, with modes of its own, never whatever else the tarball held.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.manifest import Manifest
from ksplice_pkg.tarball import FILE_MODE, member_names, read_tarball


@dataclass(frozen=True)
class UpdateFile:
    path: str  # relative to the update's directory, POSIX separators
    data: bytes
    mode: int


@dataclass(frozen=True)
class UpdateContents:
    manifest: Manifest
    files: tuple[UpdateFile, ...]  # sorted by path
    origin: Path

    @property
    def module(self) -> bytes:
        return next(f.data for f in self.files if f.path == self.manifest.module)


def read_update(tarball: Path) -> UpdateContents:
    update = read_tarball(tarball)
    names = sorted(member_names(update.manifest))
    files = tuple(UpdateFile(n, update.files[n], FILE_MODE) for n in names)
    return UpdateContents(update.manifest, files, tarball)
