"""`ksplice-pkg package`: options in, one package path per update out."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from tests.unit.package.conftest import MakeUpdate
from tests.unit.package.readback import read_deb


def test_package_prints_one_path_per_update(make_update: MakeUpdate, tmp_path: Path) -> None:
    tarballs = [str(make_update("fix1")), str(make_update("fix2"))]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["package", "--format=deb", "-o", str(out), *tarballs],
        env={"SOURCE_DATE_EPOCH": "1700000000", "DEBEMAIL": "a@example.org", "DEBFULLNAME": "A"},
    )
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.output.splitlines()]
    assert [p.parent for p in paths] == [out, out]
    assert [read_deb(p).control["Package"].rsplit("-", 1)[1] for p in paths] == ["fix1", "fix2"]
    assert read_deb(paths[0]).control["Maintainer"] == "A <a@example.org>"


def test_a_bad_epoch_is_an_error(make_update: MakeUpdate, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["package", "--format=rpm", "-o", str(tmp_path), str(make_update("fix1"))],
        env={"SOURCE_DATE_EPOCH": "yesterday"},
    )
    assert result.exit_code == 1
    assert "SOURCE_DATE_EPOCH" in result.output


def test_build_side_command_without_the_build_side_says_what_to_install() -> None:
    """What ksplice-pkg-runtime alone gives: `create` names the package to install."""
    probe = (
        "import sys\n"
        "sys.modules['ksplice_pkg.create'] = None  # as if the module were not installed\n"
        "from ksplice_pkg.cli import main\n"
        "main(['create', '--patch', '/dev/null', '/'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert "install the ksplice-pkg package" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_package_stream_and_build_number(make_update: MakeUpdate, tmp_path: Path) -> None:
    tarball = str(make_update("one", replace=True))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["package", "--format=deb", "--stream", "--build-number", "2", "-o", str(out), tarball],
    )
    assert result.exit_code == 0, result.output
    (path,) = (Path(line) for line in result.output.splitlines())
    control = read_deb(path).control
    assert control["Package"].startswith("ksplice-updates-")
    assert control["Version"].endswith("-2")
    # A build number belongs to a stream.
    result = CliRunner().invoke(
        main, ["package", "--format=deb", "--build-number", "2", "-o", str(out), tarball]
    )
    assert result.exit_code == 2
    assert "--stream" in result.output


@pytest.mark.skipif(shutil.which("apt-ftparchive") is None, reason="apt-utils: scripts/setup")
def test_publish_unsigned(make_update: MakeUpdate, tmp_path: Path) -> None:
    (deb,) = (
        CliRunner()
        .invoke(main, ["package", "--format=deb", "-o", str(tmp_path), str(make_update("fix1"))])
        .output.split()
    )
    repo = tmp_path / "repo"
    result = CliRunner().invoke(main, ["publish", "--repo", str(repo), deb])
    assert result.exit_code == 0, result.output
    assert "not signed" in result.output
    assert (repo / "apt/dists/ksplice/Release").is_file()
    again = CliRunner().invoke(main, ["publish", "--repo", str(repo), deb])
    assert "(already published)" in again.output
