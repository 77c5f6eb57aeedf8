"""The command line: thin click commands that parse, call the library and print."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import click

from ksplice_pkg import __version__
from ksplice_pkg.boundary import BoundaryCommand, BoundaryGroup
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger, setup_logging
from ksplice_pkg.paths import cache_dir as default_cache_dir

if TYPE_CHECKING:  # the runtime's package ships no config.py: imported where used
    from ksplice_pkg.config import Signing

# `build --from`: an update was made, but some changes of the upload could not be carried.
PARTIAL_UPDATE = 6

_cache_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Downloads and builds (default: $KSPLICE_PKG_CACHE, else ~/.cache/ksplice-pkg).",
)


class _Commands(BoundaryGroup):
    """The commands; those of a subpackage of the build side are imported only when run (or
    their help shown), so that the runtime imports none of them, and listed only where their
    package is installed."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "source-package": ("ksplice_pkg.farm.cli", "source_package")
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        import importlib.util

        present = [n for n, (m, _) in self.LAZY.items() if importlib.util.find_spec(m)]
        return sorted([*super().list_commands(ctx), *present])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import importlib

            module, name = self.LAZY[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), name)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
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
@click.option(
    "--source-package",
    is_flag=True,
    help="Also download the Debian source package (.dsc and tarballs) the kernel was built from.",
)
def fetch(
    release: str | None, kallsyms: bool, source_package: bool, cache_dir: Path | None
) -> None:
    """Download a Debian kernel's image, headers and source (default: Debian's current one).

    RELEASE is the kernel release as `uname -r` prints it, e.g. 6.1.0-56-cloud-amd64.
    The last line printed is the directory holding it all.
    """
    from ksplice_pkg.distro.debian import fetch as do_fetch
    from ksplice_pkg.distro.debian import fetch_source_package

    cache = cache_dir or default_cache_dir()
    artifacts = do_fetch(cache, release)
    dsc = fetch_source_package(cache, artifacts.release) if source_package else None
    if kallsyms and not artifacts.kallsyms.is_file():
        from ksplice_pkg.vm.capture import capture_kallsyms

        capture_kallsyms(artifacts)
    click.echo(f"release:  {artifacts.release} ({artifacts.version})")
    click.echo(f"source:   {artifacts.source_tree}")
    click.echo(f"target:   {artifacts.target_dir}")
    if dsc is not None:
        click.echo(f"package:  {dsc}")
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
_source_argument = click.argument("kernel_source", type=click.Path(exists=True, path_type=Path))


def _package_options(f: Callable[..., None]) -> Callable[..., None]:
    """The target described by distro packages, and the source package's keyring."""
    for option in reversed(
        [
            click.option(
                "--kernel-package",
                type=_file,
                help="linux-image-*.deb or kernel(-core) .rpm: .config, vmlinuz, release.",
            ),
            click.option(
                "--headers-package",
                type=_file,
                help="linux-headers-*.deb or kernel-devel .rpm: Module.symvers.",
            ),
            click.option(
                "--debug-package",
                type=_file,
                help="linux-image-*-dbg.deb or kernel-debuginfo .rpm: the symbol map.",
            ),
            click.option(
                "--keyring",
                type=_file,
                help="Check the .dsc's signature against this keyring (gpgv).",
            ),
        ]
    ):
        f = option(f)
    return f


def _update_options(f: Callable[..., None]) -> Callable[..., None]:
    """What the update says of itself (its CVE ids) and who signs its module."""
    for option in reversed(
        [
            click.option(
                "--cve",
                "cves",
                multiple=True,
                metavar="CVE-YYYY-NNNN",
                help="A CVE the update fixes (repeatable): in the manifest, the packages' "
                "changelogs and `view --cves`.",
            ),
            click.option(
                "--sign-key",
                type=_file,
                help="PEM private key to sign the module with, as scripts/sign-file does.",
            ),
            click.option("--sign-cert", type=_file, help="The PEM certificate of --sign-key."),
        ]
    ):
        f = option(f)
    return f


def _upload_options(f: Callable[..., None]) -> Callable[..., None]:
    """--from and what goes with it: a whole upload instead of a patch."""
    for option in reversed(
        [
            click.option(
                "--from",
                "from_source",
                type=click.Path(exists=True, path_type=Path),
                help="The source the target kernel was built from (any KERNEL_SOURCE form): "
                "the update brings the target from it to KERNEL_SOURCE, every live-patchable "
                "change in one cumulative update.",
            ),
            click.option(
                "--report",
                "report_file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="With --from: write the report (JSON) here: each changed file, what was "
                "included, what was left out and why.",
            ),
            click.option(
                "--require-complete",
                is_flag=True,
                help="With --from: refuse (exit 4, no update) when any change cannot be "
                "live-patched.",
            ),
        ]
    ):
        f = option(f)
    return f


