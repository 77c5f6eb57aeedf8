"""What distros ship, unpacked through ksplice_pkg.unpack: tarballs, .debs made by dpkg-deb
(gzip, xz and zstd data), RPMs made by rpmbuild (hard links, device nodes, zstd payloads), each
hostile one refused with nothing written beside the unpack directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.distro import srcpkg
from ksplice_pkg.distro.archive import unpack_deb, unpack_rpm, unpack_tar
from ksplice_pkg.run import run
from ksplice_pkg.unpack import ArchiveError
from tests.unit.archives import (
    Q_CHAIN,
    Q_CHAIN_LATE,
    Box,
    Entry,
    cve_2025_4517,
    file,
    symlink,
    tar_bytes,
    write_tar,
)
from tests.unit.distro import fixtures

# Names that dpkg-deb and rpmbuild sort the escaping link first by: it is made while z is
# missing, when z/z/z/../.. is still inside.
LATE_CHAIN = {"usr/a": "z/z/z/../../..", "usr/z": "."}


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path / "box")


@pytest.mark.parametrize(
    "entries",
    [Q_CHAIN, Q_CHAIN_LATE, Q_CHAIN_LATE[:2], cve_2025_4517()],
    ids=["q-chain", "q-chain-late", "q-chain-late-unused", "cve-2025-4517"],
)
@pytest.mark.parametrize("compression", ["gz", "xz"])
def test_hostile_tarball(tmp_path: Path, box: Box, entries: list[Entry], compression: str) -> None:
    tarball = write_tar(tmp_path / f"linux-source-6.1.tar.{compression}", entries, compression)
    with pytest.raises(ArchiveError) as e:
        unpack_tar(tarball, box.dest)
    assert str(tarball) in e.value.message
    box.untouched()


def test_zstd_tarball_goes_through_zstd(tmp_path: Path, box: Box) -> None:
    plain = tmp_path / "t.tar"
    plain.write_bytes(tar_bytes([file("a/b", b"hello"), symlink("a/l", "b")]))
    run(["zstd", "-q", plain, "-o", tmp_path / "t.tar.zst"])
    unpack_tar(tmp_path / "t.tar.zst", box.dest)
    assert (box.dest / "a" / "l").read_bytes() == b"hello"
    hostile = tmp_path / "h.tar"
    hostile.write_bytes(tar_bytes(Q_CHAIN_LATE))
    run(["zstd", "-q", hostile, "-o", tmp_path / "h.tar.zst"])
    with pytest.raises(ArchiveError, match="'x'"):
        unpack_tar(tmp_path / "h.tar.zst", box.dest / "h")
    box.untouched()


def test_truncated_source_tarball_through_the_cli(tmp_path: Path) -> None:
    tree = fixtures.kernel_tree(tmp_path / "t")
    whole = tmp_path / "whole.tar.xz"
    run(["tar", "-C", tree.parent, "-cJf", whole, tree.name])
    cut = tmp_path / "linux-source-6.1.tar.xz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    patch = tmp_path / "fix.patch"
    patch.write_text(fixtures.FIX)
    result = CliRunner().invoke(
        main,
        [
            "create",
            f"--patch={patch}",
            f"--cache-dir={tmp_path / 'c'}",
            "-o",
            str(tmp_path),
            str(cut),
        ],
    )
    assert result.exit_code == ArchiveError.exit_code, result.output
    assert "not a readable tarball" in result.output and str(cut) in result.output
    assert "Aborted" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("compression", ["gzip", "xz", "zstd"])
def test_deb_made_by_dpkg_deb(tmp_path: Path, box: Box, compression: str) -> None:
    deb = fixtures.deb(
        tmp_path,
        "linux-headers-x",
        {"usr/src/h/Makefile": b"all:\n"},
        symlinks={"usr/src/h/GNUmakefile": "Makefile", "lib/modules/r/build": "/usr/src/h"},
        compression=compression,
    )
    unpack_deb(deb, box.dest)
    assert (box.dest / "usr/src/h/GNUmakefile").read_bytes() == b"all:\n"
    assert not (box.dest / "lib/modules/r/build").is_symlink()  # absolute: left out
    box.untouched()


@pytest.mark.parametrize("compression", ["gzip", "xz", "zstd"])
def test_deb_with_an_escaping_chain(tmp_path: Path, box: Box, compression: str) -> None:
    deb = fixtures.deb(tmp_path, "linux-image-x", {}, symlinks=LATE_CHAIN, compression=compression)
    with pytest.raises(ArchiveError) as e:
        unpack_deb(deb, box.dest)
    assert "'usr/a'" in e.value.message and str(deb) in e.value.message
    box.untouched()


def test_deb_with_a_dotdot_member(tmp_path: Path, box: Box) -> None:
    data = fixtures.tar_with_member(tmp_path / "data.tar.gz", {"./../sentinel/evil": b"x"})
    deb = fixtures.deb_with_data(tmp_path, "linux-image-x", data)
    with pytest.raises(ArchiveError, match=r"'\./\.\./sentinel/evil'"):
        unpack_deb(deb, box.dest)
    box.untouched()


def test_rpm_with_an_escaping_chain_reaches_the_payload(tmp_path: Path, box: Box) -> None:
    rpm = fixtures.binary_rpm(tmp_path / "rpm", "kernel-core", {}, symlinks=LATE_CHAIN)
    with pytest.raises(ArchiveError) as e:
        unpack_rpm(rpm, box.dest)
    # Named by the payload reader: the member, and what a later member made of it.
    assert "member 'usr/a'" in e.value.message and str(rpm) in e.value.message
    assert "once 'usr/z' is a symlink" in e.value.message
    box.untouched()


def test_rpm_device_node_is_refused(tmp_path: Path, box: Box) -> None:
    rpm = fixtures.binary_rpm(tmp_path / "rpm", "kernel-core", {}, devices=["dev/evilnull"])
    with pytest.raises(ArchiveError, match="dev/evilnull' is a character device"):
        unpack_rpm(rpm, box.dest)
    box.untouched()


@pytest.mark.parametrize("payload", ["w9.gzdio", "w6.xzdio", "w19.zstdio"])
def test_rpm_hard_links_and_payload_compressions(tmp_path: Path, box: Box, payload: str) -> None:
    rpm = fixtures.binary_rpm(
        tmp_path / "rpm",
        "kernel-core",
        {"usr/lib/a": b"data", "usr/lib/exe": b"#!/bin/sh\n"},
        symlinks={"usr/lib/l": "a"},
        hardlinks={"usr/lib/b": "usr/lib/a"},
        payload_compression=payload,
    )
    unpack_rpm(rpm, box.dest)
    a, b = box.dest / "usr/lib/a", box.dest / "usr/lib/b"
    assert a.read_bytes() == b.read_bytes() == b"data"
    assert a.stat().st_ino == b.stat().st_ino
    assert (box.dest / "usr/lib/l").read_bytes() == b"data"
    box.untouched()


def test_source_rpm_payload_is_checked_flat_before_anything_is_written(
    tmp_path: Path, box: Box
) -> None:
    # A binary RPM stands in for a hostile source RPM: its first member is in a subdirectory.
    rpm = fixtures.binary_rpm(tmp_path / "rpm", "kernel", {"a/x": b"1", "z.spec": b"2"})
    with pytest.raises(ArchiveError, match="'a/x' is in a subdirectory"):
        srcpkg._prepare_srpm(rpm, box.dest)
    assert list((box.dest / "rpmbuild" / "SOURCES").iterdir()) == []
    box.untouched()
