"""A gzip-compressed cpio (newc) archive writer, the format the kernel unpacks as initramfs.

Written here rather than shelling out to cpio so the archive's content is exactly what the lab
asks for: no host paths, owners or timestamps leak into the guest.
"""

from __future__ import annotations

import gzip
import stat
from pathlib import Path


class Initramfs:
    def __init__(self) -> None:
        self._entries: list[tuple[str, int, bytes]] = []
        self._dirs: set[str] = set()

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.add_dir("/".join(parts[:i]))

    def add_dir(self, path: str) -> None:
        path = path.strip("/")
        if path and path not in self._dirs:
            self._parents(path)
            self._dirs.add(path)
            self._entries.append((path, stat.S_IFDIR | 0o755, b""))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self._entries.append((path, stat.S_IFREG | mode, data))

    def add_host_file(self, path: str, source: Path, mode: int | None = None) -> None:
        if mode is None:
            mode = source.stat().st_mode & 0o777
        self.add_file(path, source.read_bytes(), mode)

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, (name, mode, data) in enumerate([*self._entries, ("TRAILER!!!", 0, b"")], 1):
            encoded = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
            out += b"070701" + b"".join(b"%08X" % f for f in fields)
            out += encoded
            out += b"\0" * (-len(out) % 4)
            out += data
            out += b"\0" * (-len(out) % 4)
        return gzip.compress(bytes(out), compresslevel=1, mtime=0)

    def write(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())
