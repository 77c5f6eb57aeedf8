"""The error boundary every command runs behind, on the build side and the runtime side alike
(standard library and click only: the runtime imports it)."""

from __future__ import annotations

import errno
import shutil
import signal
import sys
from typing import NoReturn

import click

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.run import terminate_children


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the build unwinds like on ^C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def shown(text: object) -> str:
    """Text for a terminal: what is not printable (ESC, BEL, CR: a file name, a manifest or an
    error message may hold them) is shown escaped instead of acting on the terminal; line
    breaks stay."""
    return "\n".join(
        "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
        for line in str(text).split("\n")
    )


def report(prog: str, error: KspliceError) -> NoReturn:
    click.echo(shown(f"{prog}: error: {error}"), err=True)
    sys.exit(error.exit_code)


def _os_error(e: OSError) -> KspliceError:
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        # copytree gathers every file's failure in a list of (source, destination, why).
        _, destination, why = e.args[0][0]
        return KspliceError(
            f"cannot write {destination}: {str(why).split('] ')[-1]}",
            hint="check the space and permissions where it goes (--debug: the traceback)",
        )
    where = f" {e.filename}" if e.filename else ""
    return KspliceError(
        f"cannot access{where}: {e.strerror or e}",
        hint="free space on that file system (--debug: the traceback)"
        if e.errno == errno.ENOSPC
        else "check the path and its permissions (run with --debug for the traceback)",
    )


class _Boundary:
    """The one error boundary of every command: `ksplice-pkg ...`, `ksplice-create` and the
    runtime's classic names (`ksplice-apply`, `ksplice-undo`, `ksplice-view`) alike.

    A KspliceError becomes its message, hint and exit code; an OSError a one-line message (both
    keep their traceback under --debug). ^C exits 130 and SIGTERM 143, after stopping every
    command the run started, so the work dir's lock is released with nothing still building.
    Anything else is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> object:
        prog = ctx.find_root().info_name or "ksplice-pkg"
        debug = bool(ctx.find_root().params.get("debug"))
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except KspliceError as e:
            if debug:
                raise
            report(prog, e)
        except OSError as e:
            if debug:
                raise
            report(prog, _os_error(e))
        except ModuleNotFoundError as e:
            # The distro packages split the tool: ksplice-pkg-runtime alone has no build side
            # (create, fetch, demo, package, build) nor its libraries.
            if debug or (e.name or "").split(".")[0] not in _BUILD_SIDE_ROOTS:
                raise
            report(
                prog,
                KspliceError(
                    f"`{ctx.invoked_subcommand or ctx.info_name}` is part of the build side, "
                    "which is not "
                    f"installed (no module {e.name})",
                    hint="install the ksplice-pkg package (apt install ksplice-pkg, "
                    "dnf install ksplice-pkg)",
                ),
            )
        except KeyboardInterrupt:
            terminate_children()
            click.echo(f"{prog}: interrupted", err=True)
            sys.exit(130)
        except _Terminated:
            terminate_children()
            click.echo(f"{prog}: terminated", err=True)
            sys.exit(128 + signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, previous)


class BoundaryGroup(_Boundary, click.Group):
    pass


class BoundaryCommand(_Boundary, click.Command):
    pass


_BUILD_SIDE_ROOTS = {"ksplice_pkg", "elftools", "debian"}
