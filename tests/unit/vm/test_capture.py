"""The GNU build-id among ELF notes (vm.capture): what /sys/kernel/notes of the booted kernel
holds, to compare with the vmlinux's own."""

from __future__ import annotations

import struct

from ksplice_pkg.vm.capture import gnu_build_id


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_build_id_is_found_among_other_notes() -> None:
    notes = _note(b"Xen\0", 1, b"\1\2\3") + _note(b"GNU\0", 3, bytes(range(20)))
    assert gnu_build_id(notes) == bytes(range(20)).hex()
    assert gnu_build_id(_note(b"Linux\0", 6, b"abc")) is None
