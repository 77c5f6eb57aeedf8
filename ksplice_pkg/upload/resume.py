"""Where the derivation's rounds stand, kept in the work dir so that a second run of the same
upload (a rerun after a failure late in the build, a warm benchmark, the same update built
with another id) starts from the round the first one reached.

Without it a rerun starts again from every hunk accepted: the after tree is written back to
round 1, each header a later round took out is written anew, and make preprocesses and
compiles again the thousands of units those headers reach, only to take the same hunks out.

A state answers only for the same upload (every change, its scope and units), the same target
release and the same engine (a digest of ksplice_pkg's own code: a fixed verdict must not be
hidden by one kept from before the fix). Anything else starts from round 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.upload.reasons import LeftOut, Reason
from ksplice_pkg.upload.scope import Scoped

_FORMAT = 1
_ENGINE = Path(__file__).resolve().parent.parent  # the ksplice_pkg package


@dataclass(frozen=True)
class RoundState:
    accepted: dict[str, set[int]]  # path -> the indexes of the hunks still accepted
    left: list[LeftOut]
    split: set[str]  # files whose hunks were already tried one by one


def state_key(scoped: list[Scoped], release: str) -> str:
    h = hashlib.sha256(f"{_FORMAT}\0{release}\0".encode())
    for s in sorted(scoped, key=lambda s: s.path):
        change = s.change
        h.update(f"{s.path}\0{s.scope.value}\0{change.change.value}\0{s.units}\0".encode())
        for data in (change.old, change.new):
            h.update(hashlib.sha256(data).digest() if data is not None else b"-")
    h.update(_engine_digest().encode())
    return h.hexdigest()


def _engine_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(_ENGINE.rglob("*.py")):
        h.update(str(path.relative_to(_ENGINE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def load(record: Path, key: str, accepted: dict[str, set[int]]) -> RoundState | None:
    """The kept state for `key`, or None. It must only narrow `accepted` (round 1's): a
    state that accepts a hunk round 1 does not is not ours, whatever its key says."""
    try:
        data = json.loads(record.read_text())
        if data["key"] != key:
            return None
        kept = {path: set(map(int, hunks)) for path, hunks in data["accepted"].items()}
        left = [
            LeftOut(str(i["path"]), i["hunk"], Reason(i["reason"]), str(i["detail"]))
            for i in data["left"]
        ]
        split = set(map(str, data["split"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(not hunks <= accepted.get(path, set()) for path, hunks in kept.items()):
        return None
    return RoundState(kept, left, split)


def save(record: Path, key: str, state: RoundState) -> None:
    data = {
        "key": key,
        "accepted": {path: sorted(hunks) for path, hunks in sorted(state.accepted.items())},
        "left": [
            {"path": i.path, "hunk": i.hunk, "reason": i.reason.value, "detail": i.detail}
            for i in state.left
        ],
        "split": sorted(state.split),
    }
    atomic_write(record, json.dumps(data))
