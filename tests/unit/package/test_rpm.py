"""Hotpatch .rpm packages, read back with rpmfile and checked with rpm and rpmlint."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from ksplice_pkg.package import PackageFormat
from tests.unit.package.conftest import EPOCH, RELEASE, MakeUpdate, build
from tests.unit.package.readback import read_rpm

UPDATES = f"/usr/lib/ksplice-pkg/updates/{RELEASE}"


def _build(tarballs: list[Path], out: Path, epoch: int | None = EPOCH) -> list[Path]:
    return build(tarballs, PackageFormat.RPM, out, epoch)


def test_package_of_a_single_update(make_update: MakeUpdate, tmp_path: Path) -> None:
    (rpm,) = _build([make_update("fix1")], tmp_path / "out")
    assert rpm.name == f"ksplice-update-{RELEASE}-fix1-20261120.101112-1.x86_64.rpm"
    info = read_rpm(rpm)
    assert info.tag("name") == f"ksplice-update-{RELEASE}-fix1"
    assert (info.tag("version"), info.tag("release"), info.tag("arch")) == (
        "20261120.101112",
        "1",
        "x86_64",
    )
    assert sorted(r for r in info.requires if r != "/bin/sh") == [
        f"kernel-uname-r({RELEASE})",
        "ksplice-pkg-runtime >= 0.1.0",
    ]
    assert f"ksplice-hotpatch-{RELEASE} = 20261120.101112" in info.provides
    assert info.conflicts == [] and info.obsoletes == []
    assert sorted(info.files) == [
        f"{UPDATES}/fix1/{name}"
        for name in ("description", "ksplice_fix1.ko", "manifest.json", "patch")
    ]
    assert json.loads(info.files[f"{UPDATES}/fix1/manifest.json"])["id"] == "fix1"
    assert "ksplice-pkg apply fix1" in info.tag("postin")
    assert "ksplice-pkg undo fix1" in info.tag("preun")
    # rpm's own reading of the file list: directories owned, modes fixed, owners root.
    listing = subprocess.run(
        ["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]", rpm],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert f"drwxr-xr-x root {UPDATES}" in listing
    assert f"-rw-r--r-- root {UPDATES}/fix1/ksplice_fix1.ko" in listing


def test_stacked_and_cumulative_relations(make_update: MakeUpdate, tmp_path: Path) -> None:
    base = make_update("base")
    stacked = make_update("top", depends_on=["base"], created="2026-11-21T00:00:00Z")
    cumulative = make_update("cumul", replace=True, created="2026-11-22T08:00:00Z")
    _, top_rpm, cumul_rpm = _build([base, stacked, cumulative], tmp_path / "out")
    assert f"ksplice-update-{RELEASE}-base" in read_rpm(top_rpm).requires
    cumul = read_rpm(cumul_rpm)
    assert cumul.conflicts == [f"ksplice-hotpatch-{RELEASE} < 20261122.080000"]
    # Both older ones packaged in the same run are obsoleted by name.
    assert cumul.obsoletes == [
        f"ksplice-update-{RELEASE}-base < 20261122.080000",
        f"ksplice-update-{RELEASE}-top < 20261122.080000",
    ]


def test_rpm_swaps_an_obsoleted_update_in_one_transaction(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    """rpm itself (a private database, no scripts, no dependencies) replaces the old package
    when the cumulative one is installed."""
    old, cumul = _build(
        [make_update("old1"), make_update("cumul", replace=True, created="2026-12-01T00:00:00Z")],
        tmp_path / "out",
    )
    db = tmp_path / "db"
    db.mkdir()
    rpm = ["rpm", "--dbpath", str(db), "--justdb", "--nodeps", "--noscripts"]
    subprocess.run([*rpm, "-i", old], check=True, capture_output=True)
    subprocess.run([*rpm, "-U", cumul], check=True, capture_output=True)
    installed = subprocess.run(
        ["rpm", "--dbpath", str(db), "-qa", "--qf", "%{NAME}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert installed == [f"ksplice-update-{RELEASE}-cumul"]


@pytest.mark.skipif(shutil.which("rpmlint") is None, reason="rpmlint is installed by scripts/setup")
def test_rpmlint_reports_no_errors(make_update: MakeUpdate, tmp_path: Path) -> None:
    # The updates' own creation time (no SOURCE_DATE_EPOCH): rpmlint refuses future dates.
    rpms = _build(
        [make_update("fix1"), make_update("cumul", replace=True, depends_on=["fix1"])],
        tmp_path / "out",
        epoch=None,
    )
    rc = resources.files("ksplice_pkg.package") / "hotpatch.rpmlintrc"
    proc = subprocess.run(
        ["rpmlint", "-r", str(rc), *rpms], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    errors = [line for line in proc.stdout.splitlines() if ": E: " in line]
    assert errors == [], proc.stdout
    assert " 0 errors" in proc.stdout, proc.stdout
