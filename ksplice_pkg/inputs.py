"""The first stage of the pipeline: what the options name, made into files.

KERNEL_SOURCE, a tree or a distro source package, becomes a kernel tree; the target kernel's
packages are unpacked into its files, checked against the source's version before the source
is unpacked (the slow part); the earlier updates of a --series are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.compile.kbuild import check_make_path
from ksplice_pkg.config import work_dir_for
from ksplice_pkg.distro.kernelpkg import KernelPackages, unpack_kernel_packages
from ksplice_pkg.distro.srcpkg import SourceKind, identify, prepare_source
from ksplice_pkg.source.series import PreviousUpdate, load_previous
from ksplice_pkg.target.files import TargetFiles, TargetSpec


@dataclass(frozen=True)
class Inputs:
    tree: Path  # the kernel tree, the distro's patches applied
    target: TargetFiles
    series: tuple[PreviousUpdate, ...] = ()


def unpack_inputs(
    source: Path,
    target: TargetSpec,
    packages: KernelPackages,
    *,
    cache: Path,
    keyring: Path | None = None,
    series: Sequence[Path] = (),
) -> Inputs:
    """Unpacked under `cache`; a source package is unpacked last, once everything else checks."""
    kernel_source = identify(source)
    if kernel_source.kind is SourceKind.TREE:
        _check_tree(source, cache, "the kernel source tree")
    if kernel_source.kind is SourceKind.TARBALL and keyring is None:
        # A bare tarball's name says no version: unpack it first, then its Makefile does.
        source = prepare_source(kernel_source, cache)
        kernel_source = identify(source)
        _check_tree(source, cache, "the unpacked kernel source tree")
    files = unpack_kernel_packages(target, packages, cache=cache, source=kernel_source).resolve()
    previous = tuple(load_previous(p, files.release) for p in series)
    if kernel_source.kind is not SourceKind.TREE or keyring is not None:
        source = prepare_source(kernel_source, cache, keyring)
        _check_tree(source, cache, "the unpacked kernel source tree")
    return Inputs(source.resolve(), files, previous)


def _check_tree(tree: Path, cache: Path, what: str) -> None:
    check_make_path(tree.resolve(), what)
    check_make_path(work_dir_for(cache, tree), "the work directory (under the cache)")
