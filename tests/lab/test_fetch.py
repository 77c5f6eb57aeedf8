"""`ksplice-pkg fetch` against Debian's real archive."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import KernelArtifacts, fetch
from ksplice_pkg.run import run_text


def _deb_state(artifacts: KernelArtifacts) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (artifacts.root / "debs").iterdir()}


def test_second_fetch_downloads_nothing(artifacts: KernelArtifacts, cache: Path) -> None:
    before = _deb_state(artifacts)
    result = CliRunner().invoke(main, ["-v", "fetch", artifacts.release])
    assert result.exit_code == 0, result.output
    assert "apt-get download" not in result.output
    assert result.output.splitlines()[-1] == str(artifacts.root)
    assert _deb_state(artifacts) == before


def test_interrupted_layout_reuses_verified_debs(
    artifacts: KernelArtifacts, tmp_path: Path
) -> None:
    """A cache whose layout was never finished keeps its .debs: apt's checksums vouch for them."""
    root = tmp_path / "kernels" / artifacts.release
    root.mkdir(parents=True)
    shutil.copytree(artifacts.root / "debs", root / "debs")
    before = {p.name: p.stat().st_mtime_ns for p in (root / "debs").iterdir()}
    again = fetch(tmp_path, artifacts.release)
    assert {p.name: p.stat().st_mtime_ns for p in (root / "debs").iterdir()} == before
    assert again.vmlinuz.read_bytes() == artifacts.vmlinuz.read_bytes()
    assert (again.source_tree / "Makefile").is_file()
    assert (again.modules_dir / "modules.dep").is_file()


def test_corrupt_deb_is_downloaded_again(artifacts: KernelArtifacts, tmp_path: Path) -> None:
    root = tmp_path / "kernels" / artifacts.release
    shutil.copytree(artifacts.root / "debs", root / "debs")
    (headers,) = (root / "debs").glob("linux-headers-*.deb")
    headers.write_bytes(b"not a deb")
    again = fetch(tmp_path, artifacts.release)
    assert headers.read_bytes() != b"not a deb"
    assert again.symvers.read_bytes() == artifacts.symvers.read_bytes()


def test_unknown_release_is_one_clear_line(tmp_path: Path) -> None:
    env = {"KSPLICE_PKG_CACHE": str(tmp_path)}
    result = CliRunner(env=env).invoke(main, ["fetch", "6.1.0-9999-cloud-amd64"])
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert "6.1.0-9999-cloud-amd64" in first
    assert "linux-image-6.1.0-9999-cloud-amd64" in first
    # It names releases apt does offer, as apt-cache itself lists them.
    offered = [
        name.removeprefix("linux-image-")
        for name in run_text(["apt-cache", "pkgnames", "linux-image-"]).split()
        if name.endswith("-cloud-amd64") and name[len("linux-image-")].isdigit()
    ]
    assert offered and any(release in first for release in offered)
    # Nothing is downloaded or laid out for a missing release: the cache stays empty.
    assert os.listdir(tmp_path) == []


def test_malformed_release_is_refused(tmp_path: Path) -> None:
    env = {"KSPLICE_PKG_CACHE": str(tmp_path)}
    result = CliRunner(env=env).invoke(main, ["fetch", "latest"])
    assert result.exit_code == 1
    assert "'latest'" in result.output.splitlines()[0]
    assert os.listdir(tmp_path) == []
