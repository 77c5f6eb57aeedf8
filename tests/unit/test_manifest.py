"""manifest.json (ksplice_pkg.manifest), the contract between the build and the runtime side:
what is written reads back the same, and anything malformed is a ManifestError naming where it
came from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import (
    MANIFEST_VERSION,
    Manifest,
    ManifestError,
    PatchedEntry,
    Verification,
)

MANIFEST = Manifest(
    id="abc123",
    description="Fix /proc/cmdline",
    kernel_release="6.1.0-56-cloud-amd64",
    target_build_id="ab" * 20,
    module="ksplice_abc123.ko",
    module_name="ksplice_abc123",
    module_sha256="0" * 64,
    patched=[
        PatchedEntry("vmlinux", "cmdline_proc_show", 0),
        PatchedEntry("vmlinux", "c_start", 3),
    ],
    verification=Verification.RUN_PRE.value,
    new_functions=["helper"],
    klp_relocations=2,
    depends_on=["base1"],
    replace=True,
    cves=["CVE-2024-1086", "CVE-2023-12345"],
    created="2026-11-25T15:00:00Z",
)


def _data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.to_json())
    return data


def test_round_trip() -> None:
    assert Manifest.from_json(MANIFEST.to_json()) == MANIFEST
    assert Manifest.from_json(MANIFEST.to_json().encode()) == MANIFEST
    data = _data()
    assert data["manifest_version"] == MANIFEST_VERSION
    assert data["patched"][1] == {"object": "vmlinux", "name": "c_start", "sympos": 3}


def test_optional_fields_take_their_defaults() -> None:
    data = _data()
    optional = ("new_functions", "klp_relocations", "depends_on", "replace", "cves", "created")
    for name in (*optional, "tool"):
        del data[name]
    m = Manifest.from_json(json.dumps(data))
    assert (m.new_functions, m.klp_relocations, m.depends_on, m.replace) == ([], 0, [], False)
    assert m.cves == []
    assert m.tool.startswith("ksplice-pkg ")


def test_target_build_id_may_be_null() -> None:
    data = {**_data(), "target_build_id": None}
    assert Manifest.from_json(json.dumps(data)).target_build_id is None


def _set(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    data = _data()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _delete(key: str) -> dict[str, Any]:
    data = _data()
    del data[key]
    return data


# case -> (the manifest, what the error must name: the field or the bad value)
MALFORMED: dict[str, tuple[dict[str, Any], str | None]] = {
    "version": (_set(("manifest_version",), 2), None),
    "no-version": (_delete("manifest_version"), None),
    "no-id": (_delete("id"), "id"),
    "no-patched": (_delete("patched"), "patched"),
    "id-not-a-string": (_set(("id",), 7), "id"),
    "bad-id": (_set(("id",), "Bad-Id"), "Bad-Id"),
    "long-id": (_set(("id",), "a" * 33), "a" * 33),
    "sympos-a-string": (_set(("patched", 0, "sympos"), "0"), "sympos"),
    "sympos-a-bool": (_set(("patched", 0, "sympos"), True), "sympos"),
    "patched-entry-no-name": (_set(("patched", 1), {"object": "vmlinux", "sympos": 0}), "name"),
    "patched-entry-not-an-object": (_set(("patched", 0), "cmdline_proc_show"), None),
    "patched-not-a-list": (_set(("patched",), 3), None),
    "replace-a-string": (_set(("replace",), "yes"), "replace"),
    "klp-relocations-a-bool": (_set(("klp_relocations",), False), "klp_relocations"),
    "depends-on-not-ids": (_set(("depends_on",), [1]), "depends_on"),
    "depends-on-bad-id": (_set(("depends_on",), ["Base"]), "Base"),
    "module-name-mismatch": (_set(("module_name",), "ksplice_other"), "ksplice_other"),
    "module-with-a-path": (_set(("module",), "../ksplice_abc123.ko"), "../ksplice_abc123.ko"),
    "module-not-a-ko": (_set(("module",), "ksplice_abc123.so"), "ksplice_abc123.so"),
    "build-id-a-number": (_set(("target_build_id",), 5), "target_build_id"),
    "cves-not-a-list": (_set(("cves",), "CVE-2024-1086"), "cves"),
    "cves-not-strings": (_set(("cves",), [2024]), "cves"),
    "cve-lower-case": (_set(("cves",), ["cve-2024-1086"]), "cve-2024-1086"),
    "cve-short-number": (_set(("cves",), ["CVE-2024-108"]), "CVE-2024-108"),
    "cve-with-a-line": (_set(("cves",), ["CVE-2024-1086\n%post"]), "cves"),
    "cve-other-digits": (_set(("cves",), ["CVE-\uff12\uff10\uff12\uff14-1086"]), "cves"),
    "cve-twice": (_set(("cves",), ["CVE-2024-1086", "CVE-2024-1086"]), "twice"),
}
ORIGIN = "updates/abc123/manifest.json"


@pytest.mark.parametrize(("data", "named"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_field_is_refused(data: dict[str, Any], named: str | None) -> None:
    with pytest.raises(ManifestError) as e:
        Manifest.from_json(json.dumps(data), origin=ORIGIN)
    assert ORIGIN in e.value.message
    if named is not None:
        assert named in e.value.message


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '"manifest"', b"\xff\xfe"], ids=["empty", "cut", "list", "str", "bytes"]
)
def test_what_is_not_a_json_object_is_refused(text: str | bytes) -> None:
    with pytest.raises(ManifestError) as e:
        Manifest.from_json(text, origin=ORIGIN)
    assert ORIGIN in e.value.message


def test_manifest_error_is_a_users_error() -> None:
    """The runtime's error boundary reports it like any other: message, hint, exit code."""
    assert issubclass(ManifestError, KspliceError)


