"""Files written so that a crash or a failure never leaves a half-written one in place.

Every file another run or another program reads (tarballs, cached binaries, runtime state) is
written under a temporary name in the same directory and renamed over the final name: rename is
atomic within a filesystem, so readers see the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from ksplice_pkg.errors import KspliceError


@contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `path` when the block ends without an exception.

    On an exception the temporary file is removed and `path` is left as it was. The data is
    fsynced before the rename, so a power loss does not leave an empty file under the final name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        # Cleanup must never replace the error that brought us here.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty directory that replaces `path` when the block ends without an exception.

    For trees that take long to fill (an unpacked package, a debootstrap): a run killed half
    way leaves a `.partial` directory that the next run clears, never a half-filled `path`.
    """
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write data to path atomically (text is encoded as UTF-8)."""
    with atomic_output(path, mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def make_dirs(path: Path, mode: int = 0o755) -> Path:
    """mkdir -p with every directory it creates at `mode`, whatever the umask: the runtime's
    trees decide what root loads at boot, so they never take a caller's umask of 000."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.is_dir():
            break
        missing.append(parent)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another command made it meanwhile
            directory.mkdir(mode)
            directory.chmod(mode)
    return path


class Readable(Protocol):
    """What a byte stream needs to be read from: a file, a pipe, a decompressor."""

    def read(self, size: int = -1, /) -> bytes: ...


def copy_at_most(src: Readable, dst: BinaryIO, limit: int) -> bool:
    """Copy `src` to `dst` in chunks; False, with `limit` bytes copied, if src holds more: a
    stream from outside (a decompressor, a command's output) is never held whole in memory,
    nor copied without end."""
    left = limit
    while chunk := src.read(min(left + 1, 1 << 20)):
        if len(chunk) > left:
            dst.write(chunk[:left])
            return False
        dst.write(chunk)
        left -= len(chunk)
    return True


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in blocks (a source tarball is 140 MB)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path)


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Create path if need be and prove a file can be written there, before any long work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise KspliceError(
            f"{what} {path} is not writable: {e.strerror}",
            hint="choose another directory, or fix its permissions",
        ) from e
    return path
