"""manifest.json: the contract between the build side, which writes it into every update, and
the runtime side (apply, undo, view, reapply, packages), which reads it on production machines.

Standard library only: the runtime imports this module and nothing of the build side.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Every name below reaches a path, a package field, an RPM spec, a maintainer script or a
# terminal, on machines where the runtime runs as root: each is checked where it enters (here
# for manifests, in the commands for ids typed by a user) against a set with nothing in it that
# a shell, rpm, dpkg or a path could interpret (no '/', no '%', no space, no leading '.' or '-').
# Update ids become module names (ksplice_<id>), package names and directory names.
ID_RE = re.compile(r"[a-z0-9]{1,32}")
# What `uname -r` prints (at most 64 characters, __NEW_UTS_LEN): 6.1.0-56-cloud-amd64,
# 5.14.0-427.13.1.el9_4.x86_64, 6.8.0-45-generic, 6.1.0+, 6.1.0~rc1. It reaches make
# (KERNELRELEASE=), paths and package names; `~` only means something to a shell at a word's
# start, where the first character keeps it from standing.
RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}")
# A C function and GCC's clone suffixes (foo.isra.0, foo.cold); KSYM_NAME_LEN is 512 since 6.1.
FUNCTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,511}")
# vmlinux or a module name (MODULE_NAME_LEN 56, with the NUL).
OBJECT_RE = re.compile(r"vmlinux|[A-Za-z0-9_-]{1,55}")
BUILD_ID_RE = re.compile(r"[0-9a-f]{2,128}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# A CVE id as MITRE assigns them: the year, then four or more digits (since 2014, CVE-2014-0001
# to CVE-2024-1234567). Nineteen digits are far beyond any real one and keep a value short.
CVE_RE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,19}")
# The `created` stamp, UTC; it orders the updates of a kernel (package versions).
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_TEXT = 1000  # one line of free text: a description, a left-out change
# A distro's version of a kernel source: Debian's [epoch:]upstream[-revision] (6.1.192-3,
# 1:6.1.187-1~deb12u1, 6.12.117+deb12) or RPM's version-release (5.14.0-427.13.1.el9_4,
# 6.8.0^20240401-1). Only a terminal and JSON see it; the set still keeps out what moves a
# cursor or splits a line.
SOURCE_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~^_:-]{0,127}")
CHANGELOG_LINE_MAX = 300  # one changelog entry, as `view` shows it
# Debian's 6.1.190-1 -> 6.1.192-1 (two upstream stable releases) has 1,821 entries naming
# 1,262 CVE ids; ten times that bounds what a hostile manifest makes view read and print.
MAX_CHANGELOG_LINES = 20000
MAX_UPLOAD_CVES = 20000


class InvalidNameError(KspliceError):
    """An update id or kernel release that is not one: it would name a path or a package."""


def check_update_id(value: str, what: str = "update id") -> str:
    """value, when it is an update id; an id names an update, never a path."""
    if not ID_RE.fullmatch(value):
        raise InvalidNameError(
            f"{what} {value!r} is not an update id (1 to 32 of a-z and 0-9)",
            hint="`ksplice-pkg view` lists the updates by id",
        )
    return value


def check_release(value: str, what: str = "kernel release") -> str:
    if not RELEASE_RE.fullmatch(value):
        raise InvalidNameError(
            f"{what} {value!r} is not a kernel release as `uname -r` prints it",
            hint="e.g. 6.1.0-56-cloud-amd64",
        )
    return value


def is_text_line(value: str, limit: int = MAX_TEXT) -> bool:
    """One line of printable characters: nothing that moves a terminal's cursor, starts a
    new control field or spec line, or cannot be encoded (a lone surrogate)."""
    return len(value) <= limit and value.isprintable()


def module_name_of(update_id: str) -> str:
    """The livepatch's name under /sys/kernel/livepatch and in lsmod."""
    return f"ksplice_{update_id}"


def module_file_of(update_id: str) -> str:
    return f"{module_name_of(update_id)}.ko"


class Verification(Enum):
    """How the update's pre-patch code was checked against the target kernel."""

    RUN_PRE = "run-pre"
    SKIPPED = "skipped: no vmlinux or vmlinuz given"


class CveStatus(Enum):
    """What an update does about a CVE its upload names."""

    INCLUDED = "included"  # the change that fixes it is in the update
    LEFT_OUT = "left-out"  # the change is not: a reboot into the new kernel is needed
    UNKNOWN = "unknown"  # the upload does not say which change fixes it


class ManifestError(KspliceError):
    """A manifest.json that is missing, not JSON, or lacks what an update must say."""


@dataclass(frozen=True)
class PatchedEntry:
    object: str  # "vmlinux" or a module name
    name: str
    sympos: int


