"""The lab's ways to the fetched Debian kernel, beside the product's: its tree prepared as
create prepares it, the header example patch, and the newest release whose source package the
archive serves. The lab tests and the scripts in scripts/ (benchmarks, the corpus) use them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ksplice_pkg.compile.kbuild import PreparedTree, default_jobs, prepare_tree
from ksplice_pkg.distro.debian import (
    DEFAULT_FLAVOUR,
    KernelArtifacts,
    available_releases,
    default_release,
    fetch_source_package,
)
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger


def prepared_tree(artifacts: KernelArtifacts, jobs: int | None = None) -> PreparedTree:
    return prepare_tree(
        artifacts.source_tree,
        artifacts.root / "obj",
        config=artifacts.config,
        symvers=artifacts.symvers,
        release=artifacts.release,
        jobs=jobs or default_jobs(),
    )


def header_example_patch() -> bytes:
    """A change to a static inline of a header most of the kernel includes (benchmark)."""
    return (resources.files("ksplice_pkg") / "examples" / "nr-threads-header.patch").read_bytes()


def release_with_source(cache: Path, flavour: str = DEFAULT_FLAVOUR) -> tuple[str, Path]:
    """The newest release of the default release's series whose source package the archive
    serves, and its downloaded .dsc.

    Mirrors may keep the source of only some versions (the newest security upload's .dsc can
    be missing while its binaries are served), so versions are tried newest first.
    """
    series = default_release(flavour).split(".")[:2]
    tried = []
    for release in reversed(available_releases(flavour)):
        if release.split(".")[:2] != series:
            continue
        try:
            return release, fetch_source_package(cache, release)
        except KspliceError as e:
            logger.info("no source package for %s: %s", release, e.message)
            tried.append(release)
    raise KspliceError(
        f"the archive serves the source package of no {'.'.join(series)} {flavour} release "
        f"(tried {', '.join(tried) or 'none'})",
        hint="refresh the package lists with `apt-get update` (as root) and try again",
    )
