"""view --cves: the CVE ids fixed live, from the applied updates' manifests only."""

from __future__ import annotations

from ksplice_pkg.runtime.state import State
from ksplice_pkg.runtime.stream import StreamPackage
from ksplice_pkg.runtime.view import (
    UpdateState,
    View,
    format_cves,
    live_cves,
)


def _view(*updates: UpdateState) -> View:
    stream = StreamPackage("ksplice-updates-6.1.0-test-amd64", None)
    return View("6.1.0-test-amd64", None, "6.1.0-test-amd64+c", True, list(updates), stream)


def test_only_applied_updates_count() -> None:
    view = _view(
        UpdateState("a", State.SUPERSEDED, cves=["CVE-2023-0001"]),
        UpdateState("b", State.INSTALLED, cves=["CVE-2023-0002"]),
        UpdateState("t", State.IN_TRANSITION, cves=["CVE-2023-0003"]),
        UpdateState("c", State.APPLIED, cves=["CVE-2024-1086", "CVE-2023-0001"]),
        UpdateState("d", State.APPLIED),
    )
    assert live_cves(view) == {
        "kernel_release": "6.1.0-test-amd64",
        "effective_version": "6.1.0-test-amd64+c",
        "updates": [
            {"id": "c", "cves": ["CVE-2024-1086", "CVE-2023-0001"]},
            {"id": "d", "cves": []},
        ],
        "cves": ["CVE-2023-0001", "CVE-2024-1086"],
        # Each CVE an applied update names, with its status: create --cve's are fixed.
        "status": {"CVE-2023-0001": "included", "CVE-2024-1086": "included"},
    }
    text = format_cves(live_cves(view))
    assert "effective version: 6.1.0-test-amd64+c" in text
    assert "c: CVE-2024-1086, CVE-2023-0001" in text
    assert "d: no CVE named" in text


def test_nothing_live() -> None:
    assert live_cves(_view())["cves"] == []
    assert "no CVE fixed live" in format_cves(live_cves(_view()))
