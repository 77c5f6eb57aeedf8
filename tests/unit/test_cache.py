"""The cache's bookkeeping on a cache made in a temporary directory: last use, cleaning, and
the locks that keep entries a running command uses."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cache import TAG, clean, entries, entry_of, human_size, mark_used, tag
from ksplice_pkg.cli import main

DAY = 86400.0


def _entry(cache: Path, name: str, age_days: float, size: int = 1000) -> Path:
    tag(cache)  # as every command that uses the cache does
    path = cache / name
    if name.endswith(".elf"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    else:
        (path / "tree").mkdir(parents=True)
        (path / "tree" / "file").write_bytes(b"\0" * size)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


@contextmanager
def _held(lock: Path) -> Iterator[None]:
    """A lock held as another command holds it (flock on its own open file)."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _names(cache: Path) -> list[str]:
    return sorted(e.name for e in entries(cache))


def test_entry_of_and_mark_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = _entry(cache, "sources/abc", age_days=40)
    assert entry_of(cache, source / "tree" / "file") == source
    assert entry_of(cache, tmp_path) is None
    assert entry_of(cache, cache / "lab" / "x") is None  # the lab's, not a kind of the cache
    assert mark_used(cache, [source / "tree", None, tmp_path]) == [source]
    assert time.time() - source.stat().st_mtime < 60


def test_clean_removes_what_was_not_used_for_long_enough(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _entry(cache, "sources/old", age_days=40, size=5000)
    _entry(cache, "vmlinux/old.elf", age_days=40)
    _entry(cache, "kernels/6.1.0-1-amd64", age_days=10)
    (cache / "sources" / "old.lock").write_text("")
    assert _names(cache)[0] == "kernels/6.1.0-1-amd64"
    cleaned = clean(cache, 30 * DAY)
    assert sorted(e.name for e in cleaned.removed) == ["sources/old", "vmlinux/old.elf"]
    assert _names(cache) == ["kernels/6.1.0-1-amd64"]
    assert not (cache / "sources" / "old.lock").exists()
    assert clean(cache, 0).removed[0].name == "kernels/6.1.0-1-amd64"
    assert _names(cache) == []


def test_entries_in_use_are_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = _entry(cache, "sources/tree", age_days=40)
    package = _entry(cache, "packages/image-all", age_days=40)
    work = _entry(cache, "work/linux-abc", age_days=40)
    other_work = _entry(cache, "work/linux-def", age_days=40)
    (work / "lock").write_text("")
    (other_work / "lock").write_text("")
    # A create in work/linux-def builds from sources/tree.
    (other_work / "inputs").write_text(f"{source}\n{other_work}\n")
    (cache / "packages" / "image-all.lock").write_text("")
    for entry in (work, other_work):  # writing in them made them new again
        os.utime(entry, (time.time() - 40 * DAY,) * 2)
    with (
        _held(work / "lock"),
        _held(other_work / "lock"),
        _held(cache / "packages" / "image-all.lock"),
    ):
        cleaned = clean(cache, 30 * DAY)
        assert cleaned.removed == []
        assert sorted(e.name for e in cleaned.in_use) == [
            "packages/image-all",
            "sources/tree",
            "work/linux-abc",
            "work/linux-def",
        ]
    # Once those commands are done, the same entries go.
    assert len(clean(cache, 30 * DAY).removed) == 4
    assert not source.exists() and not package.exists()


def test_an_interrupted_removal_is_finished_and_never_listed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _entry(cache, "sources/kept", age_days=1)
    doomed = _entry(cache, "sources/gone.removing-123", age_days=40)
    assert _names(cache) == ["sources/kept"]
    assert clean(cache, 30 * DAY).removed == []
    assert not doomed.exists()


def test_cache_command_lists_and_cleans(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _entry(cache, "sources/old", age_days=40, size=3 * 1024 * 1024)
    _entry(cache, "work/new", age_days=0)
    listed = CliRunner().invoke(main, ["cache", "--cache-dir", str(cache)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].endswith("sources/old") and lines[1].endswith("work/new")
    assert "in 2 entries" in lines[2]
    cleaned = CliRunner().invoke(main, ["cache", "--cache-dir", str(cache), "--clean"])
    assert cleaned.exit_code == 0, cleaned.output
    assert "removed sources/old" in cleaned.output and "work/new" not in cleaned.output
    refused = CliRunner().invoke(main, ["cache", "--clean", "--unused-for", "-1"])
    assert refused.exit_code == 2 and "-1" in refused.output


def test_human_size() -> None:
    assert [human_size(n) for n in (512, 2048, 5 * 1024**2, 3 * 1024**3)] == [
        "512 B",
        "2.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_clean_deletes_nothing_in_a_directory_that_is_not_a_cache(tmp_path: Path) -> None:
    """A --cache-dir pointing at a home or project directory that happens to have `work/`."""
    home = tmp_path / "home"
    _entry(home, "work/thesis", 400)
    (home / TAG).unlink()
    result = CliRunner().invoke(main, ["cache", "--cache-dir", str(home), "--clean"])
    assert result.exit_code == 1
    assert TAG in result.output
    assert (home / "work" / "thesis" / "tree" / "file").is_file()


def test_mark_used_tags_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = cache / "sources" / "x"
    entry.mkdir(parents=True)
    mark_used(cache, [entry])
    assert (cache / TAG).read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_two_cleans_at_once_both_succeed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for i in range(40):
        _entry(cache, f"sources/old{i}", 40)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: clean(cache, 30 * DAY), range(2)))
    assert sorted(len(r.removed) for r in results) == [0, 40]
    assert entries(cache) == []
