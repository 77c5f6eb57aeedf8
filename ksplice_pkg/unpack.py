"""Reading tarballs and cpio payloads whose members are not trusted, and writing them safely.

Everything unpacked comes from outside: a distro package, a source tarball, an update tarball
given to the runtime. A member named `../../etc/cron.d/x` or `/etc/shadow`, a file written
through a symlink that an earlier member made, a symlink whose target leaves the tree once the
links before it are followed, a hard link to a file outside, a device node, a gzip bomb: each
is refused with an ArchiveError before anything lands outside the destination.

No `tarfile` extraction filter is used: Debian 12's python3 (3.11.2) has none, and the one of
3.11.4 to 3.11.12 is escaped by a chain of symlinks whose resolved path passes PATH_MAX
(CVE-2025-4517: os.path.realpath stops resolving there). tarfile only parses headers here; the
checks and the writing are our own, and links are resolved one component at a time, through the
links already written, as the kernel resolves them.

Standard library only: the runtime imports this module.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Protocol

from ksplice_pkg.errors import InternalError, KspliceError

__all__ = [
    "ArchiveError",
    "MemberKind",
    "TarMember",
    "iter_tar",
]

# Linux's limits (linux/limits.h): a longer name cannot be created, so an archive that has one
# is not meant for this system.
PATH_MAX = 4096
NAME_MAX = 255

# The headers of one member (pax records, GNU long names) are read whole into memory by
# tarfile; real ones are a few hundred bytes, so a member whose headers are longer is refused
# before a "header" of gigabytes of zeros is read.
_MAX_HEADER_BYTES = 1 << 20
# What a member may add to the decompressed stream besides its data: headers and padding.
_MEMBER_OVERHEAD = 8 << 10
_CHUNK = 1 << 20

_HINT = "the archive is damaged or hostile; take it again from where it was published"


class ArchiveError(KspliceError):
    """An archive is unreadable, or a member of it is unsafe to unpack (the message says which)."""

    exit_code = 11


class MemberKind(Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hard link"


@dataclass(frozen=True)
class TarMember:
    """One checked member of an archive (a tarball or a cpio payload).

    `name` is relative, normalised ("usr/lib/x": no leading "./", no "." or empty components,
    no ".."), never empty. `linkname` is a symlink's target as written in the archive (only
    its characters and length are checked: SafeTree resolves it), or the name of the member a
    hard link links to, normalised as `name` is.
    """

    name: str
    kind: MemberKind
    size: int = 0
    mode: int = 0o644  # permission bits only
    linkname: str = ""
    mtime: float | None = None
    _reader: Callable[[], IO[bytes]] | None = field(default=None, repr=False, compare=False)

    def open(self) -> IO[bytes]:
        """A FILE's data, `size` bytes; valid only until the iterator moves to the next member."""
        if self._reader is None:
            raise InternalError(f"{self.name} is a {self.kind.value}: it has no data to read")
        return self._reader()


def member_error(origin: str, name: str, why: str) -> ArchiveError:
    return ArchiveError(f"{origin}: member {name!r} {why}", hint=_HINT)


def _unreadable(origin: str, what: str, e: BaseException) -> ArchiveError:
    return ArchiveError(
        f"{origin}: not a readable {what}: {e or type(e).__name__}",
        hint="the file is truncated or corrupt; download it again",
    )


# What tarfile and the decompressors raise on truncated or corrupt input. ValueError: tarfile
# parses some pax values (GNU.sparse.map) with int() unguarded.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)


@contextlib.contextmanager
def _reading(origin: str, what: str) -> Iterator[None]:
    """Turn a read failure into an ArchiveError: never a traceback, nor click's bare "Aborted!"
    (which is what click makes of an EOFError)."""
    try:
        yield
    except KspliceError:
        raise
    except _READ_ERRORS as e:
        raise _unreadable(origin, what, e) from e