def _signing(key: Path | None, cert: Path | None) -> Signing | None:
    from ksplice_pkg.config import Signing

    if (key is None) != (cert is None):
        raise KspliceError(
            "--sign-key and --sign-cert go together",
            hint="give the private key and its certificate (the one enrolled with mokutil)",
        )
    return Signing(key, cert) if key is not None and cert is not None else None


@click.command("create", cls=BoundaryCommand)
@_source_argument
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
@_update_options
@_upload_options
@_package_options
@_cache_option
def create_cmd(
    kernel_source: Path,
    patch_file: Path | None,
    from_source: Path | None,
    report_file: Path | None,
    require_complete: bool,
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
    cves: tuple[str, ...],
    sign_key: Path | None,
    sign_cert: Path | None,
    kernel_package: Path | None,
    headers_package: Path | None,
    debug_package: Path | None,
    keyring: Path | None,
    cache_dir: Path | None,
) -> None:
    """Build a livepatch update of KERNEL_SOURCE's kernel from a patch.

    KERNEL_SOURCE is a kernel tree, a Debian source package (linux_*.dsc), a linux-source-X.Y
    .deb or its tarball, or a kernel .src.rpm. With --from OLD_SOURCE instead of a patch, the
    whole upload from OLD_SOURCE (the target's) to KERNEL_SOURCE, as `build --from` makes it
    (exit status 6: a partial update).

    SOURCE_DATE_EPOCH, when set, is the update's `created` stamp and the tarball's time (default:
    now); it orders the updates of a kernel, so it must move from one update to the next.
    """
    from ksplice_pkg.config import create_options
    from ksplice_pkg.create import create, gather, gather_prebuild, prebuild_tree
    from ksplice_pkg.distro.kernelpkg import KernelPackages
    from ksplice_pkg.target.files import TargetSpec

    if verbose:
        setup_logging(verbose)
    if config_dir is None and (kernel_source / "ksplice").is_dir() and not kernel_package:
        config_dir = kernel_source / "ksplice"
    target = TargetSpec(
        config_dir=config_dir,
        system_map=system_map,
        kconfig=kconfig,
        symvers=symvers,
        binary=vmlinux,
        release=kernel_release,
        modules_dir=modules_dir,
    )
    if from_source is not None and (series or replace or runtime_only):
        raise click.UsageError(
            "--from makes one cumulative update that leaves __init changes out by itself: "
            "no --series, --replace or --runtime-only"
        )
    options = create_options(
        from_source or kernel_source,
        target,
        cache=cache_dir or default_cache_dir(),
        packages=KernelPackages(kernel_package, headers_package, debug_package),
        patch_file=patch_file,
        diffext=diffext,
        git_commit=git_commit,
        patch=b"" if from_source is not None else None,
        prebuild=prebuild,
        update_id=update_id,
        description=description,
        jobs=jobs,
        output_dir=output_dir,
        patch_opt=patch_opt,
        series=series,
        replace=replace,
        runtime_only=runtime_only,
        keyring=keyring,
        cves=cves,
        signing=_signing(sign_key, sign_cert),
    )
    if from_source is not None:
        from ksplice_pkg.log import Phases
        from ksplice_pkg.upload.cumulative import build_from_upload

        upload = build_from_upload(
            options,
            kernel_source,
            Phases(),
            report_file=report_file,
            require_complete=require_complete,
        )
        click.echo(upload.report.summary())
        click.echo(upload.tarball)
        if not upload.report.complete:
            sys.exit(PARTIAL_UPDATE)
    elif report_file is not None or require_complete:
        raise click.UsageError("--report and --require-complete go with --from")
    elif prebuild:
        click.echo(prebuild_tree(gather_prebuild(options)))
    else:
        click.echo(create(gather(options)))


main.add_command(create_cmd)


