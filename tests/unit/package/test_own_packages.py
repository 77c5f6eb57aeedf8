"""The tool's own packages: debian/ through dpkg-buildpackage, rpm/ksplice-pkg.spec through
rpmbuild. Both split the tool the same way: ksplice-pkg-runtime holds everything the runtime
commands import and nothing of the build side; ksplice-pkg holds the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.package.own import ROOT, build_debs, build_rpms
from tests.unit.package.readback import read_deb, read_rpm

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-buildpackage") is None or shutil.which("rpmbuild") is None,
    reason="dpkg-dev, debhelper and rpm are installed by scripts/setup",
)

# What the runtime commands load, asked of Python itself (the module names, as files).
PROBE = """
import json, pkgutil, sys
import ksplice_pkg.cli, ksplice_pkg.runtime
for m in pkgutil.iter_modules(ksplice_pkg.runtime.__path__, "ksplice_pkg.runtime."):
    __import__(m.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "ksplice_pkg")))
"""


def _runtime_module_files() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT
    )
    files = set()
    for name in json.loads(proc.stdout):
        path = Path(*name.split("."))
        files.add(f"{path}/__init__.py" if (ROOT / path).is_dir() else f"{path}.py")
    return files


def _tree_module_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in (ROOT / "ksplice_pkg").rglob("*.py")}


def _python_files(paths: list[str]) -> set[str]:
    """ksplice_pkg/... for each installed ksplice_pkg .py file, wherever site-packages is."""
    out = set()
    for path in paths:
        if "/ksplice_pkg/" in path and path.endswith(".py"):
            out.add("ksplice_pkg/" + path.split("/ksplice_pkg/", 1)[1])
    return out


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = build_debs(tmp_path_factory.mktemp("deb"))
    return {read_deb(p).control["Package"]: p for p in built}


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = build_rpms(tmp_path_factory.mktemp("rpm"))
    return {read_rpm(p).tag("name"): p for p in built}


def test_debs_split_runtime_from_build_side(debs: dict[str, Path]) -> None:
    assert sorted(debs) == ["ksplice-pkg", "ksplice-pkg-runtime"]
    runtime = read_deb(debs["ksplice-pkg-runtime"])
    build = read_deb(debs["ksplice-pkg"])
    runtime_py = _python_files(list(runtime.files))
    build_py = _python_files(list(build.files))
    # `python3 -m ksplice_pkg` is the CLI too.
    assert runtime_py == _runtime_module_files() | {"ksplice_pkg/__main__.py"}
    assert runtime_py | build_py == _tree_module_files()
    assert not runtime_py & build_py
    for tool in ("ksplice-pkg", "ksplice-apply", "ksplice-undo", "ksplice-view"):
        assert f"usr/bin/{tool}" in runtime.files
    assert "usr/bin/ksplice-create" in build.files


def test_deb_relations(debs: dict[str, Path]) -> None:
    def depends(name: str) -> set[str]:
        fields = read_deb(debs[name]).control["Depends"].split(",")
        return {d.strip().split(" ")[0] for d in fields}

    runtime = depends("ksplice-pkg-runtime")
    assert {"python3-click", "kmod"} <= runtime
    assert not {"python3-pyelftools", "python3-debian", "gcc"} & runtime
    build = depends("ksplice-pkg")
    assert {"ksplice-pkg-runtime", "python3-pyelftools", "python3-debian", "gcc", "make"} <= build
    assert "ksplice-pkg-runtime (= 0.1.0)" in read_deb(debs["ksplice-pkg"]).control["Depends"]


def test_deb_runtime_enables_the_unit_and_ships_man_pages(debs: dict[str, Path]) -> None:
    runtime = read_deb(debs["ksplice-pkg-runtime"])
    assert "lib/systemd/system/ksplice-pkg.service" in runtime.files
    assert "deb-systemd-helper enable 'ksplice-pkg.service'" in runtime.scripts["postinst"]
    postinst = runtime.scripts["postinst"]
    # Installing the package must not run `reapply` on the live system (--no-start); it
    # starts the shutdown unit, whose stop at a clean shutdown marks this boot's loads stable.
    started = [ln.split()[2] for ln in postinst.splitlines() if "deb-systemd-invoke start" in ln]
    assert started == ["'ksplice-pkg-shutdown.service'"], postinst
    assert "deb-systemd-helper enable 'ksplice-pkg-shutdown.service'" in postinst
    # Nor does an upgrade stop or restart it: that would mark the boot stable.
    assert "restart" not in postinst and "ksplice-pkg-shutdown" not in runtime.scripts.get(
        "preinst", ""
    )
    pages = sorted(p.name for p in (ROOT / "man").glob("*.[1-8]"))
    shipped = sorted(Path(p).name.removesuffix(".gz") for p in runtime.files if "/man/" in p)
    assert shipped == pages


def test_lintian_reports_no_errors(debs: dict[str, Path]) -> None:
    proc = subprocess.run(["lintian", *debs.values()], capture_output=True, text=True, check=False)
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("E:")] == [], proc.stdout


def test_rpms_split_like_the_debs(rpms: dict[str, Path], debs: dict[str, Path]) -> None:
    assert sorted(rpms) == ["ksplice-pkg", "ksplice-pkg-runtime"]
    for name, path in rpms.items():
        in_rpm = _python_files(list(read_rpm(path).files))
        assert in_rpm == _python_files(list(read_deb(debs[name]).files)), name
    runtime = read_rpm(rpms["ksplice-pkg-runtime"])
    assert "/usr/lib/systemd/system/ksplice-pkg.service" in runtime.files
    assert "/usr/bin/ksplice-pkg" in runtime.files
    assert not any(r.startswith(("python3-pyelftools", "python3-debian")) for r in runtime.requires)
    assert "ksplice-pkg-runtime = 0.1.0-1" in read_rpm(rpms["ksplice-pkg"]).requires
    assert "systemctl --no-reload preset ksplice-pkg.service" in runtime.tag("postin")


def test_rpmlint_reports_no_errors(rpms: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            "rpmlint",
            "-r",
            ROOT / "rpm" / "ksplice-pkg.rpmlintrc",
            *rpms.values(),
            ROOT / "rpm" / "ksplice-pkg.spec",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert " 0 errors" in proc.stdout, proc.stdout
