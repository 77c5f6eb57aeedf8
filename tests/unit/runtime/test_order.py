from __future__ import annotations

import pytest

from ksplice_pkg.runtime.errors import DependencyError
from ksplice_pkg.runtime.order import (
    dependency_order,
    dependents,
    superseded_at_boot,
    superseded_by,
)
from tests.unit.runtime.conftest import manifest


def test_dependencies_load_first_whatever_their_age() -> None:
    # b is older than a but built on it; c is free and oldest.
    ms = {
        "b": manifest("b", depends_on=["a"], created="2026-01-01"),
        "a": manifest("a", created="2026-02-01"),
        "c": manifest("c", created="2025-12-01"),
    }
    order = dependency_order(ms)
    assert order.index("a") < order.index("b")
    assert order[0] == "c"
    assert sorted(order) == ["a", "b", "c"]


def test_missing_dependency_does_not_order_and_is_not_invented() -> None:
    assert dependency_order({"b": manifest("b", depends_on=["gone"])}) == ["b"]


def test_cycle_is_a_dependency_error() -> None:
    ms = {"a": manifest("a", depends_on=["b"]), "b": manifest("b", depends_on=["a"])}
    with pytest.raises(DependencyError):
        dependency_order(ms)


def test_custom_key_orders_ties() -> None:
    ms = {"x": manifest("x"), "y": manifest("y")}
    assert dependency_order(ms, key=lambda i: (0.0 if i == "y" else 1.0, i)) == ["y", "x"]


def test_dependents() -> None:
    ms = {"a": manifest("a"), "b": manifest("b", depends_on=["a"]), "c": manifest("c")}
    assert dependents(ms, "a") == ["b"]
    assert dependents(ms, "c") == []


def test_newest_cumulative_update_supersedes_older_ones() -> None:
    ms = {
        "old": manifest("old", created="2026-01-01"),
        "cum1": manifest("cum1", replace=True, created="2026-02-01"),
        "cum2": manifest("cum2", replace=True, created="2026-03-01"),
        "later": manifest("later", created="2026-04-01"),
    }
    assert superseded_at_boot(ms) == {"old": "cum2", "cum1": "cum2"}
    assert superseded_at_boot({"a": manifest("a")}) == {}


OLD = "2026-01-01T00:00:00Z"
NEW = "2026-02-01T00:00:00Z"


def test_a_newer_cumulative_update_supersedes() -> None:
    a = manifest("a", created=OLD)
    assert superseded_by(a, [manifest("c", replace=True, created=NEW)]) == "c"
    newest = [manifest("c", replace=True, created=NEW), manifest("d", replace=True, created=NEW)]
    assert superseded_by(a, newest) == "d"


def test_what_does_not_supersede() -> None:
    a = manifest("a", created=NEW)
    assert superseded_by(a, [manifest("c", replace=True, created=OLD)]) is None
    assert superseded_by(a, [manifest("s", created="2026-03-01T00:00:00Z")]) is None
    # A cumulative update built on A keeps it.
    on_a = manifest("c", replace=True, depends_on=["a"], created="2026-03-01T00:00:00Z")
    assert superseded_by(a, [on_a]) is None
