"""The crash-loop guard's bookkeeping across boots (boots simulated by their boot ids)."""

from __future__ import annotations

import logging

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.runtime import guard, kernel
from ksplice_pkg.runtime.guard import GuardState, judge_previous_boot
from ksplice_pkg.runtime.store import Store


def previous_boot(store: Store, loaded: list[str], proven: list[str], stable: bool) -> None:
    GuardState(boot_id="old", loaded=loaded, stable=stable, proven=proven).write(store)


def test_new_update_of_a_crashed_boot_is_quarantined_proven_ones_are_not(store: Store) -> None:
    previous_boot(store, ["good", "new"], proven=["good"], stable=False)
    assert list(judge_previous_boot(store, "now")) == ["new"]
    assert list(store.quarantined()) == ["new"]
    assert "went down" in store.quarantined()["new"]


def test_stable_previous_boot_quarantines_nothing(store: Store) -> None:
    previous_boot(store, ["a"], proven=[], stable=True)
    assert judge_previous_boot(store, "now") == {}
    assert store.quarantined() == {}


def test_two_crashed_boots_in_a_row_with_proven_updates_quarantine_them(store: Store) -> None:
    previous_boot(store, ["a", "b"], proven=["a", "b"], stable=False)
    assert judge_previous_boot(store, "boot2") == {}  # one could be a power cut
    state = GuardState.read(store)
    state.loaded, state.stable = ["a", "b"], False
    state.write(store)
    assert sorted(judge_previous_boot(store, "boot3")) == ["a", "b"]


def test_same_boot_is_not_judged_twice(store: Store) -> None:
    previous_boot(store, ["x"], proven=[], stable=False)
    judge_previous_boot(store, "now")
    guard.clear(store)
    assert judge_previous_boot(store, "now") == {}


def test_loads_of_this_boot_become_proven_once_stable(store: Store) -> None:
    guard.note_loading(store, "u1")
    state = GuardState.read(store)
    assert state.boot_id == kernel.boot_id() and state.loaded == ["u1"] and not state.stable
    assert guard.remaining(store, 3600) > 0
    assert guard.remaining(store, 0) == 0
    assert not guard.boot_stable(store)
    assert guard.mark_stable(store) == ["u1"]
    assert guard.boot_stable(store)
    assert GuardState.read(store).proven == ["u1"]
    assert guard.mark_stable(store) == []


def test_clear_one_or_all(store: Store) -> None:
    guard.quarantine(store, "a", "r")
    guard.quarantine(store, "b", "r")
    assert guard.clear(store, "a") == ["a"]
    assert list(store.quarantined()) == ["b"]
    assert guard.clear(store) == ["b"]
    assert store.quarantined() == {}


def test_torn_guard_file_does_not_break_the_next_run(store: Store) -> None:
    store.guard_file.parent.mkdir(parents=True)
    store.guard_file.write_text('{"boot_id": "old", "loaded": ["a"')
    assert judge_previous_boot(store, "now") == {}
    assert GuardState.read(store).boot_id == "now"


def test_a_load_the_guard_cannot_record_is_refused_and_the_record_kept(store: Store) -> None:
    guard.note_loading(store, "u1")
    before = store.guard_file.read_bytes()
    # The state directory's file system refuses the write (here: a file where a directory is).
    store.quarantine_file("x").parent.parent.mkdir(parents=True, exist_ok=True)
    blocked = Store(store.updates_dir, store.guard_file, store.run_dir)
    with pytest.raises(KspliceError, match="u2: not loaded: the crash-loop guard cannot record"):
        guard.note_loading(blocked, "u2")
    assert store.guard_file.read_bytes() == before


def test_judging_does_not_report_what_it_quarantines_the_caller_does(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    previous_boot(store, ["new"], proven=[], stable=False)
    with caplog.at_level(logging.DEBUG, logger="ksplice_pkg"):
        assert list(judge_previous_boot(store, "now")) == ["new"]
    assert "quarantined" not in caplog.text


def test_without_systemd_a_load_starts_no_unit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "SYSTEMD_BOOTED", store.run_dir / "no-systemd-here")
    guard.arm_shutdown_mark(store)  # would run systemctl (and fail) if it thought otherwise
    assert not (store.run_dir / guard.SHUTDOWN_ARMED).exists()
