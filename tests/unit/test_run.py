"""Every external command goes through run (ksplice_pkg.run): clean environment, stdin closed,
failures as typed errors that name the command, its status or signal, and its output's tail."""

from __future__ import annotations

import re

import pytest

from ksplice_pkg.errors import CommandError, CommandTimeoutError
from ksplice_pkg.run import clean_env, run, run_text


def test_output_and_clean_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("KSPLICE_SECRET", "x")
    out = run_text(["sh", "-c", 'echo "$LC_ALL ${KSPLICE_SECRET:-unset}"'])
    assert out == "C.UTF-8 unset\n"


def test_stdin_is_closed() -> None:
    assert run_text(["sh", "-c", "cat; echo end"]) == "end\n"


def test_failure_names_command_status_and_tail() -> None:
    with pytest.raises(CommandError) as e:
        run(["sh", "-c", "for i in $(seq 1 40); do echo line$i >&2; done; exit 7"])
    text = str(e.value)
    assert re.search(r"\b7\b", text)  # the status
    assert "sh -c" in text
    assert "line40" in text and "line1\n" not in text


def test_signal_is_named() -> None:
    with pytest.raises(CommandError, match=r"\bSIGTERM\b"):
        run(["sh", "-c", "kill -TERM $$"])


def test_missing_command() -> None:
    with pytest.raises(CommandError, match="no-such-tool-xyz"):
        run(["no-such-tool-xyz"])


def test_timeout() -> None:
    with pytest.raises(CommandTimeoutError, match=r"\b0\.5\b"):
        run(["sleep", "5"], timeout=0.5)


def test_unchecked_failure_returns() -> None:
    assert run(["false"], check=False).returncode == 1


def test_extra_env() -> None:
    assert clean_env({"A": "b"})["A"] == "b"
