"""view of an update made by build --from: the upload it brings, its changelog count and its
CVEs by status, in the text, --json and --cves views; rendered by the view's own functions from
a manifest, as the store hands them over."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.manifest import Manifest, PatchedEntry, Upload, Verification
from ksplice_pkg.runtime.state import State
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.stream import StreamPackage
from ksplice_pkg.runtime.view import (
    UpdateState,
    View,
    format_cves,
    format_update,
    format_view,
    live_cves,
    state_of,
)
from tests.unit.runtime.conftest import manifest, update_dir

MANIFEST = Manifest(
    id="up3",
    description="kernel source 6.1.192-2 -> 6.1.192-3",
    kernel_release="6.1.0-56-cloud-amd64",
    target_build_id=None,
    module="ksplice_up3.ko",
    module_name="ksplice_up3",
    module_sha256="0" * 64,
    patched=[PatchedEntry("nfsd", "nfsd4_sequence", 0)],
    verification=Verification.RUN_PRE.value,
    replace=True,
    upload=Upload(
        "6.1.192-2",
        "6.1.192-3",
        ["nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)"],
        {"CVE-2026-99362": "unknown"},
    ),
)
# A stable update: many CVEs of each status.
STABLE = Upload(
    "6.1.190-1",
    "6.1.192-1",
    [f"change {n}" for n in range(1821)],
    {
        **{f"CVE-2026-{10000 + n}": "included" for n in range(12)},
        "CVE-2026-20000": "left-out",
        **{f"CVE-2026-{30000 + n}": "unknown" for n in range(1249)},
    },
)


def _view(*updates: UpdateState) -> View:
    stream = StreamPackage("ksplice-updates-6.1.0-56-cloud-amd64", None)
    return View(
        "6.1.0-56-cloud-amd64", None, "6.1.0-56-cloud-amd64+up3", True, list(updates), stream
    )


def test_text_view_names_the_upload_and_its_cve() -> None:
    text = format_update(state_of(MANIFEST, State.APPLIED))
    lines = text.splitlines()
    assert "  upload: from the kernel source 6.1.192-2 to 6.1.192-3, 1 changelog entry" in lines
    assert any(
        line.startswith("  1 CVE with the mapping unknown") and line.endswith(": CVE-2026-99362")
        for line in lines
    )
    assert "included" not in text and "reboot" not in text
    assert text in format_view(_view(state_of(MANIFEST, State.APPLIED)))


def test_text_view_of_a_stable_update_counts_and_names_a_few() -> None:
    text = format_update(state_of(dataclasses.replace(MANIFEST, upload=STABLE), State.APPLIED))
    lines = text.splitlines()
    assert (
        "  upload: from the kernel source 6.1.190-1 to 6.1.192-1, 1821 changelog entries" in lines
    )
    (included,) = [line for line in lines if " CVEs included" in line]
    assert included.startswith("  12 CVEs included: CVE-2026-10000, CVE-2026-10001")
    assert included.endswith("CVE-2026-10009 and 2 more")
    (left_out,) = [line for line in lines if "left out" in line]
    assert left_out == "  1 CVE left out, a reboot is needed for them: CVE-2026-20000"
    (unknown,) = [line for line in lines if "mapping unknown" in line]
    assert unknown.startswith("  1249 CVEs with the mapping unknown") and "1239 more" in unknown
    assert len(lines) < 12  # a thousand CVEs are for view --cves, not for the overview


def test_unknown_versions_and_no_cves_are_said() -> None:
    m = dataclasses.replace(MANIFEST, upload=Upload(None, "6.1.192-3", [], {}))
    text = format_update(state_of(m, State.INSTALLED))
    assert "from the kernel source (version unknown) to 6.1.192-3, 0 changelog entries" in text
    assert "names none" in text


def test_update_without_upload_shows_no_upload_line() -> None:
    text = format_update(state_of(dataclasses.replace(MANIFEST, upload=None), State.APPLIED))
    assert "upload" not in text and "CVE" not in text


def test_json_view_holds_the_upload_as_the_manifest_does() -> None:
    state = state_of(MANIFEST, State.APPLIED)
    data = json.loads(json.dumps(_view(state).to_dict()))
    assert data["updates"][0]["upload"] == json.loads(MANIFEST.to_json())["upload"]
    plain = state_of(dataclasses.replace(MANIFEST, upload=None), State.APPLIED)
    assert json.loads(json.dumps(_view(plain).to_dict()))["updates"][0]["upload"] is None


def test_cves_view_lists_each_cve_with_its_status() -> None:
    m = dataclasses.replace(
        MANIFEST,
        cves=["CVE-2024-1086"],  # create --cve: fixed by the update
        upload=Upload(
            "6.1.192-1",
            "6.1.192-3",
            ["a", "b"],
            {
                "CVE-2026-10001": "included",
                "CVE-2026-10002": "left-out",
                "CVE-2026-10003": "unknown",
            },
        ),
    )
    cves = live_cves(_view(state_of(m, State.APPLIED)))
    assert cves["cves"] == ["CVE-2024-1086", "CVE-2026-10001"]
    assert cves["status"] == {
        "CVE-2024-1086": "included",
        "CVE-2026-10001": "included",
        "CVE-2026-10002": "left-out",
        "CVE-2026-10003": "unknown",
    }
    lines = format_cves(cves).splitlines()
    assert "up3: the kernel source 6.1.192-1 -> 6.1.192-3, 3 CVEs named" in lines
    assert "  CVE-2024-1086  included: fixed live" in lines
    assert "  CVE-2026-10001  included: fixed live" in lines
    assert "  CVE-2026-10002  left out: a reboot is needed" in lines
    assert "  CVE-2026-10003  mapping unknown" in lines


def test_a_cve_fixed_by_any_applied_update_is_fixed() -> None:
    left = dataclasses.replace(
        MANIFEST, id="a", upload=Upload("1", "2", [], {"CVE-2026-10001": "left-out"})
    )
    fixed = dataclasses.replace(MANIFEST, id="b", cves=["CVE-2026-10001"], upload=None)
    unknown = dataclasses.replace(
        MANIFEST, id="c", upload=Upload("1", "2", [], {"CVE-2026-10001": "unknown"})
    )
    both = live_cves(_view(state_of(left, State.APPLIED), state_of(fixed, State.APPLIED)))
    assert both["status"] == {"CVE-2026-10001": "included"}
    assert both["cves"] == ["CVE-2026-10001"]
    maybe = live_cves(_view(state_of(left, State.APPLIED), state_of(unknown, State.APPLIED)))
    assert maybe["status"] == {"CVE-2026-10001": "unknown"}
    assert maybe["cves"] == []
    # An installed but not applied update fixes nothing live.
    assert live_cves(_view(state_of(fixed, State.INSTALLED)))["status"] == {}


def test_view_file_counts_the_changelog_instead_of_dumping_it(tmp_path: Path, store: Store) -> None:
    m = dataclasses.replace(manifest("up9", module_data=b"\x7fELF"), upload=STABLE)
    d = update_dir(tmp_path / "src", m, b"\x7fELF")
    text = CliRunner().invoke(main, ["view", "--file", str(d)])
    assert text.exit_code == 0, text.output
    assert "from the kernel source 6.1.190-1 to 6.1.192-1, 1821 changelog entries" in text.output
    assert "change 1820" not in text.output
    as_json = CliRunner().invoke(main, ["view", "--json", "--file", str(d)])
    assert json.loads(as_json.output)["upload"]["changelog"][1820] == "change 1820"
