"""`ksplice-pkg source-package`: build's options, written as a source package for a build farm."""

from __future__ import annotations

from pathlib import Path

import click

from ksplice_pkg.boundary import BoundaryCommand

_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("source-package", cls=BoundaryCommand)
@click.argument("kernel_source", type=click.Path(exists=True, path_type=Path))
@click.option("--patch", "patch_file", type=_file, help="The patch (a unified diff) to ship.")
@click.option(
    "--from",
    "from_source",
    type=_file,
    help="Instead of --patch, a whole upload: the target's source (a linux-source-X.Y .deb or "
    "linux_*.dsc), KERNEL_SOURCE the new upload (any form `build --from` takes).",
)
@click.option(
    "--system-map",
    type=_file,
    help="The target's symbol map (a copy of /proc/kallsyms): shipped in the source package.",
)
@click.option("--kernel-package", type=_file, help="The target's linux-image-<release> .deb.")
@click.option("--headers-package", type=_file, help="The target's linux-headers-<release> .deb.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dsc", "srpm"]),
    default="dsc",
    show_default=True,
    help="A Debian source package (sbuild, buildd) or a source RPM (Koji, OBS, mock).",
)
@click.option("--id", "update_id", help="Update id (default: 8 random [a-z0-9]).")
@click.option(
    "--description",
    help="What the update fixes (default: the patch's first line; of an upload, its versions).",
)
@click.option(
    "--cve",
    "cves",
    multiple=True,
    metavar="CVE-YYYY-NNNN",
    help="A CVE the update fixes (repeatable): in the changelog entry and the update.",
)
@click.option(
    "--distribution",
    default="unstable",
    show_default=True,
    help="The changelog entry's distribution: the suite the farm builds for.",
)
@click.option(
    "--maintainer",
    help="The source package's Maintainer (default: $DEBFULLNAME <$DEBEMAIL>, as dch uses).",
)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --from: where both sources are unpacked (default: $KSPLICE_PKG_CACHE, else "
    "~/.cache/ksplice-pkg).",
)
def source_package(
    kernel_source: Path,
    patch_file: Path | None,
    from_source: Path | None,
    system_map: Path | None,
    kernel_package: Path | None,
    headers_package: Path | None,
    fmt: str,
    update_id: str | None,
    description: str | None,
    cves: tuple[str, ...],
    distribution: str,
    maintainer: str | None,
    output_dir: Path,
    cache_dir: Path | None,
) -> None:
    """Write the hotpatch `build` would make as a source package, for a build farm to build.

    KERNEL_SOURCE is the target's linux-source-X.Y .deb or the kernel's linux_*.dsc: the
    source package build-depends on linux-source-X.Y, the image and the headers of that exact
    version, and on ksplice-pkg; its build runs `ksplice-pkg build` offline against them and
    gives the same package as `build` here under the same SOURCE_DATE_EPOCH (default: now,
    the changelog's date). Prints the .dsc or .src.rpm.

    With --from OLD_SOURCE instead of --patch (.dsc only), KERNEL_SOURCE is a new upload:
    both are unpacked and compared here, the source package carries NEW's changed files and
    both changelogs, and its build runs `build NEW --from OLD` (exit status 6, a partial
    update, is a success there). The packages are those of the kernel built from OLD.
    """
    import dataclasses
    import os

    from ksplice_pkg.farm.options import farm_build
    from ksplice_pkg.package.common import check_maintainer

    if fmt == "srpm" and from_source is not None:
        from ksplice_pkg.farm.srpm import upload_refused

        raise upload_refused()
    build = farm_build(
        kernel_source,
        kernel_package,
        headers_package,
        patch_file,
        system_map,
        update_id=update_id,
        description=description,
        cves=cves,
        from_source=from_source,
        cache=cache_dir,
    )
    if maintainer is None and os.environ.get("DEBEMAIL"):
        maintainer = f"{os.environ.get('DEBFULLNAME', 'ksplice-pkg')} <{os.environ['DEBEMAIL']}>"
    if maintainer is not None:
        build = dataclasses.replace(build, maintainer=check_maintainer(maintainer))
    if fmt == "dsc":
        from ksplice_pkg.farm.dsc import check_distribution, write_dsc

        click.echo(write_dsc(build, output_dir, distribution=check_distribution(distribution)))
    else:
        from ksplice_pkg.farm.srpm import write_srpm

        click.echo(write_srpm(build, output_dir))
