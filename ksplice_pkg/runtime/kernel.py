"""The running kernel, as the runtime checks updates against it."""

from __future__ import annotations

import os
import struct
from pathlib import Path

NOTES = Path("/sys/kernel/notes")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
NT_GNU_BUILD_ID = 3


def release() -> str:
    """What `uname -r` prints."""
    return os.uname().release


def parse_build_id(notes: bytes) -> str | None:
    """The GNU build-id (hex) in a sequence of ELF notes, as /sys/kernel/notes holds them."""
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from("<III", notes, offset)
        offset += 12
        name = notes[offset : offset + namesz]
        offset += (namesz + 3) & ~3
        desc = notes[offset : offset + descsz]
        offset += (descsz + 3) & ~3
        if note_type == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
            return desc.hex()
    return None


def build_id() -> str | None:
    """The running kernel's GNU build-id, None if the kernel does not expose its notes."""
    try:
        return parse_build_id(NOTES.read_bytes())
    except OSError:
        return None


def boot_id() -> str:
    """A random id of this boot, new at every boot (the crash-loop guard tells boots apart)."""
    return BOOT_ID.read_text().strip()
