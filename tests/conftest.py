"""Markers decided for the whole suite.

`farm` tests build a source package in a clean chroot with sbuild and rpmbuild: many minutes,
and the network to Debian's archive. They run only when `-m` names them (`-m farm`), so that
`scripts/test` (CI) and `-m lab` leave them out.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "farm" in (config.option.markexpr or ""):
        return
    dropped = [item for item in items if item.get_closest_marker("farm") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.get_closest_marker("farm") is None]
