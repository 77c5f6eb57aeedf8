#!/usr/bin/env python3
"""A corpus of real fixes: the per-file changes between two Debian kernel uploads, each built
with `create` against the older kernel and loaded in that kernel in the lab.

For every .c file the older kernel's config compiles (into vmlinux or a module) whose text
differs in the newer upload's source, the file's own diff becomes one patch. Each is built
against the older kernel (its real /proc/kallsyms, vmlinuz, Module.symvers and modules) and,
when it builds, loaded in that kernel under qemu, its transition waited for, disabled and
removed. The outcome of each is one of: loaded; built but the load failed; refused (the reason
create gives); run-pre mismatch; does not compile alone (a fix spread over several files, cut
per file); other failure. The summary counts them; --out keeps every message.

    scripts/corpus.py [--old RELEASE] [--new RELEASE] [--sample N | --all] [--seed S] [--out DIR]

Defaults: the cloud-amd64 kernel Debian installs today and the upload before it in the same
series (discovered from apt, never hard-coded), a seeded random sample of 20 files. A whole
run takes hours on two cores.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ksplice_pkg.compile.headers import kernel_units  # noqa: E402
from ksplice_pkg.config import create_options  # noqa: E402
from ksplice_pkg.create import create, gather  # noqa: E402
from ksplice_pkg.distro.debian import (  # noqa: E402
    KernelArtifacts,
    available_releases,
    default_release,
    fetch,
)
from ksplice_pkg.errors import (  # noqa: E402
    CommandError,
    KspliceError,
    RefusedError,
    RunPreMismatchError,
)
from ksplice_pkg.log import logger, setup_logging  # noqa: E402
from ksplice_pkg.paths import cache_dir  # noqa: E402
from ksplice_pkg.run import run  # noqa: E402
from ksplice_pkg.target.files import TargetSpec  # noqa: E402
from ksplice_pkg.vm.capture import capture_kallsyms  # noqa: E402
from ksplice_pkg.vm.guest import run_script  # noqa: E402
from tests.lab.kernel import prepared_tree  # noqa: E402

LOAD_SCRIPT = """
set -e
insmod {ko}
klp_wait_transition {name} 120
klp_disable {name}
rmmod {name}
"""


@dataclass
class Outcome:
    file: str
    result: str  # loaded, load-failed, refused, run-pre, compile, failed
    detail: str
    seconds: float


def changed_sources(old: KernelArtifacts, new: KernelArtifacts) -> list[str]:
    """The .c files the old kernel compiles whose text the new upload changes."""
    units = kernel_units(prepared_tree(old))
    changed = []
    for src in sorted(set(units.values())):
        a, b = old.source_tree / src, new.source_tree / src
        if b.is_file() and a.read_bytes() != b.read_bytes():
            changed.append(src)
    return changed


def file_patch(old: KernelArtifacts, new: KernelArtifacts, src: str) -> bytes:
    proc = run(
        [
            "diff",
            "-u",
            "--label",
            f"a/{src}",
            "--label",
            f"b/{src}",
            old.source_tree / src,
            new.source_tree / src,
        ],
        check=False,
    )
    return f"Per-file change of {src} ({old.version} -> {new.version})\n\n".encode() + proc.stdout


def try_one(old: KernelArtifacts, new: KernelArtifacts, src: str, out: Path) -> Outcome:
    start = time.monotonic()

    def outcome(result: str, detail: str) -> Outcome:
        return Outcome(src, result, detail, round(time.monotonic() - start, 1))

    try:
        tarball = create(
            gather(
                create_options(
                    old.source_tree,
                    TargetSpec(
                        old.target_dir,
                        system_map=old.kallsyms,
                        binary=old.vmlinuz,
                        modules_dir=old.modules_dir,
                    ),
                    cache=cache_dir(),
                    patch=file_patch(old, new, src),
                    output_dir=out,
                )
            )
        )
    except RunPreMismatchError as e:
        return outcome("run-pre", e.message)
    except RefusedError as e:
        return outcome("refused", e.message)
    except CommandError as e:
        return outcome("compile" if "make" in e.message else "failed", e.message[-2000:])
    except KspliceError as e:
        return outcome("failed", e.message)
    with tempfile.TemporaryDirectory() as tmp:
        run(["tar", "-C", tmp, "-xzf", tarball])
        (ko,) = Path(tmp).glob("ksplice-*/*.ko")
        result = run_script(
            old.vmlinuz,
            old.modules_dir,
            LOAD_SCRIPT.format(ko=ko.name, name=ko.stem),
            files={ko.name: ko},
            timeout=600,
        )
    if result.status != 0 or result.crash_lines():
        crash = result.crash_lines()
        return outcome("load-failed", crash[0] if crash else result.console[-1500:])
    return outcome("loaded", tarball.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", help="the older release (uname -r)")
    parser.add_argument("--new", help="the newer release (uname -r)")
    parser.add_argument("--sample", type=int, default=20, help="how many changed files to try")
    parser.add_argument("--all", action="store_true", help="try every changed file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="where the updates and results.json go")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args()
    setup_logging(args.verbose)
    new_release = args.new or default_release()
    # The upload before it in the same series (6.1.0-55 before 6.1.0-56).
    series = new_release.split(".")[:2]
    offered = [r for r in available_releases("cloud-amd64") if r.split(".")[:2] == series]
    earlier = offered[: offered.index(new_release)] if new_release in offered else offered
    old_release = args.old or earlier[-1]
    out = args.out or Path(tempfile.mkdtemp(prefix="ksplice-corpus-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        old, new = fetch(cache_dir(), old_release), fetch(cache_dir(), new_release)
        if not old.kallsyms.is_file():
            capture_kallsyms(old)
        changed = changed_sources(old, new)
    except KspliceError as e:
        print(f"corpus: error: {e}", file=sys.stderr)
        return e.exit_code
    chosen = (
        changed
        if args.all
        else sorted(random.Random(args.seed).sample(changed, k=min(args.sample, len(changed))))
    )
    logger.info(
        "%s (%s) -> %s (%s): %d compiled .c files changed, trying %d",
        old.release, old.version, new.release, new.version, len(changed), len(chosen),
    )  # fmt: skip
    outcomes = []
    for n, src in enumerate(chosen, 1):
        o = try_one(old, new, src, out)
        logger.info("[%d/%d] %s: %s (%.0f s)", n, len(chosen), src, o.result, o.seconds)
        outcomes.append(o)
        (out / "results.json").write_text(json.dumps([asdict(x) for x in outcomes], indent=1))
    counts = Counter(o.result for o in outcomes)
    print(f"corpus: {old.version} -> {new.version}, {len(changed)} compiled .c files changed")
    print(f"tried {len(outcomes)} ({'all' if args.all else f'seeded sample, seed {args.seed}'}):")
    for result in ("loaded", "load-failed", "refused", "run-pre", "compile", "failed"):
        print(f"  {result:12} {counts.get(result, 0)}")
    for o in outcomes:
        if o.result != "loaded":
            print(f"  {o.file}: {o.result}: {o.detail.splitlines()[0] if o.detail else ''}")
    print(f"details: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
