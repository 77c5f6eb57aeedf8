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
    assert "undo" not in u["Service"].get("ExecStop", "")
    assert u["Unit"]["DefaultDependencies"] == "no"
    assert "local-fs.target" in u["Unit"]["After"].split()
    assert "network-pre.target" in u["Unit"]["Before"].split()
    assert "network-pre.target" in u["Unit"]["Wants"].split()
    assert u["Unit"]["ConditionKernelCommandLine"] == "!ksplice.reapply=0"
