"""Hostile archives made in the test: tarballs written with tarfile (which writes any name it is
given), newc cpio written here, and a box to unpack them in whose outside is watched.

The layouts are the known ways out of an unpack directory: `..` and absolute names, a symlink
chain that lexical normalisation does not see (`q -> .`), the CVE-2025-4517 chain whose
resolved path passes PATH_MAX, hard links through links or to outside, writes through a
symlink that an earlier member (or the directory's previous content) made.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, chardev, fifo
    data: bytes = b""
    link: str = ""  # a symlink's target, the member a hard link links to
    mode: int = 0o644
    mtime: int = 1_700_000_000


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> Entry:
    return Entry(name, "file", data, mode=mode)


def directory(name: str) -> Entry:
    return Entry(name, "dir", mode=0o755)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, "symlink", link=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", link=target)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: list[Entry], compression: str = "") -> bytes:
    """A tarball of exactly these entries; compression "", "gz", "xz" or "bz2"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TAR_TYPES[e.kind]
            info.mode = e.mode
            info.mtime = e.mtime
            info.linkname = e.link
            info.size = len(e.data) if e.kind == "file" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return compress(buf.getvalue(), compression)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "bz2":
        return bz2.compress(data)
    return data


def write_tar(path: Path, entries: list[Entry], compression: str = "gz") -> Path:
    path.write_bytes(tar_bytes(entries, compression))
    return path


_CPIO_TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "chardev": stat.S_IFCHR,
    "fifo": stat.S_IFIFO,
}


def cpio_bytes(entries: list[Entry]) -> bytes:
    """A newc archive of these entries, as rpm writes one. A "hardlink" entry shares the inode
    of the entry it names; like rpm, the data of such a file comes with its last name only."""
    inodes: dict[str, int] = {}
    names: dict[int, list[Entry]] = {}
    for number, e in enumerate(entries, 1):
        ino = inodes[e.link] if e.kind == "hardlink" else number
        inodes[e.name] = ino
        names.setdefault(ino, []).append(e)
    data_of = {
        ino: next(e.data for e in group if e.kind != "hardlink") for ino, group in names.items()
    }
    out = bytearray()
    for e in [*entries, Entry("TRAILER!!!", "trailer")]:
        ino = inodes.get(e.name, 0)
        group = names.get(ino, [e])
        mode = 0 if e.kind == "trailer" else _CPIO_TYPES["file" if e.kind == "hardlink" else e.kind]
        if e.kind == "symlink":
            body = e.link.encode()
        elif e.kind in ("file", "hardlink"):
            body = data_of[ino] if e is group[-1] else b""
        else:
            body = b""
        encoded = e.name.encode() + b"\0"
        bits = group[0].mode  # the names of one file share its inode, and so its mode
        fields = (ino, mode | bits, 0, 0, len(group), e.mtime, len(body), 8, 1, 0, 0)
        out += b"070701" + b"".join(b"%08X" % f for f in (*fields, len(encoded), 0))
        out += encoded + b"\0" * (-(110 + len(encoded)) % 4)
        out += body + b"\0" * (-len(body) % 4)
    return bytes(out)


# --- the known ways out ---------------------------------------------------------------------

# `q -> .` makes q/q/q/.. the parent of the directory q is in, where normpath sees q/q.
Q_CHAIN = [symlink("q", "."), symlink("x", "q/q/q/../.."), file("x/sentinel/evil")]
# The escaping link first, while q does not exist: resolved then, it stays inside.
Q_CHAIN_LATE = [symlink("x", "q/q/q/../.."), symlink("q", "."), file("x/sentinel/evil")]


def cve_2025_4517(*, through_short_links: bool = True) -> list[Entry]:
    """The CVE-2025-4517 chain, as the public write-ups lay it out: 16 nested directories of
    247-character names, each reached by a one-letter symlink, so that `a/b/.../p` is short
    but resolves past PATH_MAX, where os.path.realpath gives up and tarfile's filter took the
    rest lexically. A link at the bottom climbs back to the top; `escape` goes one further,
    to the sentinel, and a file is written through it.

    `through_short_links=False` makes the bottom link at its real path, so that the chain is
    refused at `escape` rather than at the link made through a symlinked directory.
    """
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    entries: list[Entry] = []
    path = ""
    for step in steps:
        entries.append(directory(f"{path}{comp}"))
        entries.append(symlink(f"{path}{step}", comp))
        path += f"{comp}/"
    short = "/".join(steps)
    entries.append(
        symlink(f"{short if through_short_links else path.rstrip('/')}/{'l' * 254}", "../" * 16)
    )
    entries.append(symlink("escape", f"{short}/{'l' * 254}/../sentinel"))
    entries.append(file("escape/evil"))
    return entries


class Box:
    """dest, where an archive is unpacked, beside sentinel/, which must stay as it is."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dest = root / "dest"
        self.sentinel = root / "sentinel"
        self.dest.mkdir(parents=True)
        self.sentinel.mkdir()
        (self.sentinel / "file").write_text("sentinel\n")
        self._before = self._outside()

    def _outside(self) -> dict[str, tuple[int, int, int]]:
        seen = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.root:
                dirnames.remove("dest")
            for name in dirnames + filenames:
                st = os.lstat(here / name)
                seen[os.path.relpath(here / name, self.root)] = (st.st_mode, st.st_size, st.st_ino)
        return seen

    def untouched(self) -> None:
        """Nothing written, removed or changed outside dest, nor above the box."""
        assert self._outside() == self._before
        assert sorted(p.name for p in self.root.iterdir()) == ["dest", "sentinel"]
        assert not (self.root.parent / "evil").exists()
