"""The runtime's commands. ksplice_pkg.cli adds them to `ksplice-pkg`; ksplice-apply,
ksplice-undo and ksplice-view are the classic names of three of them.

Each command takes the lock, calls the library, prints; the error boundary (a KspliceError
becomes its message and exit status) is the group's, or _classic's for the classic names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ksplice_pkg.boundary import BoundaryCommand, shown
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger, setup_logging
from ksplice_pkg.manifest import check_update_id
from ksplice_pkg.run import run
from ksplice_pkg.runtime import guard, kernel
from ksplice_pkg.runtime.apply import Outcome, Timing, apply_bundle
from ksplice_pkg.runtime.bundle import open_update
from ksplice_pkg.runtime.errors import NotFoundError, exit_codes_help
from ksplice_pkg.runtime.install import install, uninstall
from ksplice_pkg.runtime.lock import locked
from ksplice_pkg.runtime.reapply import reapply
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.stream import describe as describe_stream
from ksplice_pkg.runtime.stream import installed_stream
from ksplice_pkg.runtime.undo import Deferred, defer_undo, undo, undo_all, undo_deferred
from ksplice_pkg.runtime.view import (
    collect,
    describe_bundle,
    format_cves,
    format_update,
    format_upload,
    format_view,
    live_cves,
)

F = TypeVar("F", bound=Callable[..., Any])
STABLE_UNIT = "ksplice-pkg-stable.service"
EPILOG = exit_codes_help()


def _timing_options(f: F) -> F:
    f = click.option(
        "--signal-after",
        type=float,
        default=Timing.signal_after,
        show_default=True,
        help="Seconds before the tasks holding up a transition are signalled.",
    )(f)
    return click.option(
        "--timeout",
        type=float,
        default=Timing.timeout,
        show_default=True,
        help="Seconds a transition may take before it is reversed.",
    )(f)


_lock_option = click.option(
    "--lock-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for another ksplice-pkg command to finish.",
)


def _start_stability_watch() -> None:
    """Have the crash-loop guard's window watched after a manual apply (systemd only)."""
    if Path("/run/systemd/system").is_dir():
        run(["systemctl", "start", "--no-block", STABLE_UNIT], check=False)


@click.command("apply", cls=BoundaryCommand, epilog=EPILOG)
@click.argument("update")
@_timing_options
@_lock_option
def apply_cmd(update: str, timeout: float, signal_after: float, lock_timeout: float) -> None:
    """Apply UPDATE to the running kernel: a tarball, its unpacked directory, or the id of an
    update installed for this kernel.

    Refuses an update for another kernel (release or build-id), a module that does not match
    its sha256, and an update whose dependencies are not applied. Waits for the livepatch
    transition; tasks holding it up are signalled, and after --timeout it is reversed and the
    module unloaded. Applying an applied update does nothing. Clears a quarantine.
    """
    store = Store.default()
    with locked(store.lock_file, lock_timeout):
        b = open_update(update, store, kernel.release())
        done = apply_bundle(store, b, Timing(timeout, signal_after))
    m = b.manifest
    if done.outcome is Outcome.ALREADY:
        click.echo(f"{m.id} is already applied: {m.description}")
        return
    click.echo(f"applied {m.id} in {done.seconds:.2f} s: {m.description}")
    for old in done.superseded:
        click.echo(f"{old}: superseded by {m.id}, unloaded")
    _start_stability_watch()


