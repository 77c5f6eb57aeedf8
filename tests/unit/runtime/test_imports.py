"""The runtime runs on production machines at boot: it must load nothing of the build side."""

from __future__ import annotations

import json
import subprocess
import sys

BUILD_SIDE = (
    "elftools",
    "debian",
    "rpmfile",
    "ksplice_pkg.create",
    "ksplice_pkg.build",
    "ksplice_pkg.kbuild",
    "ksplice_pkg.diff",
    "ksplice_pkg.source",
    "ksplice_pkg.update",
    "ksplice_pkg.target",
    "ksplice_pkg.elf",
    "ksplice_pkg.module",
    "ksplice_pkg.vm",
    "ksplice_pkg.distro",
    "ksplice_pkg.demo",
)

PROBE = """
import json, sys
import ksplice_pkg.cli
from ksplice_pkg.runtime import apply, bundle, cli, guard, install, kernel, lock, order
from ksplice_pkg.runtime import reapply, store, sysfs, undo, view
print(json.dumps(sorted(sys.modules)))
"""


def test_runtime_and_cli_load_nothing_of_the_build_side() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    assert "ksplice_pkg.runtime.apply" in loaded  # the probe really imported the runtime
    bad = [m for m in loaded if any(m == b or m.startswith(b + ".") for b in BUILD_SIDE)]
    assert bad == []
