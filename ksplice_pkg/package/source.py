"""Reading an update tarball (ksplice-<id>.tar.gz) for packaging.

The tarball comes from a build machine, maybe someone else's: every member must sit inside the
top directory `ksplice-<id>/` and be a plain file or directory, so that nothing it holds can
escape the package's install directory or smuggle in links and device nodes.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import InternalError, KspliceError
from ksplice_pkg.manifest import MANIFEST_NAME, Manifest


class UpdateTarballError(KspliceError):
    """An update tarball that is unreadable, unsafe or incomplete."""


@dataclass(frozen=True)
class UpdateFile:
    path: str  # relative to the update's directory, POSIX separators
    data: bytes
    mode: int  # 0o644 or 0o755: permissions are normalised, owners dropped


@dataclass(frozen=True)
class UpdateContents:
    manifest: Manifest
    files: tuple[UpdateFile, ...]  # sorted by path; directories are implied
    origin: Path

    @property
    def module(self) -> bytes:
        return next(f.data for f in self.files if f.path == self.manifest.module)


def read_update(tarball: Path) -> UpdateContents:
    try:
        with tarfile.open(tarball, "r:*") as tar:
            return _read(tar, tarball)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UpdateTarballError(f"{tarball}: cannot read the update tarball: {e}") from e


def _read(tar: tarfile.TarFile, origin: Path) -> UpdateContents:
    members = tar.getmembers()
    for member in members:
        name = posixpath.normpath(member.name)
        if name.startswith(("/", "../")) or name == "..":
            raise UpdateTarballError(f"{origin}: member {member.name!r} escapes the update")
    tops = {posixpath.normpath(m.name).split("/", 1)[0] for m in members}
    tops.discard(".")
    if len(tops) != 1:
        raise UpdateTarballError(
            f"{origin}: expected one top directory ksplice-<id>/, found {sorted(tops) or 'none'}"
        )
    top = tops.pop()
    files: dict[str, UpdateFile] = {}
    for member in members:
        name = posixpath.normpath(member.name)
        if member.isdir():
            continue
        if not member.isfile():
            raise UpdateTarballError(
                f"{origin}: member {member.name!r} is not a plain file or directory"
            )
        relative = name[len(top) + 1 :]
        extracted = tar.extractfile(member)
        if extracted is None:  # tarfile gives data for every regular file
            raise InternalError(f"{origin}: no data for the file {member.name!r}")
        mode = 0o755 if member.mode & 0o111 else 0o644
        files[relative] = UpdateFile(relative, extracted.read(), mode)
    if MANIFEST_NAME not in files:
        raise UpdateTarballError(f"{origin}: {top}/{MANIFEST_NAME} is missing")
    manifest = Manifest.from_json(files[MANIFEST_NAME].data, f"{origin}:{top}/{MANIFEST_NAME}")
    if top != f"ksplice-{manifest.id}":
        raise UpdateTarballError(
            f"{origin}: top directory {top}/ does not match update id {manifest.id!r}"
        )
    if manifest.module not in files:
        raise UpdateTarballError(f"{origin}: the module {top}/{manifest.module} is missing")
    # A package signs for what it ships: a module that is not the one the manifest describes
    # would be refused by `apply` on every machine, so it is refused here, once.
    if hashlib.sha256(files[manifest.module].data).hexdigest() != manifest.module_sha256:
        raise UpdateTarballError(
            f"{origin}: {top}/{manifest.module} does not match the manifest's module_sha256"
        )
    return UpdateContents(manifest, tuple(files[p] for p in sorted(files)), origin)
