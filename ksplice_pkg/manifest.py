"""manifest.json: the contract between the build side, which writes it into every update, and
the runtime side (apply, undo, view, reapply, packages), which reads it on production machines.

Standard library only: the runtime imports this module and nothing of the build side.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Update ids become module names (ksplice_<id>), package names and directory names.
ID_RE = re.compile(r"[a-z0-9]{1,32}")


class Verification(Enum):
    """How the update's pre-patch code was checked against the target kernel."""

    RUN_PRE = "run-pre"
    SKIPPED = "skipped: no vmlinux or vmlinuz given"


class ManifestError(KspliceError):
    """A manifest.json that is missing, not JSON, or lacks what an update must say."""


@dataclass(frozen=True)
class PatchedEntry:
    object: str  # "vmlinux" or a module name
    name: str
    sympos: int


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
    created: str = ""
    tool: str = f"ksplice-pkg {__version__}"
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, origin: str = "manifest.json") -> Manifest:
        """Parse and check a manifest; anything malformed is a ManifestError naming `origin`."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"{origin}: not valid JSON ({e})") from e
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
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{origin}: malformed manifest: {e}") from e
        fields["patched"] = patched
        manifest = cls(**fields)
        if not ID_RE.fullmatch(manifest.id):
            raise ManifestError(f"{origin}: invalid update id {manifest.id!r}")
        for dep in manifest.depends_on:
            if not ID_RE.fullmatch(dep):
                raise ManifestError(f"{origin}: invalid id {dep!r} in depends_on")
        if manifest.module_name != f"ksplice_{manifest.id}":
            raise ManifestError(
                f"{origin}: module name {manifest.module_name!r} does not match id {manifest.id!r}"
            )
        if "/" in manifest.module or not manifest.module.endswith(".ko"):
            raise ManifestError(f"{origin}: invalid module file name {manifest.module!r}")
        return manifest


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
    for name in ("depends_on", "new_functions", "left_out"):
        if name in out and not all(isinstance(d, str) and d for d in out[name]):
            raise TypeError(f"{name}: expected a list of names")
    if "object" in out and not out["object"]:
        raise ValueError("object: empty")
    if "sympos" in out and out["sympos"] < 0:
        raise ValueError(f"sympos: {out['sympos']} is negative")
    if "verification" in out and out["verification"] not in {v.value for v in Verification}:
        raise ValueError(f"verification: {out['verification']!r} is not a known method")
    return out
