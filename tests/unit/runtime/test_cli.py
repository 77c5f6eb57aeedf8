"""The command line's contract: documented exit codes, distinct per failure."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.runtime.errors import EXIT_CODES, NotFoundError
from ksplice_pkg.runtime.store import Store


def test_every_runtime_command_documents_the_exit_codes() -> None:
    codes = [code for code, _ in EXIT_CODES]
    assert len(set(codes)) == len(codes)
    for command in ("apply", "undo", "view", "reapply", "install", "uninstall"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0
        for code, meaning in EXIT_CODES:
            assert f"{code:>2}  {meaning}" in result.output, (command, code)


def test_unknown_update_exits_with_not_found(store: Store) -> None:
    for args in (["undo", "nosuch"], ["apply", "nosuch"], ["view", "nosuch"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == NotFoundError.exit_code, (args, result.output)


def test_undo_needs_an_id_or_all(store: Store) -> None:
    assert CliRunner().invoke(main, ["undo"]).exit_code == 1


def test_man_pages_document_the_exit_codes() -> None:
    pages = sorted((Path(__file__).resolve().parents[3] / "man").glob("*.8"))
    assert len(pages) >= 5
    for page in pages:
        text = page.read_text().replace("\\-", "-")
        for code, meaning in EXIT_CODES:
            assert f".B {code}\n{meaning}\n" in text, (page.name, code)