@dataclass(frozen=True)
class Upload:
    """The kernel source upload an update (`build --from`) brings the target towards."""

    from_version: str | None  # the source the target kernel was built from
    to_version: str | None
    changelog: list[str]  # the entries between the two, one line each
    cves: dict[str, str]  # CVE id -> a CveStatus value

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_version,
            "to": self.to_version,
            "changelog": list(self.changelog),
            "cves": dict(sorted(self.cves.items())),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Upload:
        """The upload object of a manifest, typed and checked (TypeError, ValueError)."""
        if not isinstance(data, dict):
            raise TypeError("upload: expected an object")
        if unknown := sorted(set(data) - {"from", "to", "changelog", "cves"}):
            raise ValueError(f"upload: unknown field {unknown[0]!r}")
        for name in ("from", "to"):
            if not isinstance(data.get(name), (str, type(None))):
                raise TypeError(f"upload.{name}: expected a string or null")
        changelog, cves = data.get("changelog", []), data.get("cves", {})
        if not isinstance(changelog, list) or not all(isinstance(x, str) for x in changelog):
            raise TypeError("upload.changelog: expected a list of strings")
        if not isinstance(cves, dict) or not all(isinstance(v, str) for v in cves.values()):
            raise TypeError("upload.cves: expected an object of CVE id -> status")
        return cls(data.get("from"), data.get("to"), changelog, cves)

    def problem(self) -> str | None:
        for name, version in (("from", self.from_version), ("to", self.to_version)):
            if version is not None and not SOURCE_VERSION_RE.fullmatch(version):
                return f"upload.{name}: {version[:80]!r} is not a source package version"
        if len(self.changelog) > MAX_CHANGELOG_LINES:
            return (
                f"upload.changelog has {len(self.changelog)} lines, more than {MAX_CHANGELOG_LINES}"
            )
        for line in self.changelog:
            if not is_text_line(line, CHANGELOG_LINE_MAX):
                return f"upload.changelog: {line[:80]!r} is not one line of printable text"
        if len(self.cves) > MAX_UPLOAD_CVES:
            return f"upload.cves names {len(self.cves)} CVEs, more than {MAX_UPLOAD_CVES}"
        statuses = {s.value for s in CveStatus}
        for cve, status in self.cves.items():
            if not CVE_RE.fullmatch(cve):
                return f"invalid CVE id {cve[:80]!r} in upload.cves (expected CVE-YYYY-NNNN)"
            if status not in statuses:
                known = ", ".join(sorted(statuses))
                return f"upload.cves: {cve}: {status[:80]!r} is not one of {known}"
        return None


