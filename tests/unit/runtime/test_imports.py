"""The runtime runs on production machines at boot: it must load nothing of the build side.

What the runtime may load is what its package ships: the modules debian/ksplice-pkg-runtime.install
lists (rpm/ksplice-pkg.spec lists the same), so the rule cannot go stale as modules come and go.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.lab.runtime_guest import runtime_modules

THIRD_PARTY_BUILD_SIDE = ("elftools", "debian", "rpmfile")

PROBE = """
import json, sys
import ksplice_pkg.cli
from ksplice_pkg.runtime import apply, bundle, cli, guard, install, kernel, lock, order
from ksplice_pkg.runtime import reapply, store, sysfs, undo, view
print(json.dumps(sorted(sys.modules)))
"""


def test_runtime_and_cli_load_only_what_the_runtime_package_ships() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    assert "ksplice_pkg.runtime.apply" in loaded  # the probe really imported the runtime
    shipped = {"ksplice_pkg", "ksplice_pkg.runtime"} | {
        f"ksplice_pkg.{m}" for m in runtime_modules()
    }
    ours = [m for m in loaded if m.split(".")[0] == "ksplice_pkg"]
    outside = [m for m in ours if m not in shipped and not m.startswith("ksplice_pkg.runtime.")]
    assert outside == []
    third = [m for m in loaded if m.split(".")[0] in THIRD_PARTY_BUILD_SIDE]
    assert third == []


def test_the_rpm_runtime_package_ships_the_same_modules() -> None:
    from tests.lab.runtime_guest import ROOT

    spec = (ROOT / "rpm" / "ksplice-pkg.spec").read_text()
    section = spec.split("%files runtime", 1)[1].split("%files", 1)[0]
    for module in runtime_modules():
        assert f"ksplice_pkg/{module}.py" in section, module
