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
        except ModuleNotFoundError as e:
            # The distro packages split the tool: ksplice-pkg-runtime alone has no build side
            # (create, fetch, demo, package) nor its libraries.
            if (e.name or "").split(".")[0] not in _BUILD_SIDE_ROOTS:
                raise
            click.echo(
                f"ksplice-pkg: error: `{ctx.invoked_subcommand}` is part of the build side, "
                f"which is not installed (no module {e.name})\n"
                "  hint: install the ksplice-pkg package (apt install ksplice-pkg, "
                "dnf install ksplice-pkg)",
                err=True,
            )
            sys.exit(KspliceError.exit_code)


_BUILD_SIDE_ROOTS = {"ksplice_pkg", "elftools", "debian"}


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


@click.command("create")
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
    update_id: str | None,
    description: str | None,
    jobs: int | None,
    output_dir: Path,
    patch_opt: str,
    verbose: int,
    cache_dir: Path | None,
) -> None:
    """Build a livepatch update of KERNEL_SOURCE's kernel from a patch."""
    import re

    from ksplice_pkg.create import CreateConfig, create, random_id, work_dir_for
    from ksplice_pkg.kbuild import default_jobs
    from ksplice_pkg.source import diffext_patch, git_patch
    from ksplice_pkg.target.files import resolve_target

    if verbose:
        setup_logging(verbose)
    given = [x for x in (patch_file, diffext, git_commit) if x] + ([True] if prebuild else [])
    if len(given) != 1:
        raise KspliceError(
            "give exactly one of --patch, --diffext, --git or --prebuild",
            hint="e.g. ksplice-pkg create --patch fix.patch /usr/src/linux",
        )
    if update_id is not None and not re.fullmatch(r"[a-z0-9]{1,32}", update_id):
        raise KspliceError(f"--id {update_id!r}: use 1 to 32 characters of [a-z0-9]")
    if config_dir is None and (kernel_source / "ksplice").is_dir():
        config_dir = kernel_source / "ksplice"
    target = resolve_target(
        config_dir,
        system_map=system_map,
        kconfig=kconfig,
        symvers=symvers,
        binary=vmlinux,
        release=kernel_release,
    )
    patch = ""
    if patch_file is not None:
        patch = patch_file.read_text(errors="surrogateescape")
    elif diffext:
        patch = diffext_patch(kernel_source, diffext)
    elif git_commit:
        patch = git_patch(kernel_source, git_commit)
    if description is None:
        first = next((ln for ln in patch.splitlines() if ln.strip()), "")
        description = (
            first.removeprefix("Subject: ").strip()
            if not first.startswith(("---", "diff ", "Index:"))
            else f"livepatch update for {target.release}"
        )
    cache = cache_dir or default_cache_dir()
    cfg = CreateConfig(
        source=kernel_source.resolve(),
        target=target,
        patch=patch,
        patch_opt=patch_opt,
        id=update_id or random_id(),
        description=description,
        jobs=jobs or default_jobs(),
        output_dir=output_dir.resolve(),
        work_dir=work_dir_for(cache, kernel_source),
        prebuild=prebuild,
    )
    result = create(cfg)
    click.echo(result)


main.add_command(create_cmd)


@main.command("package")
@click.argument("updates", nargs=-1, required=True, type=_file)
@click.option("--format", "fmt", type=click.Choice(["deb", "rpm"]), required=True)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--maintainer",
    help="Maintainer/Packager field (default: $DEBFULLNAME <$DEBEMAIL>, as dch uses).",
)
def package_cmd(
    updates: tuple[Path, ...], fmt: str, output_dir: Path, maintainer: str | None
) -> None:
    """Turn update tarballs (ksplice-<id>.tar.gz) into .deb or .rpm packages, one each.

    SOURCE_DATE_EPOCH, when set, is the time stamped in them (default: the update's creation
    time). Prints the path of each package.
    """
    import os

    from ksplice_pkg.package import DEFAULT_MAINTAINER, PackageFormat, build_packages

    if maintainer is None and os.environ.get("DEBEMAIL"):
        name = os.environ.get("DEBFULLNAME", "ksplice-pkg")
        maintainer = f"{name} <{os.environ['DEBEMAIL']}>"
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise KspliceError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
    for path in build_packages(
        updates,
        PackageFormat(fmt),
        output_dir,
        source_date_epoch=int(epoch) if epoch is not None else None,
        maintainer=maintainer or DEFAULT_MAINTAINER,
    ):
        click.echo(path)


def create_main() -> None:
    """ksplice-create: the create command under its classic name."""
    setup_logging(0)
    try:
        create_cmd(standalone_mode=True)
    except KspliceError as e:
        click.echo(f"ksplice-create: error: {e}", err=True)
        sys.exit(e.exit_code)


# The runtime (apply, undo, view, reapply, install, uninstall, confirm): imports no build side.
from ksplice_pkg.runtime.cli import RUNTIME_COMMANDS  # noqa: E402

for _command in RUNTIME_COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
