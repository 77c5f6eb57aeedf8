"""How fast the runtime is on the real Debian kernel in the lab (figures, no assertions).

- apply latency: `ksplice-pkg apply` from the command's start to its return (the transition
  done), and the load-to-transition time the tool itself reports, over several applies;
- the time ksplice-pkg.service adds to boot with 10 installed updates: the unit's
  ActiveEnterTimestamp minus its InactiveExitTimestamp, and when sysinit.target (which the
  unit is ordered before) was reached, against a boot with `ksplice.reapply=0`. (systemd-analyze
  time and blame need a finished boot; the lab's script runs as part of it.)

The lab runs qemu without KVM (TCG): absolute figures are several times those of real hardware.
Run through scripts/benchmark-runtime.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

from ksplice_pkg.distro.debian import fetch
from ksplice_pkg.log import setup_logging
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.vm.capture import capture_kallsyms
from tests.lab.runtime_guest import PRELUDE, make_update, tool_files
from tests.lab.test_runtime import A_PATCH
from tests.lab.userland import image_for, new_overlay, run_userland

FIRST_BOOT = """
install_tool
for t in bench*.tar.gz; do ksplice-pkg install "$t" > /dev/null; done
ids=$(ls /usr/lib/ksplice-pkg/updates/$(uname -r))
for round in $ROUNDS; do
    for id in $ids; do
        start=$(date +%s%N)
        ksplice-pkg apply "$id" >> "$OUT/apply.log"
        echo "$id $(( ($(date +%s%N) - start) / 1000 ))" >> "$OUT/latency"
    done
    ksplice-pkg undo --all > /dev/null
done
wait_stable
"""

UNIT_TIMES = """
systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic \
    ksplice-pkg.service > "$OUT/unit"
systemctl show -p ActiveEnterTimestampMonotonic --value sysinit.target > "$OUT/sysinit"
ls /sys/kernel/livepatch | wc -l > "$OUT/loaded"
"""


def _ms(outputs: dict[str, bytes], name: str) -> str:
    return outputs.get(name, b"").decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    setup_logging(0)
    cache = cache_dir()
    artifacts = fetch(cache, None)
    if not artifacts.kallsyms.is_file():
        capture_kallsyms(artifacts)
    with tempfile.TemporaryDirectory(prefix="ksplice-bench-") as tmp:
        work = Path(tmp)
        files = tool_files()
        for i in range(args.updates):
            update = make_update(
                artifacts, artifacts.kallsyms, A_PATCH, work / f"u{i}", f"bench{i}"
            )
            files[f"bench{i}.tar.gz"] = update.tarball
        overlay = new_overlay(image_for(artifacts, cache), work / "disk.qcow2")
        rounds = " ".join(str(r) for r in range(args.rounds))
        first = run_userland(
            artifacts,
            cache,
            PRELUDE + f"ROUNDS='{rounds}'\n" + FIRST_BOOT,
            files=files,
            overlay=overlay,
        )
        assert first.status == 0, first.console[-3000:]
        boot = run_userland(artifacts, cache, PRELUDE + UNIT_TIMES, overlay=overlay)
        off = run_userland(
            artifacts, cache, PRELUDE + UNIT_TIMES, overlay=overlay, append="ksplice.reapply=0"
        )
    latencies = [int(ln.split()[1]) / 1e6 for ln in _ms(first.outputs, "latency").splitlines()]
    tool = [float(x) for x in re.findall(r" in ([0-9.]+) s", _ms(first.outputs, "apply.log"))]
    print(f"lab: {artifacts.release}, qemu TCG (no KVM), 2 vCPUs")
    print(
        f"apply latency, command start to transition done ({len(latencies)} applies, the n-th"
        f" stacking on n-1): median {statistics.median(latencies):.2f} s, "
        f"min {min(latencies):.2f} s, max {max(latencies):.2f} s"
    )
    print(
        f"  of which insmod to transition done (as the tool reports it): median "
        f"{statistics.median(tool):.2f} s, min {min(tool):.2f} s, max {max(tool):.2f} s"
    )
    unit = dict(ln.split("=", 1) for ln in _ms(boot.outputs, "unit").splitlines() if "=" in ln)
    seconds = (
        int(unit["ActiveEnterTimestampMonotonic"]) - int(unit["InactiveExitTimestampMonotonic"])
    ) / 1e6
    print(
        f"ksplice-pkg.service with {args.updates} installed updates "
        f"({_ms(boot.outputs, 'loaded')} loaded): {seconds:.2f} s"
    )
    print(
        f"sysinit.target reached {int(_ms(boot.outputs, 'sysinit')) / 1e6:.2f} s after the"
        f" kernel started; with ksplice.reapply=0: {int(_ms(off.outputs, 'sysinit')) / 1e6:.2f} s"
    )


if __name__ == "__main__":
    main()
