"""The update tarball, ksplice-<id>.tar.gz: the one format the build side writes and the runtime
and the packagers read. Standard library only: the runtime package ships it.

Layout: one directory ksplice-<id>/ holding exactly

    manifest.json     the contract (ksplice_pkg.manifest)
    ksplice_<id>.ko   the livepatch module, whose sha256 the manifest gives
    description       the update's description
    patch             the patch it was made from, its bytes as given

and nothing else: no link, no other file, no subdirectory. An update is read whole into memory
(a few MB at most, MAX_BYTES) and checked there: layout, manifest, the module's digest. What is
then installed, shipped or loaded is written from those bytes, so what was checked is what is
used, and no name from the input ever chooses where a byte goes.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import IntegrityError, InternalError
from ksplice_pkg.fsutil import atomic_output, sha256_bytes
from ksplice_pkg.manifest import MANIFEST_NAME, Manifest
from ksplice_pkg.unpack import MemberKind, iter_tar

DESCRIPTION = "description"
PATCH = "patch"
# A livepatch module is tens of KB to a few MB; the patch of a whole stable update a few MB.
MAX_BYTES = 64 << 20
FILE_MODE = 0o644
DIR_MODE = 0o755


class UpdateFormatError(IntegrityError):
    """An update that is not laid out as the format says, or whose module is not the one its
    manifest describes: damaged or tampered with."""


def top_dir(update_id: str) -> str:
    return f"ksplice-{update_id}"


def tarball_name(update_id: str) -> str:
    return f"{top_dir(update_id)}.tar.gz"


def member_names(manifest: Manifest) -> tuple[str, ...]:
    """The files of an update, in the order the tarball holds them."""
    return (manifest.module, PATCH, DESCRIPTION, MANIFEST_NAME)


@dataclass(frozen=True)
class UpdateFiles:
    """A checked update: its manifest and exactly its files' bytes."""

    manifest: Manifest
    files: Mapping[str, bytes]  # member_names(manifest) -> bytes
    origin: str  # where it was read from, for messages

    @property
    def module(self) -> bytes:
        return self.files[self.manifest.module]

    def text(self, name: str) -> str:
        return self.files[name].decode(errors="replace")


def _checked(files: dict[str, bytes], origin: str) -> UpdateFiles:
    if MANIFEST_NAME not in files:
        raise UpdateFormatError(f"{origin}: {MANIFEST_NAME} is missing")
    manifest = Manifest.from_json(files[MANIFEST_NAME], f"{origin}: {MANIFEST_NAME}")
    expected = set(member_names(manifest))
    if missing := sorted(expected - files.keys()):
        raise UpdateFormatError(f"{origin}: {', '.join(missing)} missing from update {manifest.id}")
    if extra := sorted(files.keys() - expected):
        raise UpdateFormatError(
            f"{origin}: holds files an update does not have: {', '.join(map(repr, extra))}",
            hint=f"an update holds exactly {', '.join(member_names(manifest))}",
        )
    digest = sha256_bytes(files[manifest.module])
    if digest != manifest.module_sha256:
        raise UpdateFormatError(
            f"{origin}: {manifest.module} has sha256 {digest}, the manifest says "
            f"{manifest.module_sha256}",
            hint="the module was changed or damaged; take the update from where it was made",
        )
    return UpdateFiles(manifest, files, origin)


def read_tarball(path: Path) -> UpdateFiles:
    """Read and check ksplice-<id>.tar.gz; anything else in it is refused."""
    origin = str(path)
    files: dict[str, bytes] = {}
    tops: set[str] = set()
    try:
        with path.open("rb") as f:
            for member in iter_tar(f, origin, max_total=MAX_BYTES):
                top, _, name = member.name.partition("/")
                tops.add(top)
                if member.kind is MemberKind.DIR and not name:
                    continue
                if member.kind is not MemberKind.FILE or not name or "/" in name:
                    raise UpdateFormatError(
                        f"{origin}: {member.name!r} has no place in an update",
                        hint="an update tarball holds one directory ksplice-<id>/ of plain files",
                    )
                if name in files:
                    raise UpdateFormatError(f"{origin}: {member.name!r} is there twice")
                files[name] = member.open().read()
    except OSError as e:
        raise UpdateFormatError(f"{origin}: {e.strerror}") from e
    if len(tops) != 1:
        raise UpdateFormatError(
            f"{origin}: expected the one directory ksplice-<id>/, found {', '.join(sorted(tops))}"
        )
    update = _checked(files, origin)
    if tops != {top_dir(update.manifest.id)}:
        raise UpdateFormatError(
            f"{origin}: expected the one directory {top_dir(update.manifest.id)}/, found "
            f"{tops.pop()}/"
        )
    return update


