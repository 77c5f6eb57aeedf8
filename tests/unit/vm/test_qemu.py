"""What a boot left behind (vm.qemu): the console lines that mean the kernel crashed."""

from __future__ import annotations

from ksplice_pkg.vm.qemu import BootResult


def test_crash_lines() -> None:
    console = "ok\n[ 1.0] BUG: kernel NULL pointer dereference, address: 0\nfine\n"
    assert BootResult(None, console).crash_lines() == [
        "[ 1.0] BUG: kernel NULL pointer dereference, address: 0"
    ]
