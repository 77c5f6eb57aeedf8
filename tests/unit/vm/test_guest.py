"""The busybox guest (vm.guest): the order in which it loads the disk drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.vm.guest import module_load_order


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
    with pytest.raises(KspliceError, match=r"\bnvme\b"):
        module_load_order(tmp_path, ("nvme",))