def check_chars(origin: str, name: str, text: str) -> None:
    """NUL and control characters: no archive means them, and a terminal shows them as lies."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise member_error(origin, name, "has a control character in its name or link target")


def normalise(origin: str, name: str) -> str:
    """The relative POSIX path a member name means; refuses names that mean to leave the tree.

    "" for the archive's root (".", "./"), which every .deb lists first.
    """
    check_chars(origin, name, name)
    if not name:
        raise member_error(origin, name, "has an empty name")
    if name.startswith("/"):
        raise member_error(origin, name, "has an absolute name")
    if len(name.encode(errors="surrogateescape")) >= PATH_MAX:
        raise member_error(origin, name[:80] + "...", f"has a name of {PATH_MAX} bytes or more")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise member_error(origin, name, "has a '..' component")
    if any(len(p.encode(errors="surrogateescape")) > NAME_MAX for p in parts):
        raise member_error(origin, name, f"has a component longer than {NAME_MAX} bytes")
    return "/".join(parts)


def check_symlink_target(origin: str, name: str, target: str) -> None:
    check_chars(origin, name, target)
    if not target:
        raise member_error(origin, name, "is a symlink to nothing")
    if len(target.encode(errors="surrogateescape")) >= PATH_MAX:
        raise member_error(origin, name, f"is a symlink with a target of {PATH_MAX} bytes or more")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Budget(io.RawIOBase):
    """The decompressed stream, refusing to give more than it is allowed to.

    `total` bounds the whole stream (a gzip bomb); `phase` what the current step may read: the
    headers of one member, or its data.
    """

    def __init__(self, f: Readable, origin: str, total: int) -> None:
        self._f = f
        self._origin = origin
        self.total = total
        self.phase = _MAX_HEADER_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._f.read(len(buffer))
        n = len(data)
        self.total -= n
        self.phase -= n
        if self.total < 0:
            raise ArchiveError(
                f"{self._origin}: the archive decompresses to more than its size limit",
                hint=_HINT,
            )
        if self.phase < 0:
            raise ArchiveError(
                f"{self._origin}: a member's headers are longer than {_MAX_HEADER_BYTES} bytes",
                hint=_HINT,
            )
        buffer[:n] = data
        return n

    def drain(self) -> None:
        """Read to the end, so that the decompressor checks the stream's end and checksum."""
        self.phase = self.total + 1
        while self.read(_CHUNK):
            pass


_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"
_BZIP2 = b"BZh"
_ZSTD = b"\x28\xb5\x2f\xfd"


def decompressed(raw: Readable, origin: str) -> Readable:
    """`raw` decompressed as its magic says (gzip, xz, bzip2), or `raw` itself; read once."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(_Raw(raw))
    with _reading(origin, "archive"):
        magic = buffered.peek(8)[:8]
    if magic.startswith(_GZIP):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic.startswith(_XZ):
        return lzma.LZMAFile(buffered)
    if magic.startswith(_BZIP2):
        return bz2.BZ2File(buffered)
    if magic.startswith(_ZSTD):
        raise ArchiveError(
            f"{origin} is compressed with zstd, which Python's standard library does not read",
            hint=f"decompress it first: zstd -d {origin}",
        )
    return buffered


class _Raw(io.RawIOBase):
    """Any binary stream as a raw one, so that io.BufferedReader can peek at its magic."""

    def __init__(self, f: Readable) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _opened(source: Path | IO[bytes], origin: str) -> Iterator[IO[bytes]]:
    if isinstance(source, Path):
        with _reading(origin, "archive"):
            f = source.open("rb")
        with f:
            yield f
    else:
        yield source


class _MemberData(io.RawIOBase):
    """A FILE member's data as the archive gives it: exactly `size` bytes, read errors turned
    into ArchiveErrors, and unreadable once the iterator has moved on."""

    def __init__(self, f: IO[bytes], origin: str, what: str, name: str, size: int) -> None:
        self._f = f
        self._origin = origin
        self._what = what
        self._name = name
        self.left = size
        self.stale = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.stale:
            raise InternalError(f"{self._name}: its data read after the next member")
        with _reading(self._origin, self._what):
            data = self._f.read(min(len(buffer), self.left))
        if not data and self.left:
            raise member_error(self._origin, self._name, "is cut short: the archive is truncated")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def skip(self) -> None:
        while self.left and self.read(_CHUNK):
            pass
        self.stale = True


def _tar_kind(origin: str, info: tarfile.TarInfo) -> MemberKind:
    if info.isreg():
        return MemberKind.FILE
    if info.isdir():
        return MemberKind.DIR
    if info.issym():
        return MemberKind.SYMLINK
    if info.islnk():
        return MemberKind.HARDLINK
    what = {
        tarfile.CHRTYPE: "a character device",
        tarfile.BLKTYPE: "a block device",
        tarfile.FIFOTYPE: "a FIFO",
    }.get(info.type, f"of tar type {info.type!r}")
    raise member_error(origin, info.name, f"is {what}, not a file, directory or link")


class _Limits:
    """The member count and the data total, shared by the tar and cpio readers."""

    def __init__(self, origin: str, max_total: int, max_members: int) -> None:
        self.origin = origin
        self.max_total = max_total
        self.max_members = max_members
        self.members = 0
        self.total = 0

    def count(self, name: str, size: int) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveError(
                f"{self.origin}: more than {self.max_members} members (at {name!r})", hint=_HINT
            )
        self.total += size
        if self.total > self.max_total:
            raise ArchiveError(
                f"{self.origin}: member {name!r} takes its files past {self.max_total} bytes",
                hint="no real archive of this kind is that large: it is damaged or a "
                "decompression bomb",
            )


def _member(
    limits: _Limits,
    raw_name: str,
    kind: MemberKind,
    size: int,
    mode: int,
    linkname: str,
    mtime: float | None,
    reader: Callable[[], IO[bytes]] | None,
) -> TarMember | None:
    """A checked member, or None for the archive's root directory."""
    origin = limits.origin
    name = normalise(origin, raw_name)
    limits.count(raw_name, size if kind is MemberKind.FILE else 0)
    if not name:
        if kind is not MemberKind.DIR:
            raise member_error(origin, raw_name, "has an empty name")
        return None
    if kind is MemberKind.SYMLINK:
        check_symlink_target(origin, name, linkname)
    elif kind is MemberKind.HARDLINK:
        if not linkname:
            raise member_error(origin, name, "is a hard link to nothing")
        if linkname.startswith("/"):
            raise member_error(origin, name, f"is a hard link to an absolute path {linkname!r}")
        linkname = normalise(origin, linkname)
        if not linkname:
            raise member_error(origin, name, "is a hard link to the archive's root")
    return TarMember(
        name,
        kind,
        size if kind is MemberKind.FILE else 0,
        mode & 0o7777,
        linkname,
        mtime,
        reader if kind is MemberKind.FILE else None,
    )