@dataclass(frozen=True)
class Manifest:
    id: str
    description: str
    kernel_release: str
    target_build_id: str | None
    module: str  # the .ko file name
    module_name: str  # the livepatch name under /sys/kernel/livepatch
    module_sha256: str
    patched: list[PatchedEntry]
    verification: str  # a Verification value
    new_functions: list[str] = field(default_factory=list)
    klp_relocations: int = 0
    # Ids of the updates this one is built on top of (a --series stack); they must be applied
    # first and cannot be undone while this one is applied.
    depends_on: list[str] = field(default_factory=list)
    # A cumulative update (the livepatch `replace` flag): it supersedes every earlier update.
    replace: bool = False
    # Changes of the patch the update does not carry (__init code and data, --runtime-only).
    left_out: list[str] = field(default_factory=list)
    # The CVE ids the update fixes (`create --cve`): packages' changelogs, advisories, `view`.
    cves: list[str] = field(default_factory=list)
    created: str = ""
    tool: str = f"ksplice-pkg {__version__}"
    manifest_version: int = MANIFEST_VERSION
    # `build --from`: the source upload the update brings the kernel towards. Absent from the
    # JSON when None, so that every other manifest reads, and hashes, as before it existed.
    upload: Upload | None = None

    def to_json(self) -> str:
        data = asdict(self)
        del data["upload"]
        if self.upload is not None:
            data["upload"] = self.upload.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, origin: str = "manifest.json") -> Manifest:
        """Parse and check a manifest; anything malformed is a ManifestError naming `origin`."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"{origin}: not valid JSON ({e})") from e
        except RecursionError as e:  # thousands of nested brackets: no manifest looks so
            raise ManifestError(f"{origin}: not a manifest (nested too deeply)") from e
        if not isinstance(data, dict):
            raise ManifestError(f"{origin}: expected a JSON object")
        version = data.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{origin}: manifest version {version!r}, this ksplice-pkg reads "
                f"version {MANIFEST_VERSION}",
                hint="install the ksplice-pkg version the update was made for",
            )
        try:
            patched = [PatchedEntry(**_typed(p, _PATCHED_FIELDS)) for p in data["patched"]]
            fields = _typed(data, _FIELDS)
            if "upload" in data:
                fields["upload"] = Upload.from_dict(data["upload"])
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{origin}: malformed manifest: {e}") from e
        fields["patched"] = patched
        manifest = cls(**fields)
        if problem := content_problem(manifest):
            raise ManifestError(f"{origin}: {problem}")
        return manifest


def _is_created(value: str) -> bool:
    try:
        time.strptime(value, CREATED_FORMAT)
    except ValueError:
        return False
    # strptime's %Y takes any script's digits; a package version takes ASCII ones only.
    return value.isascii() and len(value) == len("2026-01-01T00:00:00Z")


def content_problem(m: Manifest) -> str | None:
    """What is wrong with the content of a well-typed manifest, or None (from_json refuses it;
    a manifest built in code, as the packager's tests and create make them, is checked too)."""
    if not ID_RE.fullmatch(m.id):
        return f"invalid update id {m.id!r}"
    if bad := [d for d in m.depends_on if not ID_RE.fullmatch(d)]:
        return f"invalid id {bad[0]!r} in depends_on"
    if not RELEASE_RE.fullmatch(m.kernel_release):
        return f"invalid kernel release {m.kernel_release!r}"
    if m.module_name != module_name_of(m.id):
        return f"module name {m.module_name!r} does not match id {m.id!r}"
    if m.module != module_file_of(m.id):
        return f"invalid module file name {m.module!r} (expected {module_file_of(m.id)!r})"
    if not SHA256_RE.fullmatch(m.module_sha256):
        return f"module_sha256 {m.module_sha256!r} is not a sha256 in hex"
    if m.target_build_id is not None and not BUILD_ID_RE.fullmatch(m.target_build_id):
        return f"target_build_id {m.target_build_id!r} is not a build-id in hex"
    if m.created and not _is_created(m.created):
        return f"created {m.created!r} is not a time as YYYY-MM-DDTHH:MM:SSZ"
    for entry in m.patched:
        if not OBJECT_RE.fullmatch(entry.object):
            return f"invalid object name {entry.object!r} in patched"
        if not FUNCTION_RE.fullmatch(entry.name):
            return f"invalid function name {entry.name!r} in patched"
    if bad := [f for f in m.new_functions if not FUNCTION_RE.fullmatch(f)]:
        return f"invalid function name {bad[0]!r} in new_functions"
    if bad := [c for c in m.cves if not CVE_RE.fullmatch(c)]:
        return f"invalid CVE id {bad[0]!r} in cves (expected CVE-YYYY-NNNN)"
    if len(set(m.cves)) != len(m.cves):
        return "cves names a CVE twice"
    if m.upload is not None and (problem := m.upload.problem()):
        return problem
    for name, text in [("description", m.description), ("tool", m.tool)] + [
        ("left_out", t) for t in m.left_out
    ]:
        if not is_text_line(text):
            return f"{name}: {text[:80]!r} is not one line of printable text"
    return None


# Field name -> accepted types; optional fields fall back to the dataclass defaults.
_PATCHED_FIELDS: dict[str, tuple[type, ...]] = {"object": (str,), "name": (str,), "sympos": (int,)}
_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "description": (str,),
    "kernel_release": (str,),
    "target_build_id": (str, type(None)),
    "module": (str,),
    "module_name": (str,),
    "module_sha256": (str,),
    "verification": (str,),
    "new_functions": (list,),
    "klp_relocations": (int,),
    "depends_on": (list,),
    "replace": (bool,),
    "left_out": (list,),
    "cves": (list,),
    "created": (str,),
    "tool": (str,),
    "manifest_version": (int,),
}
_OPTIONAL = {
    "new_functions",
    "klp_relocations",
    "depends_on",
    "replace",
    "left_out",
    "cves",
    "created",
    "tool",
}


def _typed(data: Any, spec: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for name, types in spec.items():
        if name not in data:
            if name in _OPTIONAL:
                continue
            raise KeyError(name)
        value = data[name]
        # bool is an int in Python: a sympos of `true` is as wrong as a string.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"{name}: expected {' or '.join(t.__name__ for t in types)}")
        out[name] = value
    for name in ("depends_on", "new_functions", "left_out", "cves"):
        if name in out and not all(isinstance(d, str) and d for d in out[name]):
            raise TypeError(f"{name}: expected a list of names")
    if "sympos" in out and out["sympos"] < 0:
        raise ValueError(f"sympos: {out['sympos']} is negative")
    if "verification" in out and out["verification"] not in {v.value for v in Verification}:
        raise ValueError(f"verification: {out['verification']!r} is not a known method")
    return out