@click.command("undo", cls=BoundaryCommand, epilog=EPILOG)
@click.argument("update_id", required=False)
@click.option("--all", "undo_everything", is_flag=True, help="Undo every applied update.")
@click.option(
    "--defer",
    is_flag=True,
    help="Check now that UPDATE_ID can be undone; undo it at the next --deferred "
    "(package removals: the undo waits for the end of the package manager's run).",
)
@click.option(
    "--deferred",
    "run_deferred",
    is_flag=True,
    help="Carry out the deferred undos (the runtime package's dpkg trigger runs this).",
)
@_timing_options
@_lock_option
def undo_cmd(
    update_id: str | None,
    undo_everything: bool,
    defer: bool,
    run_deferred: bool,
    timeout: float,
    signal_after: float,
    lock_timeout: float,
) -> None:
    """Undo an applied update: disable it, wait for the transition, unload it.

    Refused while an applied update is built on it. --all undoes everything, dependents first,
    newest first. Undoing an update that is not applied does nothing.

    --deferred leaves applied an update whose package came back, or that a newer installed
    cumulative update supersedes, and exits 1 when an undo failed (it is kept for next time).
    """
    wanted = [bool(update_id), undo_everything, run_deferred]
    if wanted.count(True) != 1 or (defer and not update_id):
        raise KspliceError(
            "give an update id, --all, --defer ID or --deferred", hint="ksplice-pkg view lists them"
        )
    if update_id is not None:
        check_update_id(update_id)
    store = Store.default()
    timing = Timing(timeout, signal_after)
    with locked(store.lock_file, lock_timeout):
        if run_deferred:
            _report_deferred(undo_deferred(store, timing))
        elif update_id is None:
            undone = undo_all(store, timing)
            click.echo(f"undone: {', '.join(undone)}" if undone else "nothing was applied")
        elif defer:
            deferred = defer_undo(store, update_id)
            click.echo(f"{update_id}: undo deferred" if deferred else f"{update_id} is not applied")
        elif undo(store, update_id, timing):
            click.echo(f"undone {update_id}")
        else:
            click.echo(f"{update_id} is not applied")


def _report_deferred(results: list[Deferred]) -> None:
    for r in results:
        click.echo(shown(f"{r.id}: {r.outcome}"))
    if failed := [r.id for r in results if r.failed]:
        raise KspliceError(
            f"the deferred undo of {', '.join(failed)} failed: still applied",
            hint="retry with `ksplice-pkg undo ID`; a reboot takes them away too",
        )


@click.command("view", cls=BoundaryCommand, epilog=EPILOG)
@click.argument("update_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--file", "update_file", help="Describe this tarball or directory instead.")
@click.option(
    "--cves", "only_cves", is_flag=True, help="The CVE ids fixed live, by applied update."
)
def view_cmd(
    update_id: str | None, as_json: bool, update_file: str | None, only_cves: bool
) -> None:
    """Show applied and installed updates, their state and the effective kernel version
    (the release plus the newest applied update, like uptrack-uname)."""
    store = Store.default()
    if only_cves:
        if update_id or update_file:
            raise KspliceError("--cves lists what is live: give no update or --file with it")
        cves = live_cves(collect(store))
        click.echo(json.dumps(cves, indent=2) if as_json else format_cves(cves))
        return
    if update_file:
        info = describe_bundle(open_update(update_file, store, kernel.release()))
        if as_json:
            click.echo(json.dumps(info, indent=2))
        else:
            for key, value in info.items():
                if key == "upload" and value is not None:
                    # A stable update's changelog is a thousand lines: counted, not dumped.
                    click.echo(shown("\n".join(format_upload(value))))
                else:
                    click.echo(shown(f"{key}: {value}"))
        return
    view = collect(store)
    if update_id is not None:
        check_update_id(update_id)
        found = [u for u in view.updates if u.id == update_id]
        if not found:
            raise NotFoundError(f"{update_id}: no such update applied or installed")
        click.echo(json.dumps(found[0].__dict__, indent=2) if as_json else format_update(found[0]))
        return
    click.echo(json.dumps(view.to_dict(), indent=2) if as_json else format_view(view))


