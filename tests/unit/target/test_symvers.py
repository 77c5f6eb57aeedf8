"""Module.symvers (target.symvers): exports with their CRC, owner and namespace; anything else
is refused naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.symvers import Symvers

# Module.symvers: CRC, name, module, export type, namespace; tab separated.
SYMVERS = (
    "0x1b2c3d4e\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x00000000\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x5a5a5a5a\tusb_stor_probe\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\tUSB_STORAGE\n"
    "0x12121212\tcxl_bus_type\tvmlinux\tEXPORT_SYMBOL_GPL\tCXL\n"
)


def test_vmlinux_exports_with_crc_and_namespace(tmp_path: Path) -> None:
    path = tmp_path / "Module.symvers"
    path.write_text(SYMVERS)
    exports = Symvers.load(path).vmlinux_exports()
    # A module's export is not vmlinux's: the update's module cannot rely on it being loaded.
    assert set(exports) == {"printk", "seq_puts", "cxl_bus_type"}
    assert exports["printk"].crc == 0x1B2C3D4E and not exports["printk"].gpl
    assert exports["cxl_bus_type"].namespace == "CXL" and exports["cxl_bus_type"].gpl
    assert exports["seq_puts"].namespace == ""


@pytest.mark.parametrize(
    "text",
    [
        "0x1\tprintk\n",  # too few columns
        "crc\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n",  # not a CRC
        "0x1\tprintk\tvmlinux\tEXPORT_EVERYTHING\t\n",  # not an export type
        "0x1\ta_module_export\tfs/fat/fat\tEXPORT_SYMBOL\t\n",  # nothing from vmlinux
    ],
)
def test_malformed_symvers_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Module.symvers"
    path.write_text(text)
    with pytest.raises(KspliceError) as e:
        Symvers.load(path)
    assert str(path) in e.value.message