# Fields of the right type but wrong content: refused all the same.
BAD_CONTENT = {
    "new-functions-not-names": (_set(("new_functions",), [1, None]), "new_functions"),
    "verification-unknown": (_set(("verification",), "trust me"), "trust me"),
    "patched-object-empty": (_set(("patched", 0, "object"), ""), "object"),
    "sympos-negative": (_set(("patched", 0, "sympos"), -1), "sympos"),
    # What reaches a path: the installed tree is updates/<release>/<id>.
    "release-absolute": (_set(("kernel_release",), "/"), "kernel release"),
    "release-climbs": (_set(("kernel_release",), "../../x"), "kernel release"),
    "release-dotdot": (_set(("kernel_release",), ".."), "kernel release"),
    "release-with-slash": (_set(("kernel_release",), "6.1/x"), "kernel release"),
    "release-too-long": (_set(("kernel_release",), "6" * 65), "kernel release"),
    "module-another-file": (_set(("module",), "other.ko"), "other.ko"),
    "depends-on-dotdot": (_set(("depends_on",), [".."]), "depends_on"),
    # What reaches a spec, a control file, a script or a terminal.
    "description-newline": (_set(("description",), "fix\n%pre\nrm -rf /"), "description"),
    "description-escape": (_set(("description",), "\x1b]0;owned\x07"), "description"),
    "description-cr": (_set(("description",), "ok\rgone"), "description"),
    "description-surrogate": (_set(("description",), "x\udc80"), "description"),
    "description-huge": (_set(("description",), "x" * 5000), "description"),
    "function-newline": (_set(("patched", 0, "name"), "f\n%post"), "function name"),
    "function-macro": (_set(("patched", 0, "name"), "%(id)"), "function name"),
    "function-space": (_set(("patched", 0, "name"), "a b"), "function name"),
    "object-path": (_set(("patched", 0, "object"), "../x"), "object"),
    "object-macro": (_set(("patched", 0, "object"), "%{lua:x}"), "object"),
    "new-function-newline": (_set(("new_functions",), ["g\n"]), "new_functions"),
    "left-out-escape": (_set(("left_out",), ["\x1b[2J"]), "left_out"),
    "tool-newline": (_set(("tool",), "x\ny"), "tool"),
    "sha256-not-hex": (_set(("module_sha256",), "z" * 64), "module_sha256"),
    "build-id-not-hex": (_set(("target_build_id",), "../x"), "target_build_id"),
    "created-not-a-time": (_set(("created",), "yesterday"), "created"),
    "created-impossible": (_set(("created",), "2026-13-45T25:61:61Z"), "created"),
}


def test_deeply_nested_json_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="nested"):
        Manifest.from_json("[" * 100_000, origin=ORIGIN)


def test_printable_unicode_is_kept() -> None:
    data = _set(("description",), "Correctif de /proc/cmdline (Müller, 修正) 100%")
    assert Manifest.from_json(json.dumps(data)).description.endswith("100%")


@pytest.mark.parametrize(("data", "named"), BAD_CONTENT.values(), ids=BAD_CONTENT.keys())
def test_malformed_content_is_refused(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ManifestError) as e:
        Manifest.from_json(json.dumps(data), origin=ORIGIN)
    assert named in e.value.message
