"""The target's modules directory: the `modules` entry of a config dir (as fetch lays it out),
--modules-dir over it, and a named directory that does not exist refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.files import TargetSpec


def _config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    (target / "System.map").write_text("ffffffff81000000 T _text\n")
    (target / ".config").write_text("CONFIG_LIVEPATCH=y\n")
    (target / "Module.symvers").write_text("0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    return target


def test_modules_entry_of_the_config_dir_is_the_modules_dir(tmp_path: Path) -> None:
    target = _config_dir(tmp_path)
    assert TargetSpec(target, release="6.1.0-1-amd64").resolve().modules_dir is None
    image = tmp_path / "image/lib/modules/6.1.0-1-amd64"
    image.mkdir(parents=True)
    (target / "modules").symlink_to(image)
    assert TargetSpec(target, release="6.1.0-1-amd64").resolve().modules_dir == target / "modules"
    other = tmp_path / "other"
    other.mkdir()
    spec = TargetSpec(target, release="6.1.0-1-amd64", modules_dir=other)
    assert spec.resolve().modules_dir == other


def test_modules_dir_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    spec = TargetSpec(_config_dir(tmp_path), release="6.1.0-1-amd64", modules_dir=missing)
    with pytest.raises(KspliceError) as e:
        spec.resolve()
    assert str(missing) in e.value.message
