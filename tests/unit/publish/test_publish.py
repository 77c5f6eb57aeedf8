"""publish: the apt and dnf repositories made by apt-ftparchive and createrepo_c, checked with
gpgv, rpm and the indexes' own content."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ksplice_pkg.package import PackageFormat, Stream, build_packages
from ksplice_pkg.publish import PublishError, Signer, publish
from ksplice_pkg.publish.signing import SigningError
from tests.unit.package.conftest import EPOCH, MAINTAINER, RELEASE, MakeUpdate

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("apt-ftparchive", "createrepo_c", "modifyrepo_c", "gpg")),
    reason="apt-utils, createrepo-c and gpg are installed by scripts/setup",
)

CVE1, CVE2 = "CVE-2024-1086", "CVE-2024-26581"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    subprocess.run(
        ["gpg", "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key",
         "Publisher <publisher@example.org>", "rsa3072", "sign", "never"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Signer.find("publisher@example.org", home)


def _stream(make_update: MakeUpdate, out: Path, fmt: PackageFormat) -> list[Path]:
    v1 = make_update("one", replace=True, cves=[CVE1])
    v2 = make_update("two", replace=True, cves=[CVE1, CVE2], created="2026-12-01T00:00:00Z")
    return build_packages(
        [v1, v2], fmt, out, source_date_epoch=EPOCH, maintainer=MAINTAINER, stream=Stream()
    )


def _tree(repo: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()
    }


def test_apt_repository(make_update: MakeUpdate, tmp_path: Path, signer: Signer) -> None:
    v1, v2 = _stream(make_update, tmp_path / "debs", PackageFormat.DEB)
    repo = tmp_path / "repo"
    (first,) = publish(repo, [v1], signer)
    assert (
        first.new and first.path == repo / "apt/pool/main" / f"ksplice-updates-{RELEASE}" / v1.name
    )
    publish(repo, [v2], signer)
    dists = repo / "apt/dists/ksplice"
    # Both versions stay listed: a machine can go back to v1.
    packages = (dists / "main/binary-amd64/Packages").read_text()
    assert packages.count(f"Package: ksplice-updates-{RELEASE}\n") == 2
    assert (
        gzip.decompress((dists / "main/binary-amd64/Packages.gz").read_bytes()) == packages.encode()
    )
    release = (dists / "Release").read_text()
    assert "Origin: ksplice-pkg\n" in release and "Suite: ksplice\n" in release
    # apt's own verifier, with the public key published next to the repository.
    keyring = repo / "signing-key.gpg"
    for signed in ([dists / "InRelease"], [dists / "Release.gpg", dists / "Release"]):
        subprocess.run(["gpgv", "--keyring", keyring, *signed], check=True, capture_output=True)
    # Publishing again changes nothing, to the byte.
    before = _tree(repo)
    assert [p.new for p in publish(repo, [v1, v2], signer)] == [False, False]
    assert _tree(repo) == before


def test_dnf_repository(make_update: MakeUpdate, tmp_path: Path, signer: Signer) -> None:
    v1, v2 = _stream(make_update, tmp_path / "rpms", PackageFormat.RPM)
    repo = tmp_path / "repo"
    publish(repo, [v1, v2], signer)
    # The RPMs are signed by the key, as rpm checks them with gpgcheck=1.
    db = tmp_path / "rpmdb"
    db.mkdir()
    subprocess.run(["rpm", "--dbpath", db, "--import", repo / "signing-key.asc"], check=True)
    for rpm in (repo / "rpm/Packages").iterdir():
        checked = subprocess.run(
            ["rpm", "--dbpath", db, "-K", rpm], capture_output=True, text=True, check=True
        ).stdout
        assert "signatures OK" in checked, checked
    repodata = repo / "rpm/repodata"
    subprocess.run(
        ["gpgv", "--keyring", repo / "signing-key.gpg", repodata / "repomd.xml.asc",
         repodata / "repomd.xml"],
        check=True, capture_output=True,
    )  # fmt: skip
    (info,) = repodata.glob("*-updateinfo.xml.gz")
    assert info.name.split("-", 1)[1] == "updateinfo.xml.gz"
    updates = ET.fromstring(gzip.decompress(info.read_bytes()))
    advisories = {u.findtext("id") or "": u for u in updates.iter("update")}
    assert sorted(advisories) == [f"KSPLICE-{RELEASE}-one", f"KSPLICE-{RELEASE}-two"]
    two = advisories[f"KSPLICE-{RELEASE}-two"]
    assert two.get("type") == "security"
    assert [(r.get("type"), r.get("id")) for r in two.iter("reference")] == [
        ("cve", CVE1),
        ("cve", CVE2),
    ]
    (package,) = two.iter("package")
    assert (package.get("name"), package.get("version"), package.get("release")) == (
        f"ksplice-updates-{RELEASE}",
        "20261201.000000",
        "1",
    )
    # The unsigned package published again is the signed one already there.
    before = _tree(repo)
    assert [p.new for p in publish(repo, [v1, v2], signer)] == [False, False]
    assert _tree(repo) == before


def test_another_package_under_a_published_version_is_refused(
    make_update: MakeUpdate, tmp_path: Path
) -> None:
    first = make_update("one", replace=True)
    (deb,) = build_packages([first], PackageFormat.DEB, tmp_path / "a", stream=Stream())
    repo = tmp_path / "repo"
    publish(repo, [deb], None)
    # The same version with other content (another description): refused, the first stays.
    other = make_update("one", replace=True, description="something else")
    (changed,) = build_packages([other], PackageFormat.DEB, tmp_path / "b", stream=Stream())
    assert changed.name == deb.name
    with pytest.raises(PublishError, match="other content"):
        publish(repo, [changed], None)
    (published,) = (repo / "apt/pool").rglob("*.deb")
    assert published.read_bytes() == deb.read_bytes()
    assert (repo / "apt/dists/ksplice/Release").is_file()
    assert not (repo / "apt/dists/ksplice/InRelease").exists()


def test_unknown_key_is_refused(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(SigningError, match="no secret key"):
        Signer.find("nobody@example.org", signer.homedir)
    with pytest.raises(SigningError, match="does not name"):
        Signer.find("%{lua: x}", signer.homedir)
