"""The command line: thin click commands that parse, call the library and print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import setup_logging
from ksplice_pkg.paths import cache_dir as default_cache_dir


class _Group(click.Group):
    """The one error boundary: a KspliceError becomes its message and exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KspliceError as e:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"ksplice-pkg: error: {e}", err=True)
            sys.exit(e.exit_code)


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
def demo(release: str | None, jobs: int | None, cache_dir: Path | None) -> None:
    """Prove the lab: load the kernel's sample livepatch into the real distro kernel in qemu."""
    from ksplice_pkg.demo import run_demo

    run_demo(cache_dir or default_cache_dir(), release, jobs)


if __name__ == "__main__":
    main()
