"""The update tarball (ksplice_pkg.tarball): as GNU tar lists and extracts it, and as its readers
check it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from ksplice_pkg import tarball
from ksplice_pkg.errors import IntegrityError
from ksplice_pkg.manifest import Manifest, PatchedEntry
from ksplice_pkg.source.series import load_previous
from ksplice_pkg.tarball import read_tarball, write_tarball

MANIFEST = Manifest(
    id="fix1",
    description="a fix",
    kernel_release="6.1.0-56-cloud-amd64",
    target_build_id=None,
    module="ksplice_fix1.ko",
    module_name="ksplice_fix1",
    module_sha256="0" * 64,
    patched=[PatchedEntry("vmlinux", "a", 0)],
    verification="run-pre",
)
EPOCH = 1767225600  # 2026-01-01
# A mailed patch in Latin-1: not UTF-8, and its bytes must survive.
PATCH = b"From: M\xfcller\n--- a/x.c\n+++ b/x.c\n"


def test_tarball_holds_module_patch_description_manifest(tmp_path: Path) -> None:
    ko = tmp_path / "built.ko"
    ko.write_bytes(b"\x7fELF module")
    out = tmp_path / "out"
    tarball = write_tarball(out, MANIFEST, ko, PATCH, "a fix\n\n", EPOCH)
    assert tarball == out / "ksplice-fix1.tar.gz"
    listing = subprocess.run(
        ["tar", "-tzf", tarball], capture_output=True, text=True, check=True
    ).stdout.split()
    top = "ksplice-fix1"
    assert sorted(listing) == sorted(
        [
            f"{top}/",
            f"{top}/ksplice_fix1.ko",
            f"{top}/patch",
            f"{top}/description",
            f"{top}/manifest.json",
        ]
    )
    subprocess.run(["tar", "-xzf", tarball, "-C", tmp_path], check=True)
    assert (tmp_path / top / "ksplice_fix1.ko").read_bytes() == b"\x7fELF module"
    assert (tmp_path / top / "patch").read_bytes() == b"From: M\xfcller\n--- a/x.c\n+++ b/x.c\n"
    assert (tmp_path / top / "description").read_text() == "a fix\n"
    manifest = (tmp_path / top / "manifest.json").read_text()
    assert Manifest.from_json(manifest) == MANIFEST
    assert sorted(p.name for p in out.iterdir()) == ["ksplice-fix1.tar.gz"]


def test_failed_write_leaves_no_tarball(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        write_tarball(out, MANIFEST, tmp_path / "missing.ko", PATCH, "a fix", EPOCH)
    assert list(out.iterdir()) == []


def test_same_contents_and_time_give_the_same_bytes(tmp_path: Path) -> None:
    ko = tmp_path / "built.ko"
    ko.write_bytes(b"\x7fELF module")
    first = write_tarball(tmp_path / "1", MANIFEST, ko, PATCH, "a fix", EPOCH).read_bytes()
    # Another second, another directory: neither may show in the bytes.
    again = write_tarball(tmp_path / "2", MANIFEST, ko, PATCH, "a fix", EPOCH).read_bytes()
    assert first == again
    later = write_tarball(tmp_path / "3", MANIFEST, ko, PATCH, "a fix", EPOCH + 1).read_bytes()
    assert later != first
    listing = subprocess.run(
        ["tar", "--full-time", "-tvzf", tmp_path / "1" / "ksplice-fix1.tar.gz"],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert listing.count("2026-01-01 00:00:00") == 5, listing


def _written(tmp_path: Path, module: bytes = b"\x7fELF module") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ko = tmp_path / "built.ko"
    ko.write_bytes(module)
    manifest = dataclasses.replace(MANIFEST, module_sha256=hashlib.sha256(module).hexdigest())
    return write_tarball(tmp_path / "out", manifest, ko, PATCH, "a fix", EPOCH)


def test_what_is_written_reads_back_checked(tmp_path: Path) -> None:
    update = read_tarball(_written(tmp_path))
    assert update.manifest.id == "fix1"
    assert update.module == b"\x7fELF module"
    assert update.files["patch"] == PATCH
    # --series reads earlier updates the same way.
    previous = load_previous(tmp_path / "out" / "ksplice-fix1.tar.gz", MANIFEST.kernel_release)
    assert previous.patch == PATCH


def test_a_member_larger_than_an_update_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tarball, "MAX_BYTES", 1 << 20)
    with pytest.raises(IntegrityError):
        read_tarball(_written(tmp_path, b"\x7fELF" + bytes(4 << 20)))


def test_the_runtime_reads_updates_on_debian_s_own_python(tmp_path: Path) -> None:
    """ksplice-pkg-runtime runs on /usr/bin/python3 (3.11.2 on Debian 12: no data_filter)."""
    python = Path("/usr/bin/python3")
    if not python.is_file():
        pytest.skip("no distro python3")
    good = _written(tmp_path / "good")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for var in ("PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    view = subprocess.run(
        [python, "-m", "ksplice_pkg", "view", "--json", "--file", good],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert view.returncode == 0, view.stderr
    assert json.loads(view.stdout)["id"] == "fix1"
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        link = tarfile.TarInfo("ksplice-fix1/q")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tar.addfile(link)
    refused = subprocess.run(
        [python, "-m", "ksplice_pkg", "view", "--file", evil],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode == IntegrityError.exit_code, refused.stderr
    assert "Traceback" not in refused.stderr