@main.command()
@_source_argument
@click.option("--patch", "patch_file", type=_file, help="The patch to ship.")
@_upload_options
@click.option("--system-map", type=_file, help="System.map or a copy of /proc/kallsyms.")
@click.option("--kconfig", type=_file, help="The target kernel's .config.")
@click.option("--symvers", type=_file, help="The target kernel's Module.symvers.")
@click.option("--vmlinux", type=_file, help="The target kernel's vmlinux or vmlinuz.")
@click.option(
    "--modules-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The target's installed lib/modules/<release> (instead of the kernel package's).",
)
@_package_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["deb", "rpm", "tarball"]),
    default="deb",
    show_default=True,
    help="What to make: a hotpatch package, or only the update tarball.",
)
@click.option("--id", "update_id", help="Update id (default: 8 random [a-z0-9]).")
@click.option("--description", help="What the update fixes (default: the patch's first line).")
@click.option("-j", "--jobs", type=int, default=None, help="Parallel build jobs.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@_update_options
@_cache_option
def build(
    kernel_source: Path,
    patch_file: Path | None,
    from_source: Path | None,
    report_file: Path | None,
    require_complete: bool,
    system_map: Path | None,
    kconfig: Path | None,
    symvers: Path | None,
    vmlinux: Path | None,
    modules_dir: Path | None,
    kernel_package: Path | None,
    headers_package: Path | None,
    debug_package: Path | None,
    keyring: Path | None,
    fmt: str,
    update_id: str | None,
    description: str | None,
    jobs: int | None,
    output_dir: Path,
    cves: tuple[str, ...],
    sign_key: Path | None,
    sign_cert: Path | None,
    cache_dir: Path | None,
) -> None:
    """Source package + kernel packages + patch -> a verified hotpatch package.

    KERNEL_SOURCE is a kernel tree, a linux_*.dsc, a linux-source-X.Y .deb or its tarball, or a
    kernel .src.rpm. Run-pre verification is required. For example:

    \b
        ksplice-pkg build linux_6.1.187-1.dsc --patch fix.patch --system-map kallsyms \\
            --kernel-package linux-image-6.1.0-53-cloud-amd64_6.1.187-1_amd64.deb \\
            --headers-package linux-headers-6.1.0-53-cloud-amd64_6.1.187-1_amd64.deb

    With --from OLD_SOURCE instead of --patch, a whole upload: KERNEL_SOURCE is the new upload,
    OLD_SOURCE the one the target kernel was built from. Exit status 6: a partial update was
    made, and the changes left out (listed, and in --report) need a reboot.
    """
    from ksplice_pkg.distro.kernelpkg import KernelPackages
    from ksplice_pkg.hotpatch import OutputFormat, build_hotpatch
    from ksplice_pkg.target.files import TargetSpec

    target = TargetSpec(
        system_map=system_map,
        kconfig=kconfig,
        symvers=symvers,
        binary=vmlinux,
        modules_dir=modules_dir,
    )
    result = build_hotpatch(
        kernel_source,
        target,
        KernelPackages(kernel_package, headers_package, debug_package),
        patch_file,
        cache=cache_dir or default_cache_dir(),
        output_dir=output_dir,
        fmt=OutputFormat(fmt),
        update_id=update_id,
        description=description,
        jobs=jobs,
        keyring=keyring,
        cves=cves,
        signing=_signing(sign_key, sign_cert),
        from_source=from_source,
        report_file=report_file,
        require_complete=require_complete,
    )
    for name, seconds in result.timings:
        click.echo(f"{seconds:7.1f} s  {name}")
    click.echo(f"{sum(s for n, s in result.timings if not n.startswith(' ')):7.1f} s  total")
    if result.report is not None:
        click.echo(result.report.summary())
    for path in [result.tarball, *result.packages]:
        click.echo(path)
    if not result.complete:
        # Made, but partial: scripts must not take it for the whole upload.
        sys.exit(PARTIAL_UPDATE)


@main.command("package")
@click.argument("updates", nargs=-1, required=True, type=_file)
@click.option("--format", "fmt", type=click.Choice(["deb", "rpm"]), required=True)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--maintainer",
    help="Maintainer/Packager field (default: $DEBFULLNAME <$DEBEMAIL>, as dch uses).",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Package each (cumulative) update as a version of its kernel's stream package, "
    "ksplice-updates-<release>, which apt and dnf upgrade to the newest update.",
)
@click.option(
    "--build-number",
    type=int,
    help="The stream package's build number (Debian revision, RPM release; default 1): "
    "raise it to rebuild the same update.",
)
def package_cmd(
    updates: tuple[Path, ...],
    fmt: str,
    output_dir: Path,
    maintainer: str | None,
    stream: bool,
    build_number: int | None,
) -> None:
    """Turn update tarballs (ksplice-<id>.tar.gz) into .deb or .rpm packages, one each.

    SOURCE_DATE_EPOCH, when set, is the time stamped in them (default: the update's creation
    time). Prints the path of each package.
    """
    import os

    from ksplice_pkg.package import DEFAULT_MAINTAINER, PackageFormat, Stream, build_packages
    from ksplice_pkg.timestamp import source_date_epoch

    if build_number is not None and not stream:
        raise click.UsageError("--build-number numbers the builds of a stream: give --stream")
    if maintainer is None and os.environ.get("DEBEMAIL"):
        name = os.environ.get("DEBFULLNAME", "ksplice-pkg")
        maintainer = f"{name} <{os.environ['DEBEMAIL']}>"
    for path in build_packages(
        updates,
        PackageFormat(fmt),
        output_dir,
        source_date_epoch=source_date_epoch(),
        maintainer=maintainer or DEFAULT_MAINTAINER,
        stream=Stream(build_number or 1) if stream else None,
    ):
        click.echo(path)


