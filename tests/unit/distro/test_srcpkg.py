"""KERNEL_SOURCE as a distro source package, with stand-in packages made by the distro's tools:
patches applied, trees cached by content, and each bad input refused with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.distro.srcpkg import SourceKind, identify, prepare_source
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.run import run
from ksplice_pkg.unpack import ArchiveError
from tests.unit.distro import fixtures


def _no_partial(cache: Path) -> None:
    """Nothing half-written: no .partial directory and no cache entry (lock files aside)."""
    sources = cache / "sources"
    leftovers = [p for p in sources.iterdir() if p.is_dir()] if sources.is_dir() else []
    assert leftovers == [], leftovers


def test_dsc_is_unpacked_with_its_patches_and_cached(tmp_path: Path) -> None:
    dsc = fixtures.dsc(tmp_path / "pkg")
    source = identify(dsc)
    assert (source.kind, source.version, source.upstream) == (
        SourceKind.DSC,
        fixtures.DEB_VERSION,
        fixtures.VERSION,
    )
    cache = tmp_path / "cache"
    tree = prepare_source(source, cache)
    assert "return 42;" in (tree / "fs" / "a.c").read_text()  # debian/patches applied
    assert tree.is_relative_to(cache / "sources")
    # A second update of the same source starts from the same tree (same work dir).
    marker = tree / "marker"
    marker.write_text("kept")
    assert prepare_source(identify(dsc), cache) == tree
    assert marker.is_file()


def test_dsc_with_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    dsc = fixtures.dsc(tmp_path / "pkg")
    (debian_tar,) = dsc.parent.glob("*.debian.tar.*")
    debian_tar.unlink()
    with pytest.raises(KspliceError) as e:
        prepare_source(identify(dsc), tmp_path / "cache")
    assert debian_tar.name in e.value.message
    assert e.value.hint and "apt-get source" in e.value.hint
    _no_partial(tmp_path / "cache")


def test_dsc_with_a_wrong_checksum_is_refused_naming_the_file(tmp_path: Path) -> None:
    dsc = fixtures.dsc(tmp_path / "pkg")
    (orig,) = dsc.parent.glob("*.orig.tar.*")
    data = bytearray(orig.read_bytes())
    data[-1] ^= 0xFF
    orig.write_bytes(bytes(data))
    with pytest.raises(KspliceError) as e:
        prepare_source(identify(dsc), tmp_path / "cache")
    assert orig.name in e.value.message and "sha256" in e.value.message
    _no_partial(tmp_path / "cache")


def test_dsc_listing_a_size_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    dsc = fixtures.dsc(tmp_path / "pkg")
    (orig,) = dsc.parent.glob("*.orig.tar.*")
    text = dsc.read_text()
    size = str(orig.stat().st_size)
    dsc.write_text(text.replace(f" {size} {orig.name}", f" xyz {orig.name}"))
    assert dsc.read_text() != text
    with pytest.raises(KspliceError, match="'xyz', which is not a number"):
        prepare_source(identify(dsc), tmp_path / "cache")
    _no_partial(tmp_path / "cache")


def _gpg_key(home: Path, name: str) -> Path:
    home.mkdir(mode=0o700)
    gpg: list[str | Path] = [
        "gpg",
        "--batch",
        "--homedir",
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    run([*gpg, "--quick-gen-key", f"{name} <{name}@example.org>", "ed25519", "sign", "never"])
    keyring = home.parent / f"{name}.gpg"
    keyring.write_bytes(run([*gpg, "--export"]).stdout)
    return keyring


def test_dsc_signature_is_checked_against_the_keyring(tmp_path: Path) -> None:
    dsc = fixtures.dsc(tmp_path / "pkg")
    signer = _gpg_key(tmp_path / "signer", "signer")
    stranger = _gpg_key(tmp_path / "stranger", "stranger")
    signed = run(
        ["gpg", "--batch", "--homedir", tmp_path / "signer", "--clearsign", "-o", "-", dsc]
    ).stdout
    dsc.write_bytes(signed)
    cache = tmp_path / "cache"
    with pytest.raises(KspliceError) as e:
        prepare_source(identify(dsc), cache, keyring=stranger)
    assert dsc.name in e.value.message and str(stranger) in e.value.message
    _no_partial(cache)
    tree = prepare_source(identify(dsc), cache, keyring=signer)
    assert "return 42;" in (tree / "fs" / "a.c").read_text()


def test_source_rpm_is_prepared_by_its_spec(tmp_path: Path) -> None:
    srpm = fixtures.srpm(tmp_path / "rpm")
    source = identify(srpm)
    assert source.kind is SourceKind.SRPM and source.upstream == fixtures.VERSION
    tree = prepare_source(source, tmp_path / "cache")
    assert "return 42;" in (tree / "fs" / "a.c").read_text()  # %prep's Patch1 applied
    assert not (tree.parent / "rpmbuild").exists()  # only the tree is kept


def test_source_rpm_that_is_not_a_kernel_is_refused_naming_it(tmp_path: Path) -> None:
    srpm = fixtures.srpm(tmp_path / "rpm", name="hello")
    with pytest.raises(KspliceError) as e:
        identify(srpm)
    assert "'hello'" in e.value.message and "kernel" in e.value.message


def test_linux_source_deb_and_its_tarball(tmp_path: Path) -> None:
    tree = fixtures.kernel_tree(tmp_path / "src", "linux-source-6.1")
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    run(["tar", "-C", tree.parent, "-cJf", tarball, tree.name])
    deb = fixtures.deb(
        tmp_path, "linux-source-6.1", {"usr/src/linux-source-6.1.tar.xz": tarball.read_bytes()}
    )
    cache = tmp_path / "cache"
    from_deb = prepare_source(identify(deb), cache)
    from_tar = prepare_source(identify(tarball), cache)
    assert (from_deb / "fs" / "a.c").read_text() == fixtures.C_FILE
    assert (from_tar / "fs" / "a.c").read_text() == fixtures.C_FILE
    assert identify(deb).upstream == fixtures.VERSION


@pytest.mark.parametrize(
    "members",
    [
        {"../evil": b"x"},
        {"linux-source-6.1/../../evil": b"x"},
        {"/tmp/evil-absolute": b"x"},
    ],
)
def test_tarball_with_escaping_member_is_refused(tmp_path: Path, members: dict[str, bytes]) -> None:
    (tmp_path / "in").mkdir()
    tarball = fixtures.tar_with_member(
        tmp_path / "in" / "linux-source-6.1.tar.gz", {"linux-source-6.1/Makefile": b"", **members}
    )
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(ArchiveError) as e:
        prepare_source(identify(tarball), cache)
    assert next(iter(members)) in e.value.message and str(tarball) in e.value.message
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    _no_partial(cache)


def test_tarball_writing_through_a_symlink_is_refused(tmp_path: Path) -> None:
    tarball = fixtures.symlink_tarball(
        tmp_path / "linux-source-6.1.tar.gz",
        "linux-source-6.1/out",
        "../../..",
        "linux-source-6.1/out/evil",
    )
    with pytest.raises(ArchiveError) as e:
        prepare_source(identify(tarball), tmp_path / "c" / "cache")
    assert "linux-source-6.1/out" in e.value.message
    assert not (tmp_path / "evil").exists()


def test_deb_with_escaping_member_is_refused(tmp_path: Path) -> None:
    data = fixtures.tar_with_member(
        tmp_path / "data.tar.gz",
        {"./usr/src/linux-source-6.1.tar.xz": b"", "./../../../evil": b"x"},
    )
    deb = fixtures.deb_with_data(tmp_path, "linux-source-6.1", data)
    cache = tmp_path / "c" / "cache"
    with pytest.raises(ArchiveError) as e:
        prepare_source(identify(deb), cache)
    assert "../../../evil" in e.value.message and deb.name in e.value.message
    assert not (tmp_path / "evil").exists()
    _no_partial(cache)


def test_not_a_source_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(KspliceError) as e:
        identify(other)
    assert str(other) in e.value.message