def read_directory(directory: Path, *, owned: bool = False) -> UpdateFiles:
    """Read and check the update's files in `directory` (an unpacked tarball, an installed
    update). Only the update's own names are read, each a regular file opened without following
    links; with `owned`, each must also belong to this user and be writable by it alone (the
    installed tree, which boot loads from as root)."""
    origin = str(directory)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise UpdateFormatError(f"{origin}: {e.strerror}") from e
    try:
        if owned:
            _check_owned(os.fstat(dir_fd), origin)
        files = {MANIFEST_NAME: _read_file(dir_fd, MANIFEST_NAME, origin, owned)}
        manifest = Manifest.from_json(files[MANIFEST_NAME], f"{origin}/{MANIFEST_NAME}")
        for name in member_names(manifest):
            files.setdefault(name, _read_file(dir_fd, name, origin, owned))
    finally:
        os.close(dir_fd)
    return _checked(files, origin)


def _check_owned(st: os.stat_result, what: str) -> None:
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UpdateFormatError(
            f"{what} is owned by uid {st.st_uid} or writable by others (mode "
            f"{stat.filemode(st.st_mode)}): anyone could have changed it",
            hint="reinstall the update (its package, or `ksplice-pkg install`)",
        )


def _read_file(dir_fd: int, name: str, origin: str, owned: bool) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError as e:
        raise UpdateFormatError(f"{origin}: {name} is missing") from e
    except OSError as e:  # ELOOP: a symlink
        raise UpdateFormatError(f"{origin}/{name}: not a plain file ({e.strerror})") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UpdateFormatError(f"{origin}/{name}: not a plain file")
        if owned:
            _check_owned(st, f"{origin}/{name}")
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UpdateFormatError(f"{origin}/{name}: larger than an update can be")
    return data


def write_directory(update: UpdateFiles, directory: Path) -> None:
    """Write the update's files into `directory`, which must not exist yet; modes are set
    explicitly, whatever the caller's umask."""
    directory.mkdir(mode=DIR_MODE)
    directory.chmod(DIR_MODE)
    for name in member_names(update.manifest):
        fd = os.open(
            directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE
        )
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, FILE_MODE)
            f.write(update.files[name])
            f.flush()
            os.fsync(fd)


def write_tarball(
    output_dir: Path, manifest: Manifest, ko: Path, patch: bytes, description: str, mtime: int
) -> Path:
    """Write ksplice-<id>.tar.gz atomically: a failed run leaves no partial tarball. Every
    time in it (members, gzip header) is `mtime`, and the gzip header names no file, so the
    same contents give the same bytes."""
    # What the runtime would refuse is a bug here, not something to ship.
    if Manifest.from_json(manifest.to_json(), "the new manifest") != manifest:
        raise InternalError(f"the manifest of {manifest.id} does not read back the same")
    top = top_dir(manifest.id)
    final = output_dir / tarball_name(manifest.id)

    def add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, content: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(content)
        info.mode = mode
        info.mtime = mtime
        tar.addfile(info, io.BytesIO(content))

    with (
        atomic_output(final) as f,
        gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=mtime) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        data = {
            manifest.module: ko.read_bytes(),
            PATCH: patch,
            DESCRIPTION: (description.rstrip("\n") + "\n").encode(),
            MANIFEST_NAME: manifest.to_json().encode(),
        }
        add(tar, top, tarfile.DIRTYPE, DIR_MODE, b"")
        for name in member_names(manifest):
            add(tar, f"{top}/{name}", tarfile.REGTYPE, FILE_MODE, data[name])
    return final
