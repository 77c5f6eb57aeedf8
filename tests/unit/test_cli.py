"""The command line's error boundary: a user's error becomes its message, hint and exit code,
with nothing written; --debug lets the same error through with its traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import create_main, main
from ksplice_pkg.errors import KspliceError
from tests.unit.tools import small_tree

INPUTS = ["--patch", "--diffext", "--git", "--prebuild"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param([], INPUTS, id="no-input"),
        pytest.param(["--diffext", ".new", "--git", "HEAD"], INPUTS, id="two-inputs"),
        pytest.param(["--prebuild", "--id", "Bad-Id"], ["--id", "Bad-Id"], id="bad-id"),
        pytest.param(["--prebuild", "-j", "0"], ["-j"], id="no-jobs"),
        # No --config and no KERNEL_SOURCE/ksplice: none of the target's files is found.
        pytest.param(["--prebuild"], ["System.map", ".config", "Module.symvers"], id="no-target"),
    ],
)
def test_create_refuses_bad_options(tmp_path: Path, args: list[str], names: list[str]) -> None:
    tree = small_tree(tmp_path / "src")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    raised = CliRunner().invoke(main, ["--debug", "create", *args, *cache, str(tree)])
    error = raised.exception
    assert isinstance(error, KspliceError), raised.output
    assert all(name in error.message for name in names), error.message

    result = CliRunner().invoke(main, ["create", *args, *cache, str(tree)])
    assert result.exit_code == error.exit_code == 1, result.output
    assert str(error) in result.output
    assert list(tmp_path.iterdir()) == [tree]


def test_ksplice_create_has_the_same_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ksplice-create, the create command under its classic name: the same error, the same
    exit code, no traceback."""
    tree = small_tree(tmp_path / "src")
    args = ["--prebuild", "--id", "Bad-Id", "--cache-dir", str(tmp_path / "cache"), str(tree)]
    monkeypatch.setattr(sys, "argv", ["ksplice-create", *args])
    with pytest.raises(SystemExit) as e:
        create_main()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "ksplice-create" in err and "Bad-Id" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tree]
