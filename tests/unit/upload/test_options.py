"""`--from` against the other ways of saying what an update holds, refused before anything
is read."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cli import main


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "old").mkdir(exist_ok=True)
    (tmp_path / "new").mkdir(exist_ok=True)
    (tmp_path / "fix.patch").write_text("--- a/x.c\n+++ b/x.c\n")
    result = CliRunner().invoke(main, [*args, f"--cache-dir={tmp_path / 'cache'}"])
    return result.exit_code, result.output


def test_build_takes_a_patch_or_an_upload_not_both_nor_neither(tmp_path: Path) -> None:
    both = _run(tmp_path, "build", str(tmp_path / "new"), f"--from={tmp_path / 'old'}",
                f"--patch={tmp_path / 'fix.patch'}")  # fmt: skip
    neither = _run(tmp_path, "build", str(tmp_path / "new"))
    for status, output in (both, neither):
        assert status == 1 and "--patch" in output and "--from" in output, output
        assert "Traceback" not in output
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.ko"))


def test_create_from_refuses_what_a_cumulative_upload_cannot_be(tmp_path: Path) -> None:
    status, output = _run(
        tmp_path, "create", str(tmp_path / "new"), f"--from={tmp_path / 'old'}", "--runtime-only"
    )
    assert status == 2 and "--runtime-only" in output
    status, output = _run(
        tmp_path, "create", str(tmp_path / "new"), f"--patch={tmp_path / 'fix.patch'}",
        f"--report={tmp_path / 'r.json'}",
    )  # fmt: skip
    assert status == 2 and "--from" in output
    assert not (tmp_path / "r.json").exists()
