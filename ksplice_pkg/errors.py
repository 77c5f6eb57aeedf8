"""The errors ksplice-pkg reports to its users.

Every failure a user can cause or fix is a KspliceError: the CLI prints its message and hint and
exits with its code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KspliceError(Exception):
    """A failure with a message for the user and, where possible, what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class IntegrityError(KspliceError):
    """Input that is damaged or hostile: an archive member that would land outside its
    directory, an update not laid out as the format says, a module whose sha256 differs from
    its manifest's."""

    exit_code = 11


class CommandError(KspliceError):
    """An external command failed; the message names it, its status and its output's tail."""

    exit_code = 2


class CommandTimeoutError(CommandError):
    """An external command ran past its time limit and was killed."""


class VmError(KspliceError):
    """The lab VM did not run a script to its end: panic, oops, timeout or qemu failure."""

    exit_code = 3


class RefusedError(KspliceError):
    """The patch asks for what a livepatch cannot do: change initialised data or __init code,
    redirect a function without an ftrace entry, change nothing, ... The message names it."""

    exit_code = 4


class UnknownSymbolError(KspliceError):
    """The update's code refers to a symbol that neither the target nor the update defines:
    name is what it refers to (a function new in an upload, whose defining change is not in
    the update, or a --system-map of another kernel)."""

    def __init__(self, name: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.name = name


class RunPreMismatchError(KspliceError):
    """Run-pre: the pre-patch code built from the source is not the target kernel's code."""

    exit_code = 5


class InternalError(Exception):
    """A broken invariant of ksplice-pkg itself: a bug, reported with its traceback.

    Deliberately not a KspliceError: the CLI's error boundary lets it through, so the traceback
    that a bug report needs is printed.
    """
