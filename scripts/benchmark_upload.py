"""How long `ksplice-pkg build NEW --from OLD` takes on Debian's real uploads.

For each pair of tests/lab/uploads.py (the ext4 and nfsd one-fix uploads; with --stable, the
stable update too): the two linux-source .debs, the target kernel's image and headers .debs
and its /proc/kallsyms read in the lab, all downloaded (once) before timing starts. Then:

- cold: a fresh, empty cache: both source .debs unpacked, the target's packages unpacked,
  kbuild prepared like the target, the kbuild dry run and include index made, every unit the
  upload reaches compiled on both sides;
- warm: the same cache again with another update id, as a second run of the same upload.

Prints, per pair and run: wall time, units compiled, the report's totals and its timings per
phase (where the time goes); then warm/cold. Asserts nothing about the figures.

    scripts/benchmark-upload [--stable] [--only ext4|nfsd|stable] [--jobs J] [--keep DIR]

--keep DIR keeps each run's update and report in DIR (the cache is removed either way), to load
the update in the lab afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ksplice_pkg.distro.debian import fetch  # noqa: E402
from ksplice_pkg.distro.kernelpkg import KernelPackages  # noqa: E402
from ksplice_pkg.errors import KspliceError  # noqa: E402
from ksplice_pkg.hotpatch import OutputFormat, build_hotpatch  # noqa: E402
from ksplice_pkg.log import setup_logging  # noqa: E402
from ksplice_pkg.paths import cache_dir  # noqa: E402
from ksplice_pkg.target.files import TargetSpec  # noqa: E402
from tests.lab import uploads  # noqa: E402
from tests.lab.uploads import UploadPair  # noqa: E402


@dataclass(frozen=True)
class Inputs:
    label: str
    pair: UploadPair
    old: Path  # linux-source .deb the target was built from
    new: Path
    target: TargetSpec
    packages: KernelPackages


@dataclass(frozen=True)
class Run:
    wall: float
    report: dict[str, Any]


def _inputs(cache: Path, label: str, pair: UploadPair) -> Inputs:
    artifacts = fetch(cache, pair.release)
    if not artifacts.kallsyms.is_file():
        from ksplice_pkg.vm.capture import capture_kallsyms

        capture_kallsyms(artifacts)
    debs = artifacts.root / "debs"
    (image,) = debs.glob(f"linux-image-{pair.release}_*.deb")
    (headers,) = debs.glob(f"linux-headers-{pair.release}_*.deb")
    (old,) = debs.glob(f"linux-source-*_{pair.old.version}_all.deb")
    return Inputs(
        label, pair, old, uploads.source_deb(cache, pair.new.version),
        TargetSpec(system_map=artifacts.kallsyms), KernelPackages(kernel=image, headers=headers),
    )  # fmt: skip


def _build(inputs: Inputs, cache: Path, out: Path, update_id: str, jobs: int | None) -> Run:
    report = out / f"{update_id}.json"
    start = time.monotonic()
    try:
        build_hotpatch(
            inputs.new, inputs.target, inputs.packages, None,
            cache=cache, output_dir=out, fmt=OutputFormat.TARBALL, update_id=update_id,
            jobs=jobs, from_source=inputs.old, report_file=report,
        )  # fmt: skip
    except KspliceError as e:
        # A refusal (nothing live-patchable) still writes the report: its figures count.
        if not report.is_file():
            raise
        print(f"  ({inputs.label} {update_id}: {e.message})")
    return Run(time.monotonic() - start, json.loads(report.read_text()))


def _print(label: str, run: Run) -> None:
    r = run.report
    t = r["totals"]
    print(f"  {label}: {run.wall:.1f} s, {r['units_compiled']} unit(s) compiled in "
          f"{r['rounds']} round(s)")  # fmt: skip
    print(f"    changed files {t['changed_files']}: not built {t['not_built']}, built in "
          f"{t['built_in']}, modules {t['module']}, headers {t['headers']}, build system "
          f"{t['build_system']}, other {t['other']}")  # fmt: skip
    print(f"    included: {t['included_hunks']} hunk(s) of {t['included_files']} file(s), "
          f"{t['functions']} function(s); left out {t['left_out']} "
          f"{json.dumps(t['left_out_by_reason'])}")  # fmt: skip
    for name, seconds in r["timings"]:
        print(f"    {seconds:7.1f} s  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stable", action="store_true", help="the stable update too (slow)")
    parser.add_argument("--only", choices=["ext4", "nfsd", "stable"], help="one pair alone")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--keep", type=Path, help="keep the updates and reports here")
    args = parser.parse_args()
    setup_logging(0)
    cache = cache_dir()
    labels = [args.only] if args.only else ["ext4", "nfsd", *(["stable"] if args.stable else [])]
    try:
        pairs = {
            label: uploads.stable_pair()
            if label == "stable"
            else uploads.one_fix_pair(cache, {"ext4": uploads.EXT4, "nfsd": uploads.NFSD}[label])
            for label in labels
        }
        inputs = [_inputs(cache, label, pair) for label, pair in pairs.items()]
        figures: list[tuple[Inputs, Run, Run]] = []
        for i in inputs:
            # A fresh cache per pair for the cold run, on the same filesystem as the real one.
            cache.mkdir(parents=True, exist_ok=True)
            bench = Path(tempfile.mkdtemp(prefix="benchmark-upload-", dir=cache))
            done = False
            try:
                cold = _build(i, bench / "cache", bench / "out", f"{i.label}cold", args.jobs)
                # Kept after each run: a stable's cold update is worth loading even when its
                # warm run is cut short.
                if args.keep is not None:
                    shutil.copytree(bench / "out", args.keep / i.label, dirs_exist_ok=True)
                warm = _build(i, bench / "cache", bench / "out", f"{i.label}warm", args.jobs)
                if args.keep is not None:
                    shutil.copytree(bench / "out", args.keep / i.label, dirs_exist_ok=True)
                done = True
            finally:
                if done or args.keep is None:
                    shutil.rmtree(bench, ignore_errors=True)
                else:  # the after tree, the rounds' record and the objects, to see why
                    print(f"benchmark-upload: the failed run's cache is kept: {bench}")
            figures.append((i, cold, warm))
    except KspliceError as e:
        print(f"benchmark-upload: error: {e}", file=sys.stderr)
        return 1
    print(f"\ncores: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.1f}")
    for i, cold, warm in figures:
        print(f"\n{i.label}: {i.pair}  {i.new.name} --from {i.old.name}")
        _print("cold", cold)
        _print("warm", warm)
        print(f"  warm/cold: {warm.wall / cold.wall:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
