"""Options every test run shares: tests too slow for the usual runs are left out unless asked.

A test marked with one of SLOW runs only when the -m expression names that marker (say
`-m upload_stable` or `-m farm`), so `scripts/test` (and CI, within its hour) and `-m lab` skip
it: `upload_stable` builds a whole upstream stable update (tens of minutes); `farm` builds a
source package in a clean chroot with sbuild and rpmbuild (many minutes, and the network to
Debian's archive).
"""

from __future__ import annotations

import pytest

SLOW = ("upload_stable", "farm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expression = str(config.getoption("markexpr") or "")
    slow = [m for m in SLOW if m not in expression]
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (drop if any(item.get_closest_marker(m) for m in slow) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
