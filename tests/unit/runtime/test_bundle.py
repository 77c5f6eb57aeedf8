from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

import pytest

from ksplice_pkg.runtime.bundle import check_kernel, open_update
from ksplice_pkg.runtime.errors import IntegrityError, NotFoundError, WrongKernelError
from ksplice_pkg.runtime.kernel import build_id, parse_build_id
from ksplice_pkg.runtime.store import Store
from tests.unit.runtime.conftest import manifest, update_dir

MODULE = b"\x7fELF not really a module"


def good_tarball(tmp_path: Path) -> Path:
    d = update_dir(tmp_path / "src", manifest("abc", module_data=MODULE), MODULE)
    tarball = tmp_path / "ksplice-abc.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(d, arcname=d.name)
    return tarball


def test_tarball_opens_to_its_update(tmp_path: Path, store: Store) -> None:
    bundle = open_update(str(good_tarball(tmp_path)), store, "any")
    assert bundle.manifest.id == "abc"
    assert bundle.update.module == MODULE
    assert bundle.update.text("patch").startswith("--- a/x")


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        ok = tarfile.TarInfo("ksplice-abc/manifest.json")
        tar.addfile(ok, io.BytesIO(b""))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return tarball


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ksplice-abc/../../etc/passwd", tarfile.REGTYPE),
        ("/etc/passwd", tarfile.REGTYPE),
        ("ksplice-abc/link", tarfile.SYMTYPE),
        ("ksplice-abc/hard", tarfile.LNKTYPE),
        ("ksplice-abc/dev", tarfile.CHRTYPE),
        ("ksplice-abc/fifo", tarfile.FIFOTYPE),
        ("other/manifest.json", tarfile.REGTYPE),
    ],
)
def test_unsafe_tarball_members_are_refused(
    tmp_path: Path, store: Store, name: str, kind: bytes
) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    tarball = _tar_with(tmp_path, member)
    with pytest.raises(IntegrityError):
        open_update(str(tarball), store, "any")
    assert not (tmp_path / "etc").exists()


def test_module_that_differs_from_its_sha256(tmp_path: Path, store: Store) -> None:
    d = update_dir(tmp_path, manifest("abc", module_data=MODULE), MODULE + b"!")
    with pytest.raises(IntegrityError, match="sha256"):
        open_update(str(d), store, "any")


def test_unknown_reference_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        open_update("nosuchid", store, "6.1.0")
    with pytest.raises(NotFoundError):
        open_update("no/such/file.tar.gz", store, "6.1.0")


def test_other_release_and_other_build_are_refused() -> None:
    m = manifest("abc", release="6.1.0-1-amd64", build_id="aa" * 20)
    check_kernel(m, "6.1.0-1-amd64", "aa" * 20)
    check_kernel(m, "6.1.0-1-amd64", None)  # a kernel without notes: the release decides
    with pytest.raises(WrongKernelError):
        check_kernel(m, "6.1.0-2-amd64", "aa" * 20)
    with pytest.raises(WrongKernelError):
        check_kernel(m, "6.1.0-1-amd64", "bb" * 20)


def _note(name: bytes, note_type: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), note_type) + pad(name) + pad(desc)


def test_build_id_is_found_among_other_notes() -> None:
    build_id = bytes(range(20))
    notes = _note(b"Xen\0", 1, b"\1\2\3") + _note(b"GNU\0", 3, build_id)
    assert parse_build_id(notes) == build_id.hex()
    assert parse_build_id(_note(b"Linux\0", 3, b"abc")) is None


def test_build_id_of_the_running_kernel_matches_its_notes() -> None:
    notes = Path("/sys/kernel/notes")
    if not notes.is_file():
        pytest.skip("this kernel has no /sys/kernel/notes")
    found = build_id()
    assert found is not None and len(found) == 40
    assert bytes.fromhex(found) in notes.read_bytes()
