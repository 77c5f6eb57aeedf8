"""The runtime's failures, each with the exit status scripts (and package maintainer scripts)
rely on. 1 stays the status of any other KspliceError, 2 of a failed external command."""

from __future__ import annotations

from ksplice_pkg.errors import IntegrityError, KspliceError


class WrongKernelError(KspliceError):
    """The update was built for another kernel release or another build of it."""

    exit_code = 10


class DependencyError(KspliceError):
    """Apply while a dependency is not applied, or undo while a dependent is applied."""

    exit_code = 12


class TransitionError(KspliceError):
    """The livepatch transition did not complete in time (it was reversed) or failed."""

    exit_code = 13


class NotFoundError(KspliceError):
    """No such update: not a file, not a directory, not installed, not applied."""

    exit_code = 14


class LockBusyError(KspliceError):
    """Another ksplice-pkg runtime command held the lock for too long."""

    exit_code = 15


class LoadError(KspliceError):
    """The kernel refused the module (insmod failed) or the patch did not appear."""

    exit_code = 16


__all__ = ["IntegrityError"]  # shared with the build side's readers of archives

# name, code, meaning: the table printed by --help and written in the man pages.
EXIT_CODES: list[tuple[int, str]] = [
    (0, "success, including an update that was already applied or not applied"),
    (1, "any other error (a malformed manifest, a permission problem, ...)"),
    (2, "an external command (insmod, rmmod) failed"),
    (WrongKernelError.exit_code, "the update is for another kernel release or build-id"),
    (IntegrityError.exit_code, "the module does not match its sha256, or an unsafe tarball"),
    (DependencyError.exit_code, "a dependency is not applied, or a dependent still is"),
    (TransitionError.exit_code, "the livepatch transition timed out (reversed) or failed"),
    (NotFoundError.exit_code, "no such update"),
    (LockBusyError.exit_code, "another ksplice-pkg command holds the lock"),
    (LoadError.exit_code, "the kernel refused to load the module"),
]


def exit_codes_help() -> str:
    """The exit status table as click renders it (\\b keeps the lines as they are)."""
    rows = "\n".join(f"  {code:>2}  {meaning}" for code, meaning in EXIT_CODES)
    return f"\b\nExit status:\n{rows}"
