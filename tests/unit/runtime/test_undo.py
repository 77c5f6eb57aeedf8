"""Deferred undos (package removals): the command and the records' life. Undos of
live updates are proven in the lab (tests/lab/test_package_cumulative.py); here nothing is
applied, as on the machine that runs the unit tests."""

from __future__ import annotations

from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.runtime.store import Store


def test_undo_takes_one_of_id_all_defer_deferred(store: Store) -> None:
    for args in ([], ["--defer"], ["x", "--all"], ["x", "--deferred"], ["--all", "--deferred"]):
        result = CliRunner().invoke(main, ["undo", *args])
        assert result.exit_code == 1, (args, result.output)
        assert "--defer ID or --deferred" in result.output


def test_defer_of_an_update_not_applied_records_nothing(store: Store) -> None:
    result = CliRunner().invoke(main, ["undo", "--defer", "x"])
    assert (result.exit_code, result.output) == (0, "x is not applied\n")
    assert store.deferred_undos() == []


def test_deferred_undo_of_an_update_gone_meanwhile_is_dropped(store: Store) -> None:
    # What a cumulative update's apply leaves: the record, the superseded module gone.
    store.record_deferred_undo("a")
    result = CliRunner().invoke(main, ["undo", "--deferred"])
    assert (result.exit_code, result.output) == (0, "a: no longer applied\n")
    assert store.deferred_undos() == []
