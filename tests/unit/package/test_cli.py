"""`ksplice-pkg package`: options in, one package path per update out."""

from __future__ import annotations

from pathlib import Path

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