@click.command("reapply", cls=BoundaryCommand, epilog=EPILOG)
@click.option("--clear", is_flag=True, help="Forget every quarantine first.")
@_timing_options
@_lock_option
def reapply_cmd(clear: bool, timeout: float, signal_after: float, lock_timeout: float) -> None:
    """Apply every update installed for the running kernel, in dependency order (run at boot
    by ksplice-pkg.service). A failing update skips only those built on it; quarantined and
    superseded updates are skipped. Exits 0 whatever happened to single updates: the report
    names each one's fate."""
    store = Store.default()
    with locked(store.lock_file, lock_timeout):
        if clear:
            for update_id in guard.clear(store):
                click.echo(f"{update_id}: quarantine cleared")
        results = reapply(store, Timing(timeout, signal_after))
    for r in results:
        timing = f" in {r.seconds:.2f} s" if r.seconds else ""
        click.echo(shown(f"{r.id}: {r.state}{timing}" + (f": {r.reason}" if r.reason else "")))
    if not results:
        click.echo(f"no updates installed for {kernel.release()}")
    # In the journal at every boot: which package brings this kernel's updates, or that none does.
    click.echo(shown(describe_stream(installed_stream(kernel.release()))))


@click.command("install", cls=BoundaryCommand, epilog=EPILOG)
@click.argument("update")
def install_cmd(update: str) -> None:
    """Install UPDATE (a tarball or directory) where boot reapplies it from, without applying
    it: /usr/lib/ksplice-pkg/updates/<kernel-release>/<id>/."""
    store = Store.default()
    with locked(store.lock_file, 60):
        bundle = open_update(update, store, kernel.release())
        outcome, where = install(store, bundle)
    click.echo(f"{bundle.manifest.id}: {outcome.value} in {where}")


@click.command("uninstall", cls=BoundaryCommand, epilog=EPILOG)
@click.argument("update_id")
@click.option("--kernel-release", help="The release it is installed for (default: running).")
@_timing_options
@_lock_option
def uninstall_cmd(
    update_id: str,
    kernel_release: str | None,
    timeout: float,
    signal_after: float,
    lock_timeout: float,
) -> None:
    """Remove an installed update, undoing it first if it is applied."""
    check_update_id(update_id)
    store = Store.default()
    with locked(store.lock_file, lock_timeout):
        where = uninstall(
            store, update_id, kernel_release or kernel.release(), Timing(timeout, signal_after)
        )
    click.echo(f"{update_id}: removed {where}")


@click.command("confirm", cls=BoundaryCommand, epilog=EPILOG)
@click.option(
    "--after",
    type=float,
    default=guard.DEFAULT_WINDOW,
    show_default=True,
    help="Seconds the last load of this boot must be old; waits for them.",
)
@click.option(
    "--shutdown",
    is_flag=True,
    help="This boot is ending cleanly: mark it stable now (--after 0; the ExecStop= of "
    f"{guard.SHUTDOWN_UNIT}).",
)
def confirm_cmd(after: float, shutdown: bool) -> None:
    """Mark this boot's loads stable once they are --after seconds old (the crash-loop guard;
    run by ksplice-pkg-stable.service, and with --shutdown by a clean shutdown)."""
    if shutdown:
        after = 0.0
    store = Store.default()
    while True:
        while (wait := guard.remaining(store, after)) > 0:
            time.sleep(wait)
        with locked(store.lock_file, 60):
            if guard.remaining(store, after) > 0:  # a load came in meanwhile: wait again
                continue
            proven = guard.mark_stable(store)
            break
    if proven:
        when = "clean shutdown" if shutdown else f"live for {after:.0f} s"
        logger.info("stable (%s): %s", when, ", ".join(proven))


RUNTIME_COMMANDS = (
    apply_cmd,
    undo_cmd,
    view_cmd,
    reapply_cmd,
    install_cmd,
    uninstall_cmd,
    confirm_cmd,
)


def _classic(command: click.Command, prog: str) -> None:
    """A runtime command under its classic name, behind the same boundary as ksplice-pkg's."""
    setup_logging(0)
    command.main(prog_name=prog)


def apply_main() -> None:
    """ksplice-apply."""
    _classic(apply_cmd, "ksplice-apply")


def undo_main() -> None:
    """ksplice-undo."""
    _classic(undo_cmd, "ksplice-undo")


def view_main() -> None:
    """ksplice-view."""
    _classic(view_cmd, "ksplice-view")
