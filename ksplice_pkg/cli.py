"""The command line: thin click commands that parse, call the library and print."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import NoReturn

import click

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import setup_logging
from ksplice_pkg.paths import cache_dir as default_cache_dir
from ksplice_pkg.run import terminate_children


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the build unwinds like on ^C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _report(prog: str, error: KspliceError) -> NoReturn:
    click.echo(f"{prog}: error: {error}", err=True)
    sys.exit(error.exit_code)


def _os_error(e: OSError) -> KspliceError:
    where = f" {e.filename}" if e.filename else ""
    return KspliceError(
        f"cannot access{where}: {e.strerror or e}",
        hint="check the path and its permissions (run with --debug for the traceback)",
    )


class _Boundary:
    """The one error boundary of every command, `ksplice-pkg ...` and `ksplice-create` alike.

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
            _report(prog, e)
        except OSError as e:
            if debug:
                raise
            _report(prog, _os_error(e))
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


class _Group(_Boundary, click.Group):
    pass


class _Command(_Boundary, click.Command):
    pass


_cache_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Downloads and builds (default: $KSPLICE_PKG_CACHE, else ~/.cache/ksplice-pkg).",
)


@click.group(cls=_Group)
@click.version_option(__version__)
@click.option("-v", "--verbose", count=True, help="Show the commands run and why (repeatable).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def main(verbose: int, debug: bool) -> None:
    """Build, ship and apply rebootless kernel updates."""
    setup_logging(verbose + (2 if debug else 0))


@main.command()
@click.argument("release", required=False)
@_cache_option
@click.option(
    "--kallsyms",
    is_flag=True,
    help="Also boot the kernel in qemu and save its /proc/kallsyms (the real symbol map).",
)
def fetch(release: str | None, kallsyms: bool, cache_dir: Path | None) -> None:
    """Download a Debian kernel's image, headers and source (default: Debian's current one).

    RELEASE is the kernel release as `uname -r` prints it, e.g. 6.1.0-56-cloud-amd64.
    The last line printed is the directory holding it all.
    """
    from ksplice_pkg.distro.debian import fetch as do_fetch

    artifacts = do_fetch(cache_dir or default_cache_dir(), release)
    if kallsyms and not artifacts.kallsyms.is_file():
        from ksplice_pkg.vm.capture import capture_kallsyms

        capture_kallsyms(artifacts)
    click.echo(f"release:  {artifacts.release} ({artifacts.version})")
    click.echo(f"source:   {artifacts.source_tree}")
    click.echo(f"target:   {artifacts.target_dir}")
    click.echo(artifacts.root)


@main.command()
@click.argument("release", required=False)
@_cache_option
@click.option("-j", "--jobs", type=int, default=None, help="Parallel build jobs.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
def demo(release: str | None, jobs: int | None, cache_dir: Path | None, output_dir: Path) -> None:
    """Build the built-in example update for Debian's kernel and prove it in qemu."""
    from ksplice_pkg.demo import run_demo

    click.echo(run_demo(cache_dir or default_cache_dir(), release, jobs, output_dir.resolve()))


_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("create", cls=_Command)
@click.argument("kernel_source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--patch", "patch_file", type=_file, help="The patch (a unified diff) to apply.")
@click.option("--diffext", help="Files named FILE<EXT> in the tree are new versions of FILE.")
@click.option("--git", "git_commit", help="Take the patch from this commit of the source tree.")
@click.option("--prebuild", is_flag=True, help="Build what later updates need, then stop.")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Target kernel description: System.map or kallsyms, .config, Module.symvers, "
    "optionally vmlinuz/vmlinux (default: KERNEL_SOURCE/ksplice).",
)
@click.option("--system-map", type=_file, help="System.map or a copy of /proc/kallsyms.")
@click.option("--kconfig", type=_file, help="The target kernel's .config.")
@click.option("--symvers", type=_file, help="The target kernel's Module.symvers.")
@click.option("--vmlinux", type=_file, help="The target kernel's vmlinux or vmlinuz (run-pre).")
@click.option("--kernel-release", help="The target's `uname -r` (default: from the vmlinuz).")
@click.option(
    "--modules-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The target's lib/modules/<release>: the .ko files that run-pre checks module code "
    "against (default: `modules` in the --config dir).",
)
@click.option(
    "--series",
    "series",
    multiple=True,
    type=_file,
    help="An earlier update (its tarball) this one is built on top of; repeat in order.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="A cumulative update: applying it supersedes every earlier update.",
)
@click.option(
    "--runtime-only",
    is_flag=True,
    help="Leave out changes to __init code and init-only data (refused by default); each one "
    "left out is listed and recorded in the manifest. Safe only when the fix does not need "
    "them on a system that has already booted.",
)
@click.option("--id", "update_id", help="Update id (default: 8 random [a-z0-9]).")
@click.option("--description", help="What the update fixes (default: the patch's first line).")
@click.option("-j", "--jobs", type=int, default=None, help="Parallel build jobs.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--patch-opt", default="-p1", show_default=True, help="Option passed to patch.")
@click.option("-v", "--verbose", count=True, help="Say why each function is included.")
@_cache_option
def create_cmd(
    kernel_source: Path,
    patch_file: Path | None,
    diffext: str | None,
    git_commit: str | None,
    prebuild: bool,
    config_dir: Path | None,
    system_map: Path | None,
    kconfig: Path | None,
    symvers: Path | None,
    vmlinux: Path | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    series: tuple[Path, ...],
    replace: bool,
    runtime_only: bool,
    update_id: str | None,
    description: str | None,
    jobs: int | None,
    output_dir: Path,
    patch_opt: str,
    verbose: int,
    cache_dir: Path | None,
) -> None:
    """Build a livepatch update of KERNEL_SOURCE's kernel from a patch."""
    from ksplice_pkg.config import create_config
    from ksplice_pkg.create import create
    from ksplice_pkg.target.files import TargetSpec

    if verbose:
        setup_logging(verbose)
    if config_dir is None and (kernel_source / "ksplice").is_dir():
        config_dir = kernel_source / "ksplice"
    target = TargetSpec(
        config_dir, system_map, kconfig, symvers, vmlinux, kernel_release, modules_dir
    )
    cfg = create_config(
        kernel_source,
        target,
        cache=cache_dir or default_cache_dir(),
        patch_file=patch_file,
        diffext=diffext,
        git_commit=git_commit,
        prebuild=prebuild,
        update_id=update_id,
        description=description,
        jobs=jobs,
        output_dir=output_dir,
        patch_opt=patch_opt,
        series=series,
        replace=replace,
        runtime_only=runtime_only,
    )
    click.echo(create(cfg))


main.add_command(create_cmd)


def create_main() -> None:
    """ksplice-create: the create command under its classic name, behind the same boundary."""
    setup_logging(0)
    create_cmd()


if __name__ == "__main__":
    main()
