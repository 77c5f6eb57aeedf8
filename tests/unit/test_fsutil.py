"""Atomic writes (ksplice_pkg.fsutil): readers see the old file or the new one, never a torn one,
and a failure leaves no temporary behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ksplice_pkg.fsutil import atomic_output, atomic_write, sha256_file


class InterruptedWriteError(Exception):
    pass


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    assert atomic_write(path, "first\n") == path  # the directory is created
    assert path.read_text() == "first\n"
    atomic_write(path, b"second\n", mode=0o600)
    assert path.read_bytes() == b"second\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "update.tar.gz"
    path.write_bytes(b"old")
    with pytest.raises(InterruptedWriteError), atomic_output(path) as f:
        f.write(b"half of the new")
        raise InterruptedWriteError
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["update.tar.gz"]


def test_failure_before_the_first_write_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    with pytest.raises(InterruptedWriteError), atomic_output(path):
        raise InterruptedWriteError
    assert list(tmp_path.iterdir()) == []


def test_the_final_name_appears_only_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(b"old")
    with atomic_output(path) as f:
        f.write(b"new")
        f.flush()
        # Mid-write, a reader of the final name still sees the whole old file.
        assert path.read_bytes() == b"old"
    assert path.read_bytes() == b"new"


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "m.ko"
    path.write_bytes(b"\x7fELF" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"\x7fELF" * 1000).hexdigest()
