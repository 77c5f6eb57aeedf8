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
import errno
import gzip
import io
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Self

from ksplice_pkg.errors import IntegrityError, InternalError, KspliceError
from ksplice_pkg.fsutil import Readable
from ksplice_pkg.log import logger

__all__ = [
    "ArchiveError",
    "MemberKind",
    "SafeTree",
    "TarMember",
    "iter_cpio",
    "iter_tar",
    "unpack",
    "unpack_tar",
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


class ArchiveError(IntegrityError):
    """An archive is unreadable, or a member of it is unsafe to unpack (the message says which).

    Exit status 11, as every IntegrityError."""


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


def _member_error(origin: str, name: str, why: str) -> ArchiveError:
    return ArchiveError(f"{origin}: member {name!r} {why}", hint=_HINT)


def _unreadable(origin: str, what: str, e: BaseException) -> ArchiveError:
    return ArchiveError(
        f"{origin}: not a readable {what}: {str(e) or type(e).__name__}",
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


def _check_chars(origin: str, name: str, text: str) -> None:
    """NUL and control characters: no archive means them, and a terminal shows them as lies."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _member_error(origin, name, "has a control character in its name or link target")


def _normalise(origin: str, name: str) -> str:
    """The relative POSIX path a member name means; refuses names that mean to leave the tree.

    "" for the archive's root (".", "./"), which every .deb lists first.
    """
    _check_chars(origin, name, name)
    if not name:
        raise _member_error(origin, name, "has an empty name")
    if name.startswith("/"):
        raise _member_error(origin, name, "has an absolute name")
    if len(name.encode(errors="surrogateescape")) >= PATH_MAX:
        raise _member_error(origin, name[:80] + "...", f"has a name of {PATH_MAX} bytes or more")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _member_error(origin, name, "has a '..' component")
    if any(len(p.encode(errors="surrogateescape")) > NAME_MAX for p in parts):
        raise _member_error(origin, name, f"has a component longer than {NAME_MAX} bytes")
    return "/".join(parts)


def _check_symlink_target(origin: str, name: str, target: str) -> None:
    _check_chars(origin, name, target)
    if not target:
        raise _member_error(origin, name, "is a symlink to nothing")
    if len(target.encode(errors="surrogateescape")) >= PATH_MAX:
        raise _member_error(origin, name, f"is a symlink with a target of {PATH_MAX} bytes or more")


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


def _decompressed(raw: Readable, origin: str) -> Readable:
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


class _MemberData:
    """A FILE member's data as the archive gives it: exactly `size` bytes, read errors turned
    into ArchiveErrors, and unreadable once the iterator has moved on. Each open() is a stream
    of its own over it, whose close() leaves the archive as it is."""

    def __init__(self, f: Readable, origin: str, what: str, name: str, size: int) -> None:
        self._f = f
        self._origin = origin
        self._what = what
        self._name = name
        self.left = size
        self.stale = False

    def read(self, size: int = -1, /) -> bytes:
        if self.stale:
            raise InternalError(f"{self._name}: its data read after the next member")
        n = self.left if size < 0 else min(size, self.left)
        with _reading(self._origin, self._what):
            data = self._f.read(n)
        if n and not data:
            raise _member_error(self._origin, self._name, "is cut short: the archive is truncated")
        self.left -= len(data)
        return data

    def opener(self) -> Callable[[], IO[bytes]]:
        def reader() -> IO[bytes]:
            return io.BufferedReader(_Raw(self), buffer_size=_CHUNK)

        return reader

    def skip(self) -> None:
        while self.left:
            self.read(_CHUNK)
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
    raise _member_error(origin, info.name, f"is {what}, not a file, directory or link")


class _Limits:
    """The member count and the data total, shared by the tar and cpio readers."""

    def __init__(self, origin: str, max_total: int, max_members: int) -> None:
        self.origin = origin
        self.max_total = max_total
        self.max_members = max_members
        self.members = 0
        self.total = 0

    def stream_bytes(self) -> int:
        """What the whole decompressed stream may hold: the data, headers and padding."""
        return self.max_total + self.max_members * _MEMBER_OVERHEAD

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
    origin: str,
    raw_name: str,
    kind: MemberKind,
    size: int,
    mode: int,
    linkname: str,
    mtime: float | None,
    reader: Callable[[], IO[bytes]] | None,
) -> TarMember | None:
    """A checked member, or None for the archive's root directory."""
    name = _normalise(origin, raw_name)
    if not name:
        if kind is not MemberKind.DIR:
            raise _member_error(origin, raw_name, "has an empty name")
        return None
    if kind is MemberKind.SYMLINK:
        _check_symlink_target(origin, name, linkname)
    elif kind is MemberKind.HARDLINK:
        # A hard link names another member: the same rules hold for its name.
        try:
            target = _normalise(origin, linkname)
        except ArchiveError:
            target = ""
        if not target:
            raise _member_error(origin, name, f"is a hard link to {linkname!r}, not to a member")
        linkname = target
    is_file = kind is MemberKind.FILE
    return TarMember(
        name,
        kind,
        size if is_file else 0,
        mode & 0o7777,
        linkname,
        mtime,
        reader if is_file else None,
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
        budget = _Budget(_decompressed(raw, origin), origin, limits.stream_bytes())
        with _open_tar(budget, origin) as tar:
            while True:
                budget.phase = _MAX_HEADER_BYTES
                with _reading(origin, "tarball"):
                    info = tar.next()
                if info is None:
                    break
                tar.members.clear()
                kind = _tar_kind(origin, info)
                limits.count(info.name, info.size if kind is MemberKind.FILE else 0)
                data: _MemberData | None = None
                if kind is MemberKind.FILE:
                    with _reading(origin, "tarball"):
                        extracted = tar.extractfile(info)
                    if extracted is None:  # tarfile gives data for every regular file
                        raise InternalError(f"tarfile gave no data for {info.name}")
                    data = _MemberData(extracted, origin, "tarball", info.name, info.size)
                    budget.phase = _MAX_HEADER_BYTES + info.size
                member = _member(
                    origin,
                    info.name,
                    kind,
                    info.size,
                    info.mode,
                    info.linkname,
                    info.mtime,
                    None if data is None else data.opener(),
                )
                if member is not None:
                    yield member
                if data is not None:
                    data.skip()
            with _reading(origin, "tarball"):
                budget.drain()


class _TornTar(tarfile.ReadError):
    pass


class _StrictTarInfo(tarfile.TarInfo):
    """Headers read as tarfile reads them, except that past the first member tarfile ends the
    archive quietly where a header is missing, cut short or damaged: a tarball truncated or
    damaged there would unpack as a part of itself. Only the end-of-archive marker ends it."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        if len(buf) == 0:
            raise _TornTar("it ends before its end-of-archive marker")
        if len(buf) != tarfile.BLOCKSIZE:
            raise _TornTar("it ends in the middle of a header")
        if buf.count(0) == tarfile.BLOCKSIZE:
            return super().frombuf(buf, encoding, errors)  # the end marker, as tarfile wants it
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            raise _TornTar(f"a damaged header ({e})") from e


class _StreamTar(tarfile.TarFile):
    tarinfo = _StrictTarInfo
    # Declared for mypy (typeshed leaves it out): in stream mode tarfile keeps every TarInfo
    # in it, a million of them for a big tree, and nothing here looks one up again.
    members: list[tarfile.TarInfo]


def _open_tar(budget: _Budget, origin: str) -> _StreamTar:
    with _reading(origin, "tarball"):
        return _StreamTar.open(fileobj=io.BufferedReader(budget), mode="r|")


# --- cpio (the newc format of RPM payloads and initramfs images) ---------------------------

_NEWC = (b"070701", b"070702")  # without and with a checksum, which rpm leaves at 0
_NEWC_HEADER = 110
_TRAILER = "TRAILER!!!"


class _Cpio:
    """The decompressed cpio stream: exact reads, and the 4-byte alignment newc keeps."""

    def __init__(self, budget: _Budget, origin: str) -> None:
        self.budget = budget
        self.f = io.BufferedReader(budget)
        self.origin = origin
        self.offset = 0

    def read(self, n: int) -> bytes:
        with _reading(self.origin, "cpio archive"):
            data = self.f.read(n)
        if len(data) != n:
            raise ArchiveError(
                f"{self.origin}: not a readable cpio archive: it ends in the middle of a member",
                hint="the file is truncated or corrupt; download it again",
            )
        self.offset += n
        return data

    def align(self) -> None:
        self.read(-self.offset % 4)

    def entry(self) -> _NewcEntry | None:
        """The next entry's header and name; None at the trailer."""
        self.budget.phase = _MAX_HEADER_BYTES
        at = self.offset
        header = self.read(_NEWC_HEADER)
        if header[:6] not in _NEWC:
            # rpm writes this variant only for payloads with a file of 4 GiB or more.
            why = " (RPM's format for files of 4 GiB or more)" if header[:6] == b"07070X" else ""
            raise ArchiveError(
                f"{self.origin}: not a readable cpio archive: no newc header at byte {at}{why}",
                hint="the file is truncated or corrupt; download it again",
            )
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError as e:
            raise _unreadable(self.origin, "cpio archive", e) from e
        ino, mode, _, _, nlink, mtime, size, major, minor, _, _, namesize, _ = fields
        if not 1 < namesize <= PATH_MAX:
            raise ArchiveError(
                f"{self.origin}: the member at byte {at} has a name of {namesize - 1} bytes",
                hint=_HINT,
            )
        name = os.fsdecode(self.read(namesize)[:-1])
        self.align()
        if name == _TRAILER:
            return None
        return _NewcEntry(name, mode, (major, minor, ino), nlink, mtime, size)

    def data(self, name: str, size: int) -> _MemberData:
        self.budget.phase = _MAX_HEADER_BYTES + size
        self.offset += size
        return _MemberData(self.f, self.origin, "cpio archive", name, size)


@dataclass(frozen=True)
class _NewcEntry:
    name: str
    mode: int
    inode: tuple[int, int, int]  # device major, minor, inode number
    nlink: int
    mtime: int
    size: int


def _cpio_kind(origin: str, name: str, mode: int) -> MemberKind:
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFREG:
        return MemberKind.FILE
    if fmt == stat.S_IFDIR:
        return MemberKind.DIR
    if fmt == stat.S_IFLNK:
        return MemberKind.SYMLINK
    what = {
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
    }.get(fmt, f"of file type {fmt:o}")
    raise _member_error(origin, name, f"is {what}, not a file, directory or link")


def _links(origin: str, names: list[str], target: str, mode: int) -> Iterator[TarMember]:
    for name in names:
        yield from _some(_member(origin, name, MemberKind.HARDLINK, 0, mode, target, None, None))


def iter_cpio(
    source: Path | IO[bytes], origin: str, *, max_total: int, max_members: int = 100_000
) -> Iterator[TarMember]:
    """The checked members of a newc cpio archive (an RPM payload), as iter_tar gives them.

    cpio has no hard link entries: the names of one file share its inode number, and its data
    comes with one of them (rpm and GNU cpio: the last). They come out here as a FILE, once
    its data is there, then a HARDLINK to it for each other name.
    """
    limits = _Limits(origin, max_total, max_members)
    # Inode -> the name its data was written under, or the names still waiting for its data.
    written: dict[tuple[int, int, int], str] = {}
    waiting: dict[tuple[int, int, int], list[str]] = {}
    with _opened(source, origin) as raw:
        cpio = _Cpio(_Budget(_decompressed(raw, origin), origin, limits.stream_bytes()), origin)
        while (entry := cpio.entry()) is not None:
            name, mode, size = entry.name, entry.mode, entry.size
            kind = _cpio_kind(origin, name, mode)
            limits.count(name, size if kind is MemberKind.FILE else 0)
            linked = kind is MemberKind.FILE and entry.nlink > 1
            if kind is MemberKind.SYMLINK:
                if size >= PATH_MAX:
                    raise _member_error(origin, name, f"is a symlink of {size} bytes")
                target = os.fsdecode(cpio.read(size))
                yield from _some(_member(origin, name, kind, 0, mode, target, entry.mtime, None))
            elif kind is MemberKind.DIR:
                if size:
                    raise _member_error(origin, name, "is a directory with data")
                yield from _some(_member(origin, name, kind, 0, mode, "", entry.mtime, None))
            elif linked and entry.inode in written:
                if size:
                    raise _member_error(origin, name, "gives again the data of a hard-linked file")
                yield from _links(origin, [name], written[entry.inode], mode)
            elif linked and not size:
                waiting.setdefault(entry.inode, []).append(name)
            else:
                data = cpio.data(name, size)
                member = _member(origin, name, kind, size, mode, "", entry.mtime, data.opener())
                yield from _some(member)
                data.skip()
                if linked:
                    written[entry.inode] = name
                    yield from _links(origin, waiting.pop(entry.inode, []), name, mode)
            cpio.align()
        # A hard-linked file whose data never came is empty.
        for names in waiting.values():
            empty = _MemberData(io.BytesIO(), origin, "cpio archive", names[0], 0)
            file = MemberKind.FILE
            yield from _some(_member(origin, names[0], file, 0, 0o644, "", None, empty.opener()))
            yield from _links(origin, names[1:], names[0], 0o644)
        with _reading(origin, "cpio archive"):
            cpio.budget.drain()


def _some(member: TarMember | None) -> Iterator[TarMember]:
    if member is not None:
        yield member


# --- writing ------------------------------------------------------------------------------------

# The kernel follows at most 40 symlinks in one path walk (MAXSYMLINKS, fs/namei.c); a chain
# longer than that, or a loop, is refused rather than reasoned about.
_MAX_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SafeTree:
    """Writes members under `dest`, an existing directory, and never anywhere else.

    Every directory on the way to a member is opened without following symlinks (O_NOFOLLOW,
    one component at a time from `dest`): nothing is written through a link, whether a member
    made it or it was there before. Nothing is replaced: a member whose name exists already,
    as anything but a directory, is refused. A relative symlink is resolved before it is
    made, one component at a time through the links already in the tree, as the kernel would
    resolve it; one that leads out of `dest` is refused, and so is one that a later symlink
    would make lead out (the tree only grows, so only a new symlink can change where a link
    leads). A hard link must name a file written here. Modes are 0o755 or 0o644 (dirs 0o755),
    set explicitly, whatever the umask; owners are not kept.
    """

    def __init__(
        self, dest: Path, origin: str, *, max_total: int, skip_absolute_links: bool = False
    ) -> None:
        if not stat.S_ISDIR(os.lstat(dest).st_mode):
            raise InternalError(f"{dest} is not a directory to unpack into")
        self.dest = dest
        self.origin = origin
        self.max_total = max_total
        # Absolute symlinks in packages (lib/modules/<release>/build -> /usr/src/...) point
        # into the system the package is installed on: nothing to follow in an unpacked copy.
        self.skip_absolute_links = skip_absolute_links
        self.written = 0
        self._files: set[str] = set()
        # A path that does not exist yet -> the symlinks whose resolution went through it:
        # a symlink made there later is checked together with them.
        self._pending: dict[str, list[tuple[str, str]]] = {}

    def add(self, member: TarMember) -> None:
        if member.kind is MemberKind.DIR:
            self.add_dir(member.name)
        elif member.kind is MemberKind.FILE:
            with member.open() as data:
                self.add_file(member.name, data, member.size, member.mode, member.mtime)
        elif member.kind is MemberKind.SYMLINK:
            self.add_symlink(member.name, member.linkname)
        else:
            self.add_hardlink(member.name, member.linkname)

    def add_dir(self, name: str) -> None:
        name = self._name(name)
        with self._parent(name) as (parent, last):
            with contextlib.suppress(FileExistsError):
                os.mkdir(last, 0o755, dir_fd=parent)
            fd = self._open_dir(parent, last, name, name)
            try:
                os.fchmod(fd, 0o755)
            finally:
                os.close(fd)

    def add_file(
        self, name: str, data: IO[bytes], size: int, mode: int, mtime: float | None = None
    ) -> None:
        """Write `size` bytes of `data` as a new file; refuses a stream that has more or less."""
        name = self._name(name)
        if self.written + size > self.max_total:
            raise ArchiveError(
                f"{self.origin}: member {name!r} takes what is unpacked past "
                f"{self.max_total} bytes",
                hint="no real archive of this kind is that large: it is damaged or a "
                "decompression bomb",
            )
        with self._parent(name) as (parent, last):
            try:
                fd = os.open(last, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                raise self._replaces(name) from None
            with open(fd, "wb") as out:
                left = size
                while left:
                    chunk = data.read(min(left, _CHUNK))
                    if not chunk:
                        raise _member_error(self.origin, name, "is cut short")
                    out.write(chunk)
                    left -= len(chunk)
                    self.written += len(chunk)
                if data.read(1):
                    raise _member_error(self.origin, name, f"has more than its {size} bytes")
                out.flush()
                os.fchmod(fd, 0o755 if mode & 0o111 else 0o644)
                # kbuild compares mtimes: a headers tree whose files all had the time they
                # were unpacked at would look out of date to make.
                if mtime is not None:
                    os.utime(fd, (mtime, mtime))
        self._files.add(name)

    def add_symlink(self, name: str, target: str) -> None:
        name = self._name(name)
        _check_symlink_target(self.origin, name, target)
        if target.startswith("/"):
            if not self.skip_absolute_links:
                raise _member_error(
                    self.origin, name, f"is a symlink to an absolute path {target!r}"
                )
            logger.debug("%s: leaving out the absolute symlink %s -> %s", self.origin, name, target)
            return
        with self._parent(name) as (parent, last):
            self._check_link(name, target, name)
            try:
                os.symlink(target, last, dir_fd=parent)
            except FileExistsError:
                raise self._replaces(name) from None
        for link, link_target in self._pending.pop(name, []):
            self._check_link(link, link_target, name)

    def add_hardlink(self, name: str, target: str) -> None:
        name, target = self._name(name), self._name(target)
        if target not in self._files:
            raise _member_error(
                self.origin, name, f"is a hard link to {target!r}, not to a file unpacked before it"
            )
        with (
            self._parent(target, create=False) as (source_dir, source),
            self._parent(name) as (parent, last),
        ):
            if not stat.S_ISREG(os.stat(source, dir_fd=source_dir, follow_symlinks=False).st_mode):
                raise InternalError(f"{target} was written as a file and is no longer one")
            try:
                os.link(
                    source, last, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False
                )
            except FileExistsError:
                raise self._replaces(name) from None
        self._files.add(name)

    def _name(self, name: str) -> str:
        normal = _normalise(self.origin, name)
        if not normal:
            raise _member_error(self.origin, name, "has an empty name")
        return normal

    def _replaces(self, name: str) -> ArchiveError:
        return _member_error(self.origin, name, "replaces another member, or what was there before")

    @contextlib.contextmanager
    def _parent(self, name: str, *, create: bool = True) -> Iterator[tuple[int, str]]:
        """The directory that holds `name` (normalised), open, and the last component of `name`.

        Each directory on the way is a real one, made (0o755) when missing if `create`.
        """
        parts = name.split("/")
        fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts[:-1]):
                made = False
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                        made = True
                inner = self._open_dir(fd, part, "/".join(parts[: i + 1]), name)
                os.close(fd)
                fd = inner
                if made:
                    os.fchmod(fd, 0o755)  # mkdir's mode went through the umask
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def _open_dir(self, parent: int, part: str, path: str, name: str) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise _member_error(
                self.origin, name, f"is a hard link through {path!r}, which is not unpacked"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if path == name:
                raise self._replaces(name) from None
            raise _member_error(
                self.origin, name, f"would be written through {path!r}, a symlink or a file"
            ) from None

    def _check_link(self, link: str, target: str, added: str) -> None:
        """Refuse `link -> target` if it leads out of the tree; note where it may change."""
        walk = _LinkWalk(self.dest, link)
        try:
            escapes = walk.resolve(target)
        finally:
            walk.close()
        if walk.hops > _MAX_HOPS:
            raise _member_error(
                self.origin,
                added,
                f"makes {link!r} -> {target!r} a loop or a chain of more than {_MAX_HOPS} symlinks",
            )
        if escapes:
            because = "" if added == link else f" once {added!r} is a symlink"
            raise _member_error(
                self.origin,
                link,
                f"is a symlink to {target!r}, which leads out of the unpacked tree{because}",
            )
        for path in walk.missing:
            self._pending.setdefault(path, []).append((link, target))


class _LinkWalk:
    """Where a symlink leads, resolved one component at a time as the kernel does, with a
    directory fd per level: no PATH_MAX to overflow, no lexical shortcut (`q -> .` makes
    `q/q/..` the parent of the link's directory, not the directory itself)."""

    def __init__(self, dest: Path, link: str) -> None:
        self.dirs = [os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        self.path: list[str] = []  # from dest, each a real directory
        self.beyond: list[str] = []  # past the first component that does not exist yet
        self.todo = link.split("/")[:-1]  # the link's directory, then its target
        self.hops = 0
        self.missing: set[str] = set()

    def close(self) -> None:
        for fd in self.dirs:
            os.close(fd)

    def resolve(self, target: str) -> bool:
        """True if `target` leads out of the tree (or is absolute somewhere on the way)."""
        self.todo += target.split("/")
        self.todo.reverse()  # a stack: a symlink's target is pushed in front of what is left
        while self.todo:
            part = self.todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if self.beyond:
                    self.beyond.pop()
                elif self.path:
                    self.path.pop()
                    os.close(self.dirs.pop())
                else:
                    return True
                continue
            if self.beyond:
                # Lexical from here: a directory made there later is the same; a symlink made
                # there later is checked again.
                self.beyond.append(part)
                self.missing.add("/".join(self.path + self.beyond))
                continue
            try:
                st = os.stat(part, dir_fd=self.dirs[-1], follow_symlinks=False)
            except FileNotFoundError:
                self.beyond.append(part)
                self.missing.add("/".join(self.path + self.beyond))
                continue
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:
                    return False  # can never exist: the kernel stops here too
                raise
            if stat.S_ISLNK(st.st_mode):
                self.hops += 1
                if self.hops > _MAX_HOPS:
                    return False
                inner = os.readlink(part, dir_fd=self.dirs[-1])
                if inner.startswith("/"):
                    return True
                self.todo += reversed(inner.split("/"))
            elif stat.S_ISDIR(st.st_mode):
                self.dirs.append(os.open(part, _DIR_FLAGS, dir_fd=self.dirs[-1]))
                self.path.append(part)
            else:
                return False  # a file: nothing past it resolves, and it stays a file
        return False


def unpack(
    members: Iterable[TarMember],
    dest: Path,
    origin: str,
    *,
    max_total: int,
    wanted: Callable[[str], bool] | None = None,
    skip_absolute_links: bool = False,
) -> None:
    """Write `members` into `dest` through a SafeTree, those `wanted` (by name) only."""
    tree = SafeTree(dest, origin, max_total=max_total, skip_absolute_links=skip_absolute_links)
    for member in members:
        if wanted is not None and not wanted(member.name):
            continue
        if (
            member.kind is MemberKind.HARDLINK
            and wanted is not None
            and not wanted(member.linkname)
        ):
            logger.debug("%s: leaving out %s, a hard link to what is left out", origin, member.name)
            continue
        tree.add(member)


def unpack_tar(
    source: Path | IO[bytes],
    dest: Path,
    origin: str,
    *,
    max_total: int,
    max_members: int = 100_000,
    wanted: Callable[[str], bool] | None = None,
    skip_absolute_links: bool = False,
) -> None:
    """Unpack a tarball into `dest`, an existing directory: iter_tar into a SafeTree."""
    members = iter_tar(source, origin, max_total=max_total, max_members=max_members)
    unpack(
        members,
        dest,
        origin,
        max_total=max_total,
        wanted=wanted,
        skip_absolute_links=skip_absolute_links,
    )
