"""The derivation's kept round state (upload.resume): what it answers for, and what not."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.upload.changes import Change, FileChange, hunks_of
from ksplice_pkg.upload.reasons import LeftOut, Reason
from ksplice_pkg.upload.resume import RoundState, load, save, state_key
from ksplice_pkg.upload.scope import Scope, Scoped

OLD = "".join(f"line {i}\n" for i in range(40))
NEW = OLD.replace("line 3\n", "line three\n").replace("line 30\n", "line thirty\n")


def _scoped(new: str = NEW) -> list[Scoped]:
    change = FileChange("fs/a.c", Change.MODIFIED, OLD.encode(), new.encode(),
                        hunks_of(OLD.encode(), new.encode()))  # fmt: skip
    return [Scoped(change, Scope.BUILT_IN, units=("fs/a.o",))]


def test_a_kept_state_is_read_back_for_the_same_upload(tmp_path: Path) -> None:
    record, key = tmp_path / "rounds.json", state_key(_scoped(), "6.1.0-1-amd64")
    left = [LeftOut("fs/a.c", "@@ -4 +4 @@", Reason.DATA, "fs/a.o: data changes")]
    save(record, key, RoundState({"fs/a.c": {1}}, left, {"fs/a.c"}))
    assert load(record, key, {"fs/a.c": {0, 1}}) == RoundState({"fs/a.c": {1}}, left, {"fs/a.c"})


def test_a_state_answers_only_for_its_upload_and_target(tmp_path: Path) -> None:
    key = state_key(_scoped(), "6.1.0-1-amd64")
    assert key == state_key(_scoped(), "6.1.0-1-amd64")
    assert key != state_key(_scoped(), "6.1.0-2-amd64")
    assert key != state_key(_scoped(NEW.replace("thirty", "30")), "6.1.0-1-amd64")
    record = tmp_path / "rounds.json"
    save(record, key, RoundState({"fs/a.c": {1}}, [], set()))
    assert load(record, state_key(_scoped(), "6.1.0-2-amd64"), {"fs/a.c": {0, 1}}) is None


def test_a_state_that_accepts_more_than_round_one_or_cannot_be_read_is_ignored(
    tmp_path: Path,
) -> None:
    record, key = tmp_path / "rounds.json", state_key(_scoped(), "6.1.0-1-amd64")
    save(record, key, RoundState({"fs/a.c": {0, 1, 2}}, [], set()))
    assert load(record, key, {"fs/a.c": {0, 1}}) is None
    record.write_text('{"key": "' + key + '", "accepted": {}}')
    assert load(record, key, {"fs/a.c": {0, 1}}) is None
    record.write_text("{")
    assert load(record, key, {"fs/a.c": {0, 1}}) is None
    assert load(tmp_path / "missing.json", key, {"fs/a.c": {0, 1}}) is None
