"""Hotpatch .deb packages, read back with python-debian and checked with dpkg and lintian."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.package import PackageFormat
from tests.unit.package.conftest import EPOCH, MAINTAINER, RELEASE, MakeUpdate, build
from tests.unit.package.readback import read_deb

UPDATES = f"usr/lib/ksplice-pkg/updates/{RELEASE}"


def _build(tarballs: list[Path], out: Path, epoch: int | None = EPOCH) -> list[Path]:
    return build(tarballs, PackageFormat.DEB, out, epoch)


def test_package_of_a_single_update(make_update: MakeUpdate, tmp_path: Path) -> None:
    tarball = make_update("fix1")
    (deb,) = _build([tarball], tmp_path / "out")
    assert deb.name == f"ksplice-update-{RELEASE}-fix1_20261120.101112_amd64.deb"
    info = read_deb(deb)
    c = info.control
    assert c["Package"] == f"ksplice-update-{RELEASE}-fix1"
    assert c["Version"] == "20261120.101112"
    assert c["Architecture"] == "amd64"
    assert c["Depends"] == (f"ksplice-pkg-runtime (>= 0.1.0), linux-image-{RELEASE}")
    assert c["Provides"] == f"ksplice-hotpatch-{RELEASE} (= 20261120.101112)"
    assert "Conflicts" not in c and "Replaces" not in c
    assert c["Description"].startswith(f"Live kernel update fix1 for Linux {RELEASE}\n")
    assert "Fix /proc/cmdline (fix1)" in c["Description"]
    payload = {p: d for p, d in info.files.items() if p.startswith(UPDATES)}
    assert sorted(payload) == [
        f"{UPDATES}/fix1/{name}"
        for name in ("description", "ksplice_fix1.ko", "manifest.json", "patch")
    ]
    assert json.loads(payload[f"{UPDATES}/fix1/manifest.json"])["id"] == "fix1"
    doc = f"usr/share/doc/ksplice-update-{RELEASE}-fix1"
    assert b"GPL-2" in info.files[f"{doc}/copyright"]
    assert MAINTAINER.encode() in gzip.decompress(info.files[f"{doc}/changelog.gz"])
    assert set(info.scripts) == {"postinst", "prerm"}
    assert "ksplice-pkg apply fix1" in info.scripts["postinst"]
    assert "ksplice-pkg undo fix1" in info.scripts["prerm"]
    # Owners are root, whatever the tarball said (uid 1234) or who built the package.
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True
    ).stdout
    tar = subprocess.run(["tar", "-tvf", "-"], input=listing, capture_output=True, check=True)
    assert {line.split()[1] for line in tar.stdout.decode().splitlines()} == {"root/root"}


def test_stacked_and_cumulative_relations(make_update: MakeUpdate, tmp_path: Path) -> None:
    base = make_update("base")
    stacked = make_update("top", depends_on=["base"], created="2026-11-21T00:00:00Z")
    cumulative = make_update("cumul", replace=True, created="2026-11-22T08:00:00Z")
    _, top_deb, cumul_deb = _build([base, stacked, cumulative], tmp_path / "out")
    top = read_deb(top_deb).control
    assert f"ksplice-update-{RELEASE}-base" in [d.strip() for d in top["Depends"].split(",")]
    cumul = read_deb(cumul_deb).control
    assert cumul["Conflicts"] == f"ksplice-hotpatch-{RELEASE} (<< 20261122.080000)"
    assert cumul["Replaces"] == cumul["Conflicts"]


def test_dpkg_reads_the_relations_as_the_scheme_says(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    """dpkg's own parser agrees: the cumulative package conflicts with an older provider of the
    per-release name and not with a newer one."""
    (older,) = _build([make_update("old1", created="2026-01-01T00:00:00Z")], tmp_path / "a")
    (cumul,) = _build([make_update("cumul", replace=True)], tmp_path / "b")
    (newer,) = _build([make_update("new1", created="2027-01-01T00:00:00Z")], tmp_path / "c")
    conflicts = read_deb(cumul).control["Conflicts"]
    assert conflicts.endswith("(<< 20261120.101112)")

    def satisfies(deb: Path) -> bool:
        version = read_deb(deb).control["Provides"].split("= ")[1].rstrip(")")
        bound = conflicts.split("<< ")[1].rstrip(")")
        return (
            subprocess.run(
                ["dpkg", "--compare-versions", version, "lt", bound], check=False
            ).returncode
            == 0
        )

    assert satisfies(older)
    assert not satisfies(newer)


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is installed by scripts/setup")
def test_lintian_reports_no_errors(make_update: MakeUpdate, tmp_path: Path) -> None:
    debs = _build(
        [make_update("fix1"), make_update("cumul", replace=True, depends_on=["fix1"])],
        tmp_path / "out",
    )
    proc = subprocess.run(["lintian", *debs], capture_output=True, text=True, check=False)
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], proc.stdout


# The maintainer scripts, run with a fake `uname` and `ksplice-pkg` first in PATH.


def _run_script(
    tmp_path: Path, text: str, args: list[str], running: str, apply_status: int = 0
) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    (bin_dir / "uname").write_text(f"#!/bin/sh\necho {running}\n")
    (bin_dir / "ksplice-pkg").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\necho "runtime says no" >&2\nexit {apply_status}\n'
    )
    for tool in ("uname", "ksplice-pkg"):
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "script"
    script.write_text(text)
    proc = subprocess.run(
        ["sh", script, *args],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, calls.read_text().splitlines()


def test_postinst_applies_on_the_target_kernel_only(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    (deb,) = _build([make_update("fix1")], tmp_path / "out")
    postinst = read_deb(deb).scripts["postinst"]
    status, _, calls = _run_script(tmp_path, postinst, ["configure", ""], RELEASE)
    assert (status, calls) == (0, ["apply fix1"])
    status, output, calls = _run_script(tmp_path, postinst, ["configure", ""], "6.1.0-1-amd64")
    assert (status, calls) == (0, [])
    assert "applied when" in output


def test_postinst_never_fails_the_transaction(make_update: MakeUpdate, tmp_path: Path) -> None:
    (deb,) = _build([make_update("fix1")], tmp_path / "out")
    postinst = read_deb(deb).scripts["postinst"]
    status, output, calls = _run_script(
        tmp_path, postinst, ["configure", ""], RELEASE, apply_status=1
    )
    assert (status, calls) == (0, ["apply fix1"])
    assert "warning" in output and "next boot" in output


def test_prerm_keeps_the_update_live_when_upgraded(make_update: MakeUpdate, tmp_path: Path) -> None:
    # A removal defers the undo to the runtime's trigger: tests/lab/test_package_cumulative.py.
    (deb,) = _build([make_update("fix1")], tmp_path / "out")
    prerm = read_deb(deb).scripts["prerm"]
    for args in (
        ["upgrade", "20270101.000000"],
        ["deconfigure", "in-favour", "x", "1"],
    ):
        status, _, calls = _run_script(tmp_path, prerm, args, RELEASE)
        assert (status, calls) == (0, []), args
    # Not applied (no /sys/kernel/livepatch/ksplice_fix1 on this machine): nothing to undo.
    status, _, calls = _run_script(tmp_path, prerm, ["remove"], RELEASE)
    assert (status, calls) == (0, [])
