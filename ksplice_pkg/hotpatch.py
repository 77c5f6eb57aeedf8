"""`ksplice-pkg build`: the maintainer's whole path in one command.

Source package + kernel package(s) + symbol map + patch -> update tarball -> hotpatch .deb or
.rpm. It is `create` with run-pre verification required (the kernel package's vmlinuz is the
binary the pre code is checked against), followed by packaging, with each phase timed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ksplice_pkg.config import Signing, create_options
from ksplice_pkg.create import create, gather
from ksplice_pkg.distro.kernelpkg import KernelPackages
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import logger
from ksplice_pkg.target.files import TargetSpec


class OutputFormat(Enum):
    DEB = "deb"
    RPM = "rpm"
    TARBALL = "tarball"


@dataclass
class BuildResult:
    tarball: Path | None = None
    packages: list[Path] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        logger.info("=== %s", name)
        start = time.monotonic()
        yield
        self.timings.append((name, time.monotonic() - start))


def build_hotpatch(
    source: Path,
    target: TargetSpec,
    packages: KernelPackages,
    patch_file: Path,
    *,
    cache: Path,
    output_dir: Path,
    fmt: OutputFormat = OutputFormat.DEB,
    update_id: str | None = None,
    description: str | None = None,
    jobs: int | None = None,
    keyring: Path | None = None,
    cves: Sequence[str] = (),
    signing: Signing | None = None,
) -> BuildResult:
    result = BuildResult()
    with result.phase("inputs: source tree and target kernel"):
        options = create_options(
            source,
            target,
            cache=cache,
            packages=packages,
            patch_file=patch_file,
            update_id=update_id,
            description=description,
            jobs=jobs,
            output_dir=output_dir,
            keyring=keyring,
            cves=cves,
            signing=signing,
        )
        cfg = gather(options)
    if cfg.target.binary is None:
        raise KspliceError(
            "build verifies the update against the target kernel's binary (run-pre), and none "
            "was given",
            hint="give --kernel-package (its vmlinuz is used) or --vmlinux",
        )
    with result.phase("update: build, diff, run-pre, module"):
        result.tarball = create(cfg)
    if fmt is not OutputFormat.TARBALL:
        with result.phase(f"package: hotpatch .{fmt.value}"):
            result.packages = _package(result.tarball, fmt, cfg.output_dir)
    return result


def _package(tarball: Path, fmt: OutputFormat, output_dir: Path) -> list[Path]:
    try:
        from ksplice_pkg.package import (  # type: ignore[import-not-found,unused-ignore]
            PackageFormat,
            build_packages,
        )
    except ImportError as e:
        raise KspliceError(
            f"this installation cannot make .{fmt.value} packages (no ksplice_pkg.package); "
            f"the update is in {tarball}",
            hint="use --format tarball",
        ) from e
    packages: list[Path] = build_packages([tarball], PackageFormat(fmt.value), output_dir)
    return packages
