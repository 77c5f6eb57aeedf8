"""SOURCE_DATE_EPOCH, read once for create and package."""

from __future__ import annotations

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.timestamp import build_time, format_created, parse_created, source_date_epoch


def test_source_date_epoch_is_the_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert build_time() == 1767225600
    assert format_created(build_time()) == "2026-01-01T00:00:00Z"
    assert parse_created("2026-01-01T00:00:00Z") == 1767225600


def test_without_it_the_build_time_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() is None
    assert build_time() > 1767225600


@pytest.mark.parametrize("value", ["", "yesterday", "-1", "1.5", "1e9"])
def test_a_bad_value_is_refused_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(KspliceError, match="not a number of seconds") as error:
        build_time()
    assert "date +%s" in str(error.value.hint)
