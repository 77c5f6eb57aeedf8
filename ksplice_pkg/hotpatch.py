"""`ksplice-pkg build`: the maintainer's whole path in one command.

Source package + kernel package(s) + symbol map + patch -> update tarball -> hotpatch .deb or
.rpm. It is `create` with run-pre verification required (the kernel package's vmlinuz is the
binary the pre code is checked against), followed by packaging, with each phase timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ksplice_pkg.config import Signing, create_options
from ksplice_pkg.create import create, gather
from ksplice_pkg.distro.kernelpkg import KernelPackages
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.log import Phases
from ksplice_pkg.target.files import TargetSpec
from ksplice_pkg.upload.report import Report


class OutputFormat(Enum):
    DEB = "deb"
    RPM = "rpm"
    TARBALL = "tarball"


@dataclass
class BuildResult(Phases):
    tarball: Path | None = None
    packages: list[Path] = field(default_factory=list)
    # Of `build --from`: the report, and whether every change of the upload is in the update.
    report: Report | None = None
    complete: bool = True

    def __post_init__(self) -> None:
        Phases.__init__(self)


def build_hotpatch(
    source: Path,
    target: TargetSpec,
    packages: KernelPackages,
    patch_file: Path | None,
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
    from_source: Path | None = None,
    report_file: Path | None = None,
    require_complete: bool = False,
) -> BuildResult:
    """`source` with `patch_file`; or, with `from_source`, the upload from that source (the
    target's) to `source`, made into one cumulative update."""
    if (patch_file is None) == (from_source is None):
        raise KspliceError(
            "give --patch (a fix) or --from (the target's source: the whole upload), not both",
            hint="e.g. ksplice-pkg build linux-source-6.1_NEW.deb --from linux-source-6.1_OLD.deb",
        )
    result = BuildResult()
    options = create_options(
        from_source or source,
        target,
        cache=cache,
        packages=packages,
        patch_file=patch_file,
        patch=b"" if from_source is not None else None,
        update_id=update_id,
        description=description,
        jobs=jobs,
        output_dir=output_dir,
        keyring=keyring,
        cves=cves,
        signing=signing,
    )
    if options.target.binary is None and packages.kernel is None:
        raise _no_binary()
    if from_source is not None:
        from ksplice_pkg.upload.cumulative import build_from_upload

        upload = build_from_upload(
            options, source, result, report_file=report_file, require_complete=require_complete
        )
        result.tarball, result.report = upload.tarball, upload.report
        result.complete = upload.report.complete
    else:
        with result.phase("inputs: source tree and target kernel"):
            cfg = gather(options)
        if cfg.target.binary is None:
            raise _no_binary()
        with result.phase("update: build, diff, run-pre, module"):
            result.tarball = create(cfg)
    if fmt is not OutputFormat.TARBALL and result.tarball is not None:
        with result.phase(f"package: hotpatch .{fmt.value}"):
            result.packages = _package(result.tarball, fmt, output_dir.resolve())
        if result.report is not None and result.report.update is not None:
            result.report.update["packages"] = [str(p) for p in result.packages]
            if report_file is not None:
                result.report.timings = result.timings
                result.report.write(report_file)
    return result


def _no_binary() -> KspliceError:
    return KspliceError(
        "build verifies the update against the target kernel's binary (run-pre), and none "
        "was given",
        hint="give --kernel-package (its vmlinuz is used) or --vmlinux",
    )


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