@main.command("publish")
@click.argument("packages", nargs=-1, required=True, type=_file)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The repository directory: apt/ and rpm/ in it, made if missing.",
)
@click.option("--gpg-key", help="Sign with this secret key (fingerprint, key id or email).")
@click.option(
    "--gpg-homedir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="gpg's home directory holding the key (default: $GNUPGHOME, else ~/.gnupg).",
)
def publish_cmd(
    packages: tuple[Path, ...], repo: Path, gpg_key: str | None, gpg_homedir: Path | None
) -> None:
    """Add .deb and .rpm packages to the apt and dnf repositories in REPO.

    apt: a pool indexed by apt-ftparchive, Release signed (InRelease, Release.gpg). dnf:
    the RPMs signed (rpmsign), createrepo_c's metadata, an updateinfo.xml advisory per update
    naming its CVE ids, repomd.xml signed. The public key is written to REPO/signing-key.gpg
    (for apt's signed-by) and REPO/signing-key.asc (dnf's gpgkey). Every version published
    stays; publishing the same package again changes nothing.
    """
    from ksplice_pkg.publish import Signer, publish

    signer = Signer.find(gpg_key, gpg_homedir) if gpg_key else None
    if signer is None:
        logger.warning("no --gpg-key: the repository is not signed; apt and dnf refuse it "
                       "unless told to trust it")  # fmt: skip
    for placed in publish(repo, packages, signer):
        click.echo(f"{placed.path}" + ("" if placed.new else " (already published)"))


@main.command("cache")
@_cache_option
@click.option("--clean", is_flag=True, help="Remove the entries unused for --unused-for days.")
@click.option(
    "--unused-for",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Days since an entry's last use after which --clean removes it (0: all not in use).",
)
def cache_cmd(cache_dir: Path | None, clean: bool, unused_for: float) -> None:
    """List what the cache holds (kernels, unpacked sources and packages, create's object
    trees, extracted vmlinux), least recently used first; with --clean, remove what has not
    been used for --unused-for days. Entries a running command uses are left alone.
    """
    import time

    from ksplice_pkg.cache import clean as clean_cache
    from ksplice_pkg.cache import entries, human_size

    cache = cache_dir or default_cache_dir()
    if not clean:
        listed = entries(cache)
        for e in listed:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            click.echo(f"{human_size(e.size):>10}  {used}  {e.name}")
        total = human_size(sum(e.size for e in listed))
        click.echo(f"{total:>10}  in {len(listed)} entries of {cache}")
        return
    cleaned = clean_cache(cache, unused_for * 86400)
    for e in cleaned.removed:
        click.echo(f"removed {e.name} ({human_size(e.size)})")
    for e in cleaned.in_use:
        click.echo(f"kept {e.name}: in use")
    freed = human_size(sum(e.size for e in cleaned.removed))
    click.echo(f"freed {freed} in {len(cleaned.removed)} entries")


def create_main() -> None:
    """ksplice-create: the create command under its classic name, behind the same boundary."""
    setup_logging(0)
    create_cmd()


# The runtime (apply, undo, view, reapply, install, uninstall, confirm): imports no build side.
from ksplice_pkg.runtime.cli import RUNTIME_COMMANDS  # noqa: E402

for _command in RUNTIME_COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
