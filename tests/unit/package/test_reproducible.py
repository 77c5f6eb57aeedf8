"""Same update and SOURCE_DATE_EPOCH: byte-identical packages, in both formats."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ksplice_pkg.package import PackageFormat
from tests.unit.package.conftest import MakeUpdate, build


@pytest.mark.parametrize("fmt", list(PackageFormat))
def test_reproducible(fmt: PackageFormat, make_update: MakeUpdate, tmp_path: Path) -> None:
    tarball = make_update("fix1")
    (first,) = build([tarball], fmt, tmp_path / "one")
    # A clock that moved on must not show: every timestamp comes from the epoch.
    time.sleep(1.1)
    (second,) = build([tarball], fmt, tmp_path / "two")
    assert first.read_bytes() == second.read_bytes()
    (other_epoch,) = build([tarball], fmt, tmp_path / "three", epoch=1_900_000_000)
    assert other_epoch.read_bytes() != first.read_bytes()
    # Without SOURCE_DATE_EPOCH the update's own creation time stands in for it.
    (no_epoch_1,) = build([tarball], fmt, tmp_path / "four", epoch=None)
    time.sleep(1.1)
    (no_epoch_2,) = build([tarball], fmt, tmp_path / "five", epoch=None)
    assert no_epoch_1.read_bytes() == no_epoch_2.read_bytes()
