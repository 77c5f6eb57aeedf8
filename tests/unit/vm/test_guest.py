from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.vm.capture import gnu_build_id
from ksplice_pkg.vm.guest import module_load_order
from ksplice_pkg.vm.qemu import BootResult


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/b/virtio_blk.ko: kernel/v/virtio_ring.ko kernel/v/virtio.ko\n"
        "kernel/v/virtio_ring.ko: kernel/v/virtio.ko\n"
        "kernel/v/virtio.ko:\n"
        "kernel/p/virtio_pci.ko: kernel/v/virtio-pci-modern.ko kernel/v/virtio.ko\n"
        "kernel/v/virtio-pci-modern.ko:\n"
    )
    order = [p.name for p in module_load_order(tmp_path, ("virtio_pci", "virtio_blk"))]
    deps = {
        "virtio_blk.ko": {"virtio_ring.ko", "virtio.ko"},
        "virtio_ring.ko": {"virtio.ko"},
        "virtio_pci.ko": {"virtio-pci-modern.ko", "virtio.ko"},
    }
    assert sorted(order) == sorted(
        ["virtio.ko", "virtio_ring.ko", "virtio_blk.ko", "virtio_pci.ko", "virtio-pci-modern.ko"]
    )
    for module, needs in deps.items():
        assert all(order.index(n) < order.index(module) for n in needs), order


def test_unknown_module_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text("kernel/v/virtio.ko:\n")
    with pytest.raises(KspliceError, match="module nvme is not in"):
        module_load_order(tmp_path, ("nvme",))


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_build_id_is_found_among_other_notes() -> None:
    notes = _note(b"Xen\0", 1, b"\1\2\3") + _note(b"GNU\0", 3, bytes(range(20)))
    assert gnu_build_id(notes) == bytes(range(20)).hex()
    assert gnu_build_id(_note(b"Linux\0", 6, b"abc")) is None


def test_crash_lines() -> None:
    console = "ok\n[ 1.0] BUG: kernel NULL pointer dereference, address: 0\nfine\n"
    assert BootResult(None, console).crash_lines() == [
        "[ 1.0] BUG: kernel NULL pointer dereference, address: 0"
    ]
