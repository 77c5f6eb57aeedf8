"""Unpacking what distros ship (.deb, .rpm, tarballs), through ksplice_pkg.unpack.

A package or tarball is input from outside: every member is checked, and written, by
unpack.SafeTree (no member outside the unpack directory, nothing written through a link, no
device node, sizes capped). Absolute symlinks, normal in packages (`lib/modules/<release>/build
-> /usr/src/...`), point into the system the package would be installed on, not into the
unpack directory: they are left out rather than refused.

Everything is streamed: a -dbg package is a gigabyte unpacked. zstd, which Python's standard
library does not read before 3.14, goes through `zstd -dc` or `dpkg-deb --fsys-tarfile`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ksplice_pkg import unpack
from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.run import piped, run_text
from ksplice_pkg.unpack import TarMember

# Chooses the members to unpack, by their path relative to the archive's root ("usr/src/x").
Wanted = Callable[[str], bool]

# What one distro input may unpack to. The largest real ones are a Debian -dbg package (about
# 1 GB unpacked), linux-source (1.5 GB) and Fedora's kernel-debuginfo (a few GB); 16 GiB leaves
# room for their growth while a decompression bomb still stops long before the disk fills.
DISTRO_MAX_TOTAL = 16 << 30
# linux-source 6.x has about 90 000 members; ten times that leaves room, and bounds the memory
# a crafted archive of empty members takes.
DISTRO_MAX_MEMBERS = 1_000_000

_ZSTD = b"\x28\xb5\x2f\xfd"


@contextlib.contextmanager
def _payload(path: Path, offset: int = 0) -> Iterator[IO[bytes]]:
    """The compressed data of `path` from `offset`, zstd already decompressed by `zstd -dc`."""
    with path.open("rb", buffering=0) as f:
        f.seek(offset)
        if os.pread(f.fileno(), len(_ZSTD), offset) != _ZSTD:
            yield f
            return
        # The child reads from the shared file offset, set by the seek (unbuffered: no
        # read-ahead has moved it).
        try:
            with piped(["zstd", "-dc"], stdin=f) as stream:
                yield stream
        except CommandError as e:
            raise unpack.ArchiveError(
                f"{path}: not readable zstd data: {e.message}",
                hint="the file is truncated or corrupt; download it again",
            ) from e


def _write(members: Iterable[TarMember], dest: Path, origin: Path, wanted: Wanted | None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    unpack.unpack(
        members,
        dest,
        str(origin),
        max_total=DISTRO_MAX_TOTAL,
        wanted=wanted,
        skip_absolute_links=True,
    )


def _tar_members(data: IO[bytes], origin: Path) -> Iterator[TarMember]:
    return unpack.iter_tar(
        data, str(origin), max_total=DISTRO_MAX_TOTAL, max_members=DISTRO_MAX_MEMBERS
    )


def unpack_tar(archive: Path, dest: Path, wanted: Wanted | None = None) -> None:
    """Unpack a tarball (uncompressed, gzip, xz, bzip2 or zstd) into dest."""
    with _payload(archive) as data:
        _write(_tar_members(data, archive), dest, archive, wanted)


def deb_fields(deb: Path) -> dict[str, str]:
    """The control fields of a .deb (Package, Version, Architecture, Source, ...)."""
    try:
        text = run_text(["dpkg-deb", "-f", deb])
    except CommandError as e:
        raise KspliceError(f"{deb} is not a Debian package: {e.message}") from e
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and not line.startswith(" "):
            fields[name] = value.strip()
    return fields


_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def _deb_data_member(deb: Path) -> tuple[str, int, int] | None:
    """Name, offset and size of a .deb's data.tar.* member, read from the ar archive."""
    with deb.open("rb") as f:
        if f.read(len(_AR_MAGIC)) != _AR_MAGIC:
            return None
        offset = len(_AR_MAGIC)
        while header := f.read(_AR_HEADER):
            if len(header) < _AR_HEADER:
                return None
            name = header[:16].decode(errors="replace").strip().rstrip("/")
            size = int(header[48:58].decode().strip() or 0)
            offset += _AR_HEADER
            if name.startswith("data.tar"):
                return name, offset, size
            offset += size + (size & 1)  # members are 2-byte aligned
            f.seek(offset)
    return None


def unpack_deb(deb: Path, dest: Path, wanted: Wanted | None = None) -> None:
    """Unpack a .deb's files into dest."""
    try:
        with _deb_data(deb) as data:
            _write(_tar_members(data, deb), dest, deb, wanted)
    except CommandError as e:
        raise KspliceError(f"{deb} is not a Debian package: {e.message}") from e


@contextlib.contextmanager
def _deb_data(deb: Path) -> Iterator[IO[bytes]]:
    """A .deb's data tarball, streamed straight from the .deb when Python reads its
    compression (gzip, xz, bzip2), else (zstd, as Ubuntu uses) from `dpkg-deb --fsys-tarfile`
    through a pipe."""
    member = _deb_data_member(deb)
    if member is not None and member[0] in (
        "data.tar",
        "data.tar.gz",
        "data.tar.xz",
        "data.tar.bz2",
    ):
        _, offset, size = member
        with deb.open("rb") as f:
            f.seek(offset)
            yield io.BufferedReader(_Window(f, size))
    else:
        with piped(["dpkg-deb", "--fsys-tarfile", deb]) as data:
            yield data


class _Window(io.RawIOBase):
    """`size` bytes of a file from its current position, as a stream of their own."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


@dataclass(frozen=True)
class RpmHeader:
    name: str
    version: str
    release: str
    arch: str
    is_source: bool

    @property
    def nvr(self) -> str:
        return f"{self.name}-{self.version}-{self.release}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list) and value:
        return _text(value[0])
    return "" if value is None else str(value)


def _rpm_open(rpm: Path) -> tuple[dict[str, object], int]:
    """An RPM's header tags and where its payload starts."""
    import rpmfile

    try:
        with rpmfile.open(rpm) as r:
            return r.headers, int(r.data_offset)
    except Exception as e:  # rpmfile raises bare Exceptions on a bad lead or header
        raise KspliceError(f"{rpm} is not an RPM package: {e}") from e


def rpm_header(rpm: Path) -> RpmHeader:
    h, _ = _rpm_open(rpm)
    # A source RPM records no source RPM of its own; its lead type says so too.
    is_source = "sourcerpm" not in h or "sourcepackage" in h
    return RpmHeader(
        _text(h.get("name")),
        _text(h.get("version")),
        _text(h.get("release")),
        _text(h.get("arch")),
        is_source,
    )


@contextlib.contextmanager
def rpm_payload(rpm: Path) -> Iterator[Iterator[TarMember]]:
    """The checked members of an RPM's payload (a gzip, xz, bzip2 or zstd cpio archive).

    rpmfile finds where the payload starts; the cpio is read by unpack.iter_cpio, since
    rpmfile gives neither the inode numbers that make hard links nor the file types that
    tell a device node, and holds a zstd payload whole in memory.
    """
    with _payload(rpm, _rpm_open(rpm)[1]) as data:
        yield unpack.iter_cpio(
            data, str(rpm), max_total=DISTRO_MAX_TOTAL, max_members=DISTRO_MAX_MEMBERS
        )


def unpack_rpm(rpm: Path, dest: Path, wanted: Wanted | None = None) -> None:
    """Unpack an RPM's files into dest."""
    with rpm_payload(rpm) as members:
        _write(members, dest, rpm, wanted)
