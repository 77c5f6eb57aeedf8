"""Helpers of the runtime lab tests: the tool installed in the Debian guest, updates made by
the real `create` pipeline, and the shell the guest scripts share.

The guest gets the runtime's own Python files (only those: proving on the way that the runtime
needs nothing of the build side) and the systemd units, installed under /usr/local/lib with a
launcher at /usr/bin/ksplice-pkg, the path the units name. The packages will install the same.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

from ksplice_pkg.distro.debian import KernelArtifacts
from tests.lab.updates import Update, build_update

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "ksplice_pkg"


def runtime_modules() -> list[str]:
    """The top-level modules of ksplice_pkg that the runtime package ships (besides runtime/),
    as debian/ksplice-pkg-runtime.install lists them."""
    text = (ROOT / "debian" / "ksplice-pkg-runtime.install").read_text()
    return re.findall(r"dist-packages/ksplice_pkg/(\w+)\.py", text)


def tool_files() -> dict[str, Path]:
    files = {f"tool/ksplice_pkg/{m}.py": PACKAGE / f"{m}.py" for m in runtime_modules()}
    for source in sorted((PACKAGE / "runtime").glob("*.py")):
        files[f"tool/ksplice_pkg/runtime/{source.name}"] = source
    for unit in sorted((ROOT / "systemd").glob("*.service")):
        files[f"tool/systemd/{unit.name}"] = unit
    for page in sorted((ROOT / "man").glob("*.8")):
        files[f"tool/man/{page.name}"] = page
    return files


# Shell prelude of every runtime guest script (run in the lab's files directory).
# install_tool: the tool and its units; rc NAME CMD...: CMD's output and status into $OUT.
PRELUDE = r"""
launcher() {  # NAME MODULE FUNCTION: /usr/bin/NAME runs MODULE.FUNCTION()
    cat > "/usr/bin/$1" <<EOF
#!/bin/sh
PYTHONPATH=/usr/local/lib/ksplice-pkg exec python3 -c \\
    'import sys; sys.argv[0] = "$1"; from $2 import $3; $3()' "\$@"
EOF
    chmod 755 "/usr/bin/$1"
}
install_tool() {
    mkdir -p /usr/local/lib/ksplice-pkg
    cp -r tool/ksplice_pkg /usr/local/lib/ksplice-pkg/
    launcher ksplice-pkg ksplice_pkg.cli main
    launcher ksplice-apply ksplice_pkg.runtime.cli apply_main
    launcher ksplice-undo ksplice_pkg.runtime.cli undo_main
    launcher ksplice-view ksplice_pkg.runtime.cli view_main
    cp tool/systemd/*.service /etc/systemd/system/
    mkdir -p /usr/local/share/man/man8
    cp tool/man/*.8 /usr/local/share/man/man8/
    systemctl daemon-reload
    systemctl enable ksplice-pkg.service
    systemctl enable --now ksplice-pkg-shutdown.service
}
rc() {
    name=$1; shift
    "$@" > "$OUT/$name.out" 2>&1
    echo $? > "$OUT/$name.rc"
}
# wait_stable: until the crash-loop guard marked this boot stable (its window is 20 s).
wait_stable() {
    t=0
    until ksplice-pkg view --json | grep -q '"boot_stable": true'; do
        t=$((t + 1)); [ $t -lt 120 ] || { echo "never stable"; return 1; }
        sleep 1
    done
}
"""


def status(outputs: dict[str, bytes], name: str) -> int:
    return int(outputs[f"{name}.rc"].decode())


def output(outputs: dict[str, bytes], name: str) -> str:
    return outputs[f"{name}.out"].decode(errors="replace")


def view_json(outputs: dict[str, bytes], name: str) -> dict[str, object]:
    data = json.loads(output(outputs, name))
    assert isinstance(data, dict)
    return data


def states(view: dict[str, object]) -> dict[str, str]:
    updates = view["updates"]
    assert isinstance(updates, list)
    return {u["id"]: u["state"] for u in updates}


def reasons(view: dict[str, object]) -> dict[str, str]:
    updates = view["updates"]
    assert isinstance(updates, list)
    return {u["id"]: u["reason"] for u in updates}


def update_dir(update: Update) -> Path:
    return update.ko.parent


def tar_dir(directory: Path, tarball: Path) -> Path:
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return tarball


def rewritten(update: Update, out: Path, **changes: object) -> Path:
    """A copy of a real update's ksplice-<id>/ directory with manifest fields changed (the
    module and its sha256 stay the real ones)."""
    target = out / update_dir(update).name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(update_dir(update), target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(changes)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target


def make_update(
    artifacts: KernelArtifacts, kallsyms: Path, patch: str, out: Path, update_id: str
) -> Update:
    out.mkdir(parents=True, exist_ok=True)
    return build_update(artifacts, kallsyms, patch, out, update_id)
