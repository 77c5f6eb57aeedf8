from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.runtime.bundle import Bundle, open_update
from ksplice_pkg.runtime.errors import IntegrityError
from ksplice_pkg.runtime.install import Installed, install
from ksplice_pkg.runtime.store import Store
from tests.unit.runtime.conftest import manifest, update_dir

MODULE = b"module bytes"


def opened(directory: Path, source: str) -> Bundle:
    return open_update(str(directory), Store.default(), "any")


def test_install_puts_the_update_directory_in_the_tree(tmp_path: Path, store: Store) -> None:
    m = manifest("abc", module_data=MODULE)
    bundle = opened(update_dir(tmp_path, m, MODULE), "test")
    outcome, where = install(store, bundle)
    assert outcome is Installed.NEW
    assert where == store.updates_dir / m.kernel_release / "abc"
    assert sorted(p.name for p in where.iterdir()) == sorted(
        ["manifest.json", "ksplice_abc.ko", "description", "patch"]
    )
    assert store.installed_ids(m.kernel_release) == ["abc"]
    assert install(store, bundle)[0] is Installed.SAME


def test_install_replaces_a_different_copy(tmp_path: Path, store: Store) -> None:
    old = manifest("abc", module_data=MODULE)
    install(store, opened(update_dir(tmp_path / "1", old, MODULE), "t"))
    new = manifest("abc", module_data=MODULE + b"2")
    outcome, where = install(store, opened(update_dir(tmp_path / "2", new, MODULE + b"2"), "t"))
    assert outcome is Installed.REPLACED
    assert (where / "ksplice_abc.ko").read_bytes() == MODULE + b"2"
    assert [p.name for p in where.parent.iterdir()] == ["abc"]  # no temporary left


def test_install_refuses_a_damaged_module(tmp_path: Path, store: Store) -> None:
    m = manifest("abc", module_data=MODULE)
    with pytest.raises(IntegrityError):
        install(store, opened(update_dir(tmp_path, m, b"damaged"), "t"))
    assert store.installed_ids(m.kernel_release) == []


def test_half_installed_directory_is_not_an_update(store: Store) -> None:
    (store.updates_dir / "r" / ".abc.x1y2").mkdir(parents=True)
    (store.updates_dir / "r" / "abc").mkdir()
    assert store.installed_ids("r") == ["abc"]


def test_applied_records_survive_and_torn_ones_are_ignored(store: Store) -> None:
    m = manifest("abc")
    store.record_applied(m, "installed", 12.5)
    (store.applied_dir("bad")).mkdir(parents=True)
    (store.applied_dir("bad") / "manifest.json").write_text("{")
    records = store.applied_records()
    assert list(records) == ["abc"]
    assert records["abc"][0] == m and records["abc"][1]["applied_at"] == 12.5
    store.forget_applied("abc")
    assert store.applied_records() == {}
