"""Reading update tarballs for packaging: what create writes is accepted, anything unsafe or
extra is refused, and a package ships exactly the update's files (the checks themselves are the
format's, ksplice_pkg.tarball, shared with the runtime)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ksplice_pkg.errors import IntegrityError as UpdateTarballError
from ksplice_pkg.manifest import ManifestError
from ksplice_pkg.package.contents import read_update
from tests.unit.package.conftest import MakeUpdate


def test_reads_manifest_and_files_with_normalised_modes(make_update: MakeUpdate) -> None:
    update = read_update(make_update("fix1"))
    assert update.manifest.id == "fix1"
    assert [f.path for f in update.files] == [
        "description",
        "ksplice_fix1.ko",
        "manifest.json",
        "patch",
    ]
    assert {f.mode for f in update.files} == {0o644}
    assert update.module.startswith(b"\x7fELF")


def _with_extra(tarball: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    out = tarball.with_name("evil.tar.gz")
    with tarfile.open(tarball) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info.size = len(data)
        dst.addfile(info, io.BytesIO(data) if data else None)
    return out


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("ksplice-fix1/../../etc/passwd", tarfile.REGTYPE, "escapes|\\.\\."),
        ("/etc/cron.d/x", tarfile.REGTYPE, "escapes|absolute"),
        ("other/x", tarfile.REGTYPE, "expected the one directory ksplice-<id>/"),
        ("ksplice-fix1/link", tarfile.SYMTYPE, "no place in an update"),
        ("ksplice-fix1/dev", tarfile.CHRTYPE, "device|not a"),
        ("ksplice-fix1/%(touch x)", tarfile.REGTYPE, "files an update does not have"),
        ("ksplice-fix1/extra", tarfile.REGTYPE, "files an update does not have"),
        ("ksplice-fix1/sub/patch", tarfile.REGTYPE, "no place in an update"),
        ("ksplice-fix1/patch", tarfile.REGTYPE, "there twice"),
    ],
)
def test_refuses_unsafe_members(
    make_update: MakeUpdate, name: str, kind: bytes, message: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/shadow"
    data = b"x" if kind == tarfile.REGTYPE else b""
    with pytest.raises(UpdateTarballError, match=message):
        read_update(_with_extra(make_update("fix1"), info, data))


def test_refuses_a_module_that_does_not_match_the_manifest(make_update: MakeUpdate) -> None:
    with pytest.raises(UpdateTarballError, match="sha256"):
        read_update(make_update("fix1", module_sha256="0" * 64))


def test_refuses_a_top_directory_named_after_another_id(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    good = make_update("fix1")
    renamed = tmp_path / "renamed.tar.gz"
    with tarfile.open(good) as src, tarfile.open(renamed, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            member.name = member.name.replace("ksplice-fix1", "ksplice-other", 1)
            dst.addfile(member, data)
    with pytest.raises(UpdateTarballError, match="expected the one directory ksplice-fix1/"):
        read_update(renamed)


def test_a_malformed_manifest_is_named(make_update: MakeUpdate) -> None:
    with pytest.raises(ManifestError, match="module name"):
        read_update(make_update("fix1", module_name="ksplice_other"))


def test_not_a_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "ksplice-x.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(UpdateTarballError, match="not a readable tarball"):
        read_update(junk)
