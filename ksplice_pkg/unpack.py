"""Reading archives from outside (interim: member iteration only; the full reader lands next)."""

from __future__ import annotations

import enum
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ksplice_pkg.errors import IntegrityError


class ArchiveError(IntegrityError):
    """An archive that is unreadable, or holds a member that must not be unpacked."""


class MemberKind(enum.Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hard link"


@dataclass(frozen=True)
class TarMember:
    name: str
    kind: MemberKind
    size: int
    mode: int
    linkname: str
    _tar: tarfile.TarFile
    _info: tarfile.TarInfo

    def open(self) -> IO[bytes]:
        data = self._tar.extractfile(self._info)
        if data is None:
            raise ArchiveError(f"{self.name}: no data")
        return data


def _kind(info: tarfile.TarInfo) -> MemberKind | None:
    if info.isreg():
        return MemberKind.FILE
    if info.isdir():
        return MemberKind.DIR
    if info.issym():
        return MemberKind.SYMLINK
    if info.islnk():
        return MemberKind.HARDLINK
    return None


def iter_tar(
    source: Path | IO[bytes], origin: str, *, max_total: int, max_members: int = 100_000
) -> Iterator[TarMember]:
    total = 0
    try:
        if isinstance(source, Path):
            tar = tarfile.open(source, "r:*")  # noqa: SIM115
        else:
            tar = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115
        with tar:
            for count, info in enumerate(tar, 1):
                path = PurePosixPath(info.name)
                if info.name.startswith("/") or ".." in path.parts or not info.name.strip("./"):
                    raise ArchiveError(f"{origin}: the member {info.name!r} escapes its directory")
                kind = _kind(info)
                if kind is None:
                    raise ArchiveError(f"{origin}: the member {info.name!r} is not a file")
                total += info.size if kind is MemberKind.FILE else 0
                if total > max_total or count > max_members:
                    raise ArchiveError(f"{origin}: larger than such an archive can be")
                name = "/".join(p for p in path.parts if p != ".")
                yield TarMember(name, kind, info.size, info.mode, info.linkname, tar, info)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"{origin}: not a readable tarball ({e})") from e
