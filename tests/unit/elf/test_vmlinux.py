"""The target's linked image (elf.vmlinux) on a kernel in miniature that ld links here, checked
against GNU readelf and objcopy: .text's address is _text, bytes at link-time addresses, the
GNU build-id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError
from tests.unit.tools import LINK_TEXT, link_vmlinux, section_bytes, tool

UNIT = "static int counter;\nint entry(int x) { return x + counter++; }\n"


@pytest.fixture
def kernel(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    vmlinux, system_map = link_vmlinux(tmp_path, {"u": UNIT})
    addresses = {}
    for line in system_map.read_text().splitlines():
        address, _, name = line.split()
        addresses[name] = int(address, 16)
    return vmlinux, addresses


def test_text_address_and_bytes(kernel: tuple[Path, dict[str, int]]) -> None:
    path, addresses = kernel
    vmlinux = Vmlinux.open(path)
    assert vmlinux.text_address == addresses["_text"] == LINK_TEXT
    code = section_bytes(path, ".text")
    entry = addresses["entry"] - LINK_TEXT
    assert vmlinux.read(addresses["entry"], 8) == code[entry : entry + 8]
    assert vmlinux.is_executable(addresses["entry"])
    assert not vmlinux.is_executable(addresses["counter"])
    assert vmlinux.section_name(addresses["counter"]) == ".bss"


def test_build_id_is_the_gnu_note(kernel: tuple[Path, dict[str, int]]) -> None:
    path, _ = kernel
    m = re.search(r"Build ID: ([0-9a-f]+)", tool("readelf", "-n", path))
    assert m is not None
    assert Vmlinux.open(path).build_id() == m[1]


def test_reads_outside_the_image_or_of_bss_are_refused(
    kernel: tuple[Path, dict[str, int]],
) -> None:
    path, addresses = kernel
    vmlinux = Vmlinux.open(path)
    with pytest.raises(KspliceError, match=r"\b0x1000\b"):
        vmlinux.read(0x1000, 4)
    with pytest.raises(KspliceError, match=r"\.bss"):  # zero-filled at boot, no bytes in file
        vmlinux.read(addresses["counter"], 4)


def test_what_is_not_a_vmlinux_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "vmlinux"
    text.write_text("not an ELF file\n")
    with pytest.raises(KspliceError, match=re.escape(str(text))):
        Vmlinux.open(text)
    with pytest.raises(KspliceError, match=re.escape(str(tmp_path / "missing"))):
        Vmlinux.open(tmp_path / "missing")
