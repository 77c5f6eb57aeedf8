"""The manifest's optional `upload` object (build --from): written only when there is one, read
back the same, and checked like every other field, since a hostile manifest reaches the
root-run runtime's terminal."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from ksplice_pkg.manifest import (
    MAX_CHANGELOG_LINES,
    Manifest,
    ManifestError,
    PatchedEntry,
    Upload,
    Verification,
    content_problem,
)

BASE = Manifest(
    id="up1",
    description="kernel source 6.1.192-2 -> 6.1.192-3",
    kernel_release="6.1.0-56-cloud-amd64",
    target_build_id="ab" * 20,
    module="ksplice_up1.ko",
    module_name="ksplice_up1",
    module_sha256="0" * 64,
    patched=[PatchedEntry("nfsd", "nfsd4_sequence", 0)],
    verification=Verification.RUN_PRE.value,
    replace=True,
    created="2026-11-27T10:00:00Z",
)
UPLOAD = Upload(
    from_version="6.1.192-2",
    to_version="6.1.192-3",
    changelog=["nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)"],
    cves={"CVE-2026-99362": "unknown", "CVE-2026-10001": "included", "CVE-2025-12345": "left-out"},
)
WITH_UPLOAD = dataclasses.replace(BASE, upload=UPLOAD)
ORIGIN = "updates/up1/manifest.json"


def test_upload_round_trip() -> None:
    text = WITH_UPLOAD.to_json()
    assert Manifest.from_json(text) == WITH_UPLOAD
    assert json.loads(text)["upload"] == {
        "from": "6.1.192-2",
        "to": "6.1.192-3",
        "changelog": ["nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)"],
        "cves": {
            "CVE-2025-12345": "left-out",
            "CVE-2026-10001": "included",
            "CVE-2026-99362": "unknown",
        },
    }


def test_unknown_versions_are_null() -> None:
    m = dataclasses.replace(BASE, upload=Upload(None, None, [], {}))
    data = json.loads(m.to_json())
    assert data["upload"] == {"from": None, "to": None, "changelog": [], "cves": {}}
    assert Manifest.from_json(m.to_json()) == m


def test_without_upload_the_manifest_is_as_before() -> None:
    # The fields of manifest version 1 before `upload` existed, and nothing else: packages made
    # of the same update stay byte-identical.
    data = json.loads(BASE.to_json())
    assert sorted(data) == [
        "created",
        "cves",
        "depends_on",
        "description",
        "id",
        "kernel_release",
        "klp_relocations",
        "left_out",
        "manifest_version",
        "module",
        "module_name",
        "module_sha256",
        "new_functions",
        "patched",
        "replace",
        "target_build_id",
        "tool",
        "verification",
    ]
    assert Manifest.from_json(BASE.to_json()).upload is None


def _with(**upload: Any) -> str:
    data = json.loads(WITH_UPLOAD.to_json())
    data["upload"].update(upload)
    return json.dumps(data)


def _replaced(upload: Any) -> str:
    data = json.loads(WITH_UPLOAD.to_json())
    data["upload"] = upload
    return json.dumps(data)


# case -> (the manifest's JSON, what the error must name)
BAD: dict[str, tuple[str, str]] = {
    "not-an-object": (_replaced(["6.1.192-3"]), "upload"),
    "null": (_replaced(None), "upload"),
    "unknown-field": (_with(script="rm -rf /"), "script"),
    "version-a-number": (_with(to=6), "upload.to"),
    "version-newline": (_with(to="6.1.192-3\n%post"), "upload.to"),
    "version-escape": (_with(**{"from": "\x1b]0;owned\x07"}), "upload.from"),
    "version-space": (_with(to="6.1 192"), "upload.to"),
    "version-huge": (_with(to="6" * 200), "upload.to"),
    "changelog-not-a-list": (_with(changelog="one line"), "upload.changelog"),
    "changelog-not-strings": (_with(changelog=[1]), "upload.changelog"),
    "changelog-escape": (_with(changelog=["ok", "\x1b[2J\x1b[Hfixed"]), "upload.changelog"),
    "changelog-newline": (_with(changelog=["a\nb"]), "upload.changelog"),
    "changelog-surrogate": (_with(changelog=["x\udc80"]), "upload.changelog"),
    "changelog-line-long": (_with(changelog=["x" * 301]), "upload.changelog"),
    "changelog-too-many": (_with(changelog=["x"] * (MAX_CHANGELOG_LINES + 1)), "upload.changelog"),
    "cves-a-list": (_with(cves=["CVE-2026-1"]), "upload.cves"),
    "cve-bad-id": (_with(cves={"CVE-26-1": "included"}), "CVE-26-1"),
    "cve-id-newline": (_with(cves={"CVE-2026-1234\n": "included"}), "upload.cves"),
    "cve-status-unknown": (_with(cves={"CVE-2026-1234": "fixed"}), "fixed"),
    "cve-status-not-a-string": (_with(cves={"CVE-2026-1234": True}), "upload.cves"),
}


@pytest.mark.parametrize(("text", "named"), BAD.values(), ids=BAD.keys())
def test_malformed_upload_is_refused(text: str, named: str) -> None:
    with pytest.raises(ManifestError) as e:
        Manifest.from_json(text, origin=ORIGIN)
    assert ORIGIN in e.value.message
    assert named in e.value.message


def test_upload_at_the_limits_is_read() -> None:
    upload = Upload(
        "1:6.1.187-1~deb12u1",
        "5.14.0-427.13.1.el9_4",
        ["x" * 300] * MAX_CHANGELOG_LINES,
        {"CVE-2024-1234567": "left-out"},
    )
    m = dataclasses.replace(BASE, upload=upload)
    assert Manifest.from_json(m.to_json()) == m


def test_an_upload_built_in_code_is_checked_too() -> None:
    m = dataclasses.replace(BASE, upload=Upload("6.1.192-2", "6.1.192-3", [], {"CVE-1": "x"}))
    assert content_problem(m) is not None
