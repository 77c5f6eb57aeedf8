"""The systemd units: what the lab cannot check (no man-db in its image) and the contract the
packages build on."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / name)
    return parser


def test_documentation_pages_exist() -> None:
    for path in sorted((ROOT / "systemd").glob("*.service")):
        pages = re.findall(r"man:([\w.-]+)\((\d)\)", path.read_text())
        assert pages, path.name
        for page, section in pages:
            assert (ROOT / "man" / f"{page}.{section}").is_file(), (path.name, page)


def test_boot_unit_is_early_optional_and_never_unloads() -> None:
    u = unit("ksplice-pkg.service")
    assert u["Service"]["Type"] == "oneshot"
    assert "reapply" in u["Service"]["ExecStart"]
    assert "ExecStop" not in u["Service"]  # a clean shutdown is the shutdown unit's to tell
    assert u["Unit"]["DefaultDependencies"] == "no"
    assert "local-fs.target" in u["Unit"]["After"].split()
    assert "network-pre.target" in u["Unit"]["Before"].split()
    assert "network-pre.target" in u["Unit"]["Wants"].split()
    assert u["Unit"]["ConditionKernelCommandLine"] == "!ksplice.reapply=0"


def test_shutdown_unit_marks_a_clean_shutdown_in_every_boot() -> None:
    u = unit("ksplice-pkg-shutdown.service")
    assert u["Service"]["Type"] == "oneshot" and u["Service"]["RemainAfterExit"] == "yes"
    assert u["Service"]["ExecStop"].endswith("ksplice-pkg confirm --shutdown")
    # Active in every boot, from before the first load to after every ordinary service stopped.
    assert u["Install"]["WantedBy"] == "sysinit.target"
    assert u["Unit"]["DefaultDependencies"] == "no"
    assert "local-fs.target" in u["Unit"]["After"].split()
    assert "/var/lib/ksplice-pkg" in u["Unit"]["RequiresMountsFor"].split()
    assert {"sysinit.target", "shutdown.target"} <= set(u["Unit"]["Before"].split())
    assert u["Unit"]["Conflicts"] == "shutdown.target"
    assert "ConditionKernelCommandLine" not in u["Unit"]  # ksplice.reapply=0 boots too
    boot = unit("ksplice-pkg.service")
    assert "ksplice-pkg-shutdown.service" in boot["Unit"]["After"].split()
    assert "ksplice-pkg-shutdown.service" in boot["Unit"]["Wants"].split()


def test_packages_ship_enable_and_start_the_shutdown_unit() -> None:
    assert (
        "ksplice-pkg-shutdown.service" in (ROOT / "debian/ksplice-pkg-runtime.install").read_text()
    )
    rules = (ROOT / "debian/rules").read_text()
    started = [ln for ln in rules.splitlines() if "ksplice-pkg-shutdown.service" in ln]
    assert started and all("--no-start" not in ln for ln in started)
    spec = (ROOT / "rpm/ksplice-pkg.spec").read_text()
    assert "systemctl start ksplice-pkg-shutdown.service" in spec
    assert "%{_unitdir}/ksplice-pkg-shutdown.service" in spec
