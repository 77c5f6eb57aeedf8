"""Why a change of the upload is left out of the update: one category per reason, for the
report's totals, and the engine's own words as the detail."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ksplice_pkg.errors import KspliceError, RunPreMismatchError, UnknownSymbolError
from ksplice_pkg.manifest import MAX_TEXT


class Reason(Enum):
    DATA = "data"  # changed initialised data
    INIT = "init"  # __init code or init-only data: ran at boot, gone
    LAYOUT = "layout"  # a struct or union body
    ASSEMBLY = "assembly"
    NO_FTRACE = "no-ftrace"  # a function livepatch cannot redirect
    STATIC_KEY = "static-key"  # a module's static key or code the update cannot reach
    BUILD_SYSTEM = "build-system"  # Kconfig, Makefile
    NEW_FILE = "new-file"
    REMOVED_FILE = "removed-file"
    COMPILE = "compile"  # does not compile without a change left out
    NEEDS_LEFT_OUT = "needs-left-out"  # a unit it reaches cannot be patched
    RUN_PRE = "run-pre"  # the pre code is not the target's
    UNKNOWN_SYMBOL = "unknown-symbol"  # calls what neither the target nor the update defines
    OTHER = "other"


@dataclass(frozen=True)
class LeftOut:
    path: str
    hunk: str | None  # its @@ header; None: the whole file
    reason: Reason
    detail: str

    def line(self) -> str:
        """One line of printable text for the manifest: a detail quoting the compiler may
        span lines, and a chain of units that cannot be patched may run long."""
        where = f"{self.path} {self.hunk}" if self.hunk else self.path
        text = " ".join(f"{where}: {self.reason.value}: {self.detail}".split())
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


# The engine's refusals, by what their messages say (errors.RefusedError's callers).
_KEYWORDS = (
    ("layout of", Reason.LAYOUT),
    ("__init", Reason.INIT),
    ("init-only", Reason.INIT),
    ("initial value or size", Reason.DATA),
    ("writable data", Reason.DATA),
    ("ftrace entry", Reason.NO_FTRACE),
    ("a key or code", Reason.STATIC_KEY),
    ("static key", Reason.STATIC_KEY),
)


def reason_of(error: KspliceError) -> Reason:
    if isinstance(error, RunPreMismatchError):
        return Reason.RUN_PRE
    if isinstance(error, UnknownSymbolError):
        return Reason.UNKNOWN_SYMBOL
    for words, reason in _KEYWORDS:
        if words in error.message:
            return reason
    return Reason.OTHER
