"""How long `ksplice-pkg build` takes from what Debian's archive holds to a hotpatch.

Inputs: the kernel's real source package (linux_*.dsc with its tarballs, from the deb-src
entries), its real image and headers .debs, the /proc/kallsyms of that kernel booted in the
lab, and the built-in one-file example patch. All are downloaded (once) before timing starts.

- cold: a fresh, empty cache: the .dsc is checked and unpacked (dpkg-source -x), the packages
  unpacked, vmlinux extracted, kbuild prepared like the target, the objects compiled;
- warm: the same cache again with another update id, as a second update of that kernel would.

Prints figures; asserts nothing about them. The target is cold < 90 s, warm < 15 s on 2 cores.

    scripts/benchmark-distro [--release RELEASE] [--format deb|rpm|tarball] [--jobs J]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ksplice_pkg.distro.debian import (  # noqa: E402
    fetch,
    fetch_source_package,
)
from ksplice_pkg.distro.kernelpkg import KernelPackages  # noqa: E402
from ksplice_pkg.errors import KspliceError  # noqa: E402
from ksplice_pkg.hotpatch import BuildResult, OutputFormat, build_hotpatch  # noqa: E402
from ksplice_pkg.log import setup_logging  # noqa: E402
from ksplice_pkg.paths import cache_dir  # noqa: E402
from ksplice_pkg.target.files import TargetSpec  # noqa: E402
from tests.lab.kernel import release_with_source  # noqa: E402

EXAMPLE = ROOT / "ksplice_pkg" / "examples" / "proc-cmdline.patch"


def _report(label: str, result: BuildResult, wall: float) -> None:
    print(f"{label}: {wall:.1f} s")
    for name, seconds in result.timings:
        print(f"    {seconds:7.1f} s  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a Debian kernel release (default: newest with source)")
    parser.add_argument("--format", default="deb", choices=[f.value for f in OutputFormat])
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    setup_logging(0)
    cache = cache_dir()
    try:
        if args.release:
            release, dsc = args.release, fetch_source_package(cache, args.release)
        else:
            release, dsc = release_with_source(cache)
        artifacts = fetch(cache, release)
        if not artifacts.kallsyms.is_file():
            from ksplice_pkg.vm.capture import capture_kallsyms

            capture_kallsyms(artifacts)
        debs = artifacts.root / "debs"
        (image,) = debs.glob(f"linux-image-{release}_*.deb")
        (headers,) = debs.glob(f"linux-headers-{release}_*.deb")
        target = TargetSpec(system_map=artifacts.kallsyms)
        packages = KernelPackages(kernel=image, headers=headers)
        # A fresh cache for the cold run, on the same filesystem as the real one.
        cache.mkdir(parents=True, exist_ok=True)
        bench = Path(tempfile.mkdtemp(prefix="benchmark-distro-", dir=cache))
        try:
            figures = {}
            for label, update_id in (("cold", "benchcold"), ("warm", "benchwarm")):
                start = time.monotonic()
                result = build_hotpatch(
                    dsc,
                    target,
                    packages,
                    EXAMPLE,
                    cache=bench / "cache",
                    output_dir=bench / "out",
                    fmt=OutputFormat(args.format),
                    update_id=update_id,
                    jobs=args.jobs,
                )
                figures[label] = (result, time.monotonic() - start)
        finally:
            shutil.rmtree(bench, ignore_errors=True)
    except KspliceError as e:
        print(f"benchmark-distro: error: {e}", file=sys.stderr)
        return 1
    print(f"\n{dsc.name} + {image.name} + {headers.name} + {EXAMPLE.name} -> {args.format}")
    print(f"cores: {os.cpu_count()}")
    for label, (result, wall) in figures.items():
        _report(label, result, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
