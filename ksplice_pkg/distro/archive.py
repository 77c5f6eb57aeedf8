"""Unpacking what distros ship (.deb, .rpm, tarballs) without trusting their member names.

A package or tarball is input from outside: a member named `../../etc/cron.d/x`, an absolute
path, or a file written through a symlink that points out of the unpack directory would write
outside the cache. Every member is checked before anything is written, tar members by tarfile's
`data` filter (which also catches writes through symlinks), cpio members of RPMs by the same
rules here. Absolute symlinks, normal in packages (`lib/modules/<release>/build ->
/usr/src/...`), point into the system the package would be installed on, not into the unpack
directory: they are left out rather than refused.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.run import run, run_text

# Chooses the members to unpack, by their path relative to the archive's root ("usr/src/x").
Wanted = Callable[[str], bool]


class EscapingMemberError(KspliceError):
    """An archive member would land outside the directory it is unpacked into."""


def _relative(name: str) -> str:
    return name.removeprefix("./").lstrip("/") if name not in (".", "./") else ""


def check_member_name(archive: Path, name: str) -> None:
    """Refuse absolute names and `..` components: such a member means to write elsewhere."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise EscapingMemberError(
            f"{archive} has a member that escapes the directory it is unpacked into: {name!r}",
            hint="the archive is damaged or hostile; take it from the distribution's archive",
        )


def unpack_tar(
    archive: Path, dest: Path, *, data: IO[bytes] | None = None, wanted: Wanted | None = None
) -> None:
    """Unpack a tarball (any compression tarfile reads), or `data` read from `archive`."""

    def check(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        check_member_name(archive, member.name)
        if wanted is not None and not wanted(_relative(member.name)):
            return None
        if member.issym() and member.linkname.startswith("/"):
            logger.debug("%s: leaving out the absolute symlink %s", archive, member.name)
            return None
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as e:
            raise EscapingMemberError(
                f"{archive} has a member that escapes the directory it is unpacked into: "
                f"{member.name!r} ({e})",
                hint="the archive is damaged or hostile; take it from the distribution's archive",
            ) from e

    try:
        # A stream is read once, in order ("r|*"): it may be a window onto a .deb.
        with tarfile.open(
            archive if data is None else None,
            mode="r:*" if data is None else "r|*",
            fileobj=data,
        ) as tar:
            tar.extractall(dest, filter=check)
    except tarfile.TarError as e:
        raise KspliceError(f"{archive} is not a readable tarball: {e}") from e


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
    """Unpack a .deb's files; its data tarball is checked member by member here.

    The tarball is streamed straight from the .deb when tarfile reads its compression (gzip,
    xz, bzip2: a -dbg package is a gigabyte unpacked), else (zstd, as Ubuntu uses) dpkg-deb
    decompresses it.
    """
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
            unpack_tar(deb, dest, data=io.BufferedReader(_Window(f, size)), wanted=wanted)
        return
    try:
        data = run(["dpkg-deb", "--fsys-tarfile", deb]).stdout
    except CommandError as e:
        raise KspliceError(f"{deb} is not a Debian package: {e.message}") from e
    unpack_tar(deb, dest, data=io.BytesIO(data), wanted=wanted)


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


def rpm_header(rpm: Path) -> RpmHeader:
    import rpmfile

    try:
        with rpmfile.open(rpm) as r:
            h = r.headers
    except Exception as e:  # rpmfile raises bare Exceptions on a bad lead or header
        raise KspliceError(f"{rpm} is not an RPM package: {e}") from e
    # A source RPM records no source RPM of its own; its lead type says so too.
    is_source = "sourcerpm" not in h or "sourcepackage" in h
    return RpmHeader(
        _text(h.get("name")),
        _text(h.get("version")),
        _text(h.get("release")),
        _text(h.get("arch")),
        is_source,
    )


def unpack_rpm(rpm: Path, dest: Path, wanted: Wanted | None = None) -> None:
    """Unpack an RPM's payload (gzip, xz, bzip2 or zstd cpio) member by member."""
    import rpmfile

    try:
        with rpmfile.open(rpm) as r:
            members = r.getmembers()
            for member in members:
                check_member_name(rpm, member.name)
            root = dest.resolve()
            for member in members:
                name = _relative(member.name)
                if not name or (wanted is not None and not wanted(name)):
                    continue
                target = dest / name
                # A parent that is a symlink written earlier could lead outside dest.
                if not target.parent.resolve().is_relative_to(root):
                    raise EscapingMemberError(
                        f"{rpm} has a member that escapes the directory it is unpacked into: "
                        f"{member.name!r} (through a symlink)",
                        hint="the package is damaged or hostile",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                content = r.extractfile(member).read()
                if member.issymlink:
                    link = content.decode()
                    if link.startswith("/"):
                        continue  # points into the installed system, as in a .deb
                    if not (target.parent / link).resolve().is_relative_to(root):
                        raise EscapingMemberError(
                            f"{rpm} has a symlink that points out of the unpack directory: "
                            f"{member.name!r} -> {link!r}",
                            hint="the package is damaged or hostile",
                        )
                    os.symlink(link, target)
                else:
                    target.write_bytes(content)
                    target.chmod(0o755 if member.mode & 0o111 else 0o644)
    except KspliceError:
        raise
    except Exception as e:  # rpmfile's and its decompressors' errors have no common base
        hint = None
        if "zstandard" in str(e):
            # Fedora and RHEL 9+ compress payloads with zstd, which rpmfile reads through it.
            hint = "install the zstandard Python module (pip install zstandard)"
        raise KspliceError(f"cannot unpack {rpm}: {e}", hint=hint) from e