def iter_tar(
    source: Path | IO[bytes], origin: str, *, max_total: int, max_members: int = 100_000
) -> Iterator[TarMember]:
    """The checked members of a tarball (uncompressed, gzip, xz or bzip2), in archive order.

    A stream is read once, in order: it may be a pipe or a window onto a .deb. A FILE's data
    is read through `member.open()` before the next member is asked for; what is left unread
    is skipped. `max_total` bounds the FILE sizes together (checked from the headers, before
    any data is read) and so, with headers, what is decompressed.
    """
    limits = _Limits(origin, max_total, max_members)
    with _opened(source, origin) as raw:
        stream = decompressed(raw, origin)
        budget = _Budget(stream, origin, max_total + max_members * _MEMBER_OVERHEAD)
        with _open_tar(budget, origin) as tar:
            while True:
                budget.phase = _MAX_HEADER_BYTES
                with _reading(origin, "tarball"):
                    info = tar.next()
                if info is None:
                    break
                tar.members.clear()
                kind = _tar_kind(origin, info)
                data: _MemberData | None = None
                if kind is MemberKind.FILE:
                    with _reading(origin, "tarball"):
                        extracted = tar.extractfile(info)
                    if extracted is None:  # tarfile gives data for every regular file
                        raise InternalError(f"tarfile gave no data for {info.name}")
                    data = _MemberData(extracted, origin, "tarball", info.name, info.size)
                    budget.phase = _MAX_HEADER_BYTES + info.size
                member = _member(
                    limits,
                    info.name,
                    kind,
                    info.size,
                    info.mode,
                    info.linkname,
                    info.mtime,
                    None if data is None else _open_once(data),
                )
                if member is not None:
                    yield member
                if data is not None:
                    data.skip()
            with _reading(origin, "tarball"):
                budget.drain()


class _StreamTar(tarfile.TarFile):
    # Declared for mypy (typeshed leaves it out): in stream mode tarfile keeps every TarInfo
    # in it, a million of them for a big tree, and nothing here looks one up again.
    members: list[tarfile.TarInfo]


def _open_tar(budget: _Budget, origin: str) -> _StreamTar:
    with _reading(origin, "tarball"):
        return _StreamTar.open(fileobj=io.BufferedReader(budget), mode="r|")


def _open_once(data: _MemberData) -> Callable[[], IO[bytes]]:
    def reader() -> IO[bytes]:
        return io.BufferedReader(data, buffer_size=_CHUNK)

    return reader
