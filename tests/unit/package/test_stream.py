"""The stream package of a kernel (`package --stream`) and the CVE ids packages carry: read
back with python-debian and rpmfile, versions compared by dpkg and rpm themselves, checked by
lintian and rpmlint."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from ksplice_pkg.package import PackageFormat, Stream, build_packages
from ksplice_pkg.package.naming import PackagingError
from tests.unit.package.conftest import EPOCH, MAINTAINER, RELEASE, MakeUpdate
from tests.unit.package.readback import read_deb, read_rpm

CVES = ["CVE-2024-1086", "CVE-2023-12345"]
STREAM = f"ksplice-updates-{RELEASE}"


def _build(
    tarballs: list[Path], fmt: PackageFormat, out: Path, build: int = 1, epoch: int | None = EPOCH
) -> list[Path]:
    return build_packages(
        tarballs, fmt, out, source_date_epoch=epoch, maintainer=MAINTAINER, stream=Stream(build)
    )


def _compare(fmt: PackageFormat, a: str, b: str) -> int:
    """-1, 0 or 1 as the package manager orders versions a and b."""
    if fmt is PackageFormat.DEB:
        lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False)
        eq = subprocess.run(["dpkg", "--compare-versions", a, "eq", b], check=False)
        return -1 if lt.returncode == 0 else 0 if eq.returncode == 0 else 1
    out = subprocess.run(
        ["rpm", "--eval", f"%{{lua: print(rpm.vercmp('{a}', '{b}'))}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def test_stream_deb(make_update: MakeUpdate, tmp_path: Path) -> None:
    v1 = make_update("one", replace=True, cves=CVES)
    v2 = make_update("two", replace=True, created="2026-12-01T00:00:00Z")
    (first,) = _build([v1], PackageFormat.DEB, tmp_path / "a")
    (second,) = _build([v2], PackageFormat.DEB, tmp_path / "b", build=3)
    assert first.name == f"{STREAM}_20261120.101112-1_amd64.deb"
    c = read_deb(first).control
    assert (c["Package"], c["Version"]) == (STREAM, "20261120.101112-1")
    # Stacked updates built on it find it by its update's name; every update of the kernel
    # older than it, the stream's own older versions included, gives way to it.
    assert c["Provides"] == (
        f"ksplice-hotpatch-{RELEASE} (= 20261120.101112-1), "
        f"ksplice-update-{RELEASE}-one (= 20261120.101112-1)"
    )
    assert c["Conflicts"] == c["Replaces"] == f"ksplice-hotpatch-{RELEASE} (<< 20261120.101112-1)"
    assert "Fixes: CVE-2024-1086, CVE-2023-12345." in c["Description"]
    info = read_deb(first)
    changelog = gzip.decompress(info.files[f"usr/share/doc/{STREAM}/changelog.Debian.gz"])
    assert changelog.decode().splitlines()[:5] == [
        f"{STREAM} (20261120.101112-1) unstable; urgency=medium",
        "",
        f"  * Live kernel updates for Linux {RELEASE}: update one.",
        "  * Fixes CVE-2024-1086.",
        "  * Fixes CVE-2023-12345.",
    ]
    assert "ksplice-pkg apply one" in info.scripts["postinst"]
    assert read_deb(second).control["Version"] == "20261201.000000-3"
    assert _compare(PackageFormat.DEB, "20261120.101112-1", "20261201.000000-3") < 0
    # A rebuild of the same update with the next build number is newer.
    assert _compare(PackageFormat.DEB, "20261120.101112-1", "20261120.101112-2") < 0


def test_stream_rpm(make_update: MakeUpdate, tmp_path: Path) -> None:
    v1 = make_update("one", replace=True, cves=CVES)
    (rpm,) = _build([v1], PackageFormat.RPM, tmp_path / "a", build=2)
    assert rpm.name == f"{STREAM}-20261120.101112-2.x86_64.rpm"
    info = read_rpm(rpm)
    assert (info.tag("name"), info.tag("version"), info.tag("release")) == (
        STREAM,
        "20261120.101112",
        "2",
    )
    assert f"ksplice-update-{RELEASE}-one = 20261120.101112-2" in info.provides
    assert info.conflicts == [f"ksplice-hotpatch-{RELEASE} < 20261120.101112-2"]
    changelog = subprocess.run(
        ["rpm", "-qp", "--changelog", rpm], capture_output=True, text=True, check=True
    ).stdout
    assert "- Fixes CVE-2024-1086\n- Fixes CVE-2023-12345\n" in changelog, changelog
    assert _compare(PackageFormat.RPM, "20261120.101112-2", "20261201.000000-1") < 0


@pytest.mark.parametrize("fmt", list(PackageFormat))
def test_only_cumulative_updates_make_a_stream(
    make_update: MakeUpdate, tmp_path: Path, fmt: PackageFormat
) -> None:
    with pytest.raises(PackagingError, match="not cumulative"):
        _build([make_update("plain")], fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_build_number_is_a_positive_count() -> None:
    for build in (0, -1, 10**9):
        with pytest.raises(PackagingError, match="build number"):
            Stream(build)


def test_per_update_packages_carry_cves_too(make_update: MakeUpdate, tmp_path: Path) -> None:
    tarball = make_update("fix1", cves=["CVE-2024-1086"])
    (deb,) = build_packages([tarball], PackageFormat.DEB, tmp_path / "d", source_date_epoch=EPOCH)
    doc = f"usr/share/doc/ksplice-update-{RELEASE}-fix1/changelog.gz"
    assert b"  * Fixes CVE-2024-1086.\n" in gzip.decompress(read_deb(deb).files[doc])
    (rpm,) = build_packages([tarball], PackageFormat.RPM, tmp_path / "r", source_date_epoch=EPOCH)
    changelog = subprocess.run(
        ["rpm", "-qp", "--changelog", rpm], capture_output=True, text=True, check=True
    ).stdout
    assert "- Fixes CVE-2024-1086" in changelog


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is installed by scripts/setup")
def test_lintian_and_rpmlint_accept_stream_packages(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    # The update's own creation time (no SOURCE_DATE_EPOCH): rpmlint refuses future dates.
    tarball = make_update("one", replace=True, cves=CVES)
    debs = _build([tarball], PackageFormat.DEB, tmp_path / "d", epoch=None)
    proc = subprocess.run(["lintian", *debs], capture_output=True, text=True, check=False)
    assert [line for line in proc.stdout.splitlines() if line.startswith("E:")] == [], proc.stdout
    if shutil.which("rpmlint") is None:
        return
    rpms = _build([tarball], PackageFormat.RPM, tmp_path / "r", epoch=None)
    rc = resources.files("ksplice_pkg.package") / "hotpatch.rpmlintrc"
    proc = subprocess.run(
        ["rpmlint", "-r", str(rc), *rpms], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert " 0 errors" in proc.stdout, proc.stdout
