"""The stream of a kernel from signed repositories, in the full Debian userland on the real kernel:
`apt install ksplice-updates-<release>` from the apt repository `publish` made, then `apt-get
update && apt-get upgrade` to the next (cumulative) version once it is published, with a loop
reading /proc/cmdline across the upgrade; the same with dnf, `gpgcheck=1` and `repo_gpgcheck=1`,
taking the new version by `dnf upgrade --cve=...`. A repository signed by a key the machine does
not trust is refused.

v1 changes /proc/cmdline to start with "A: ", v2 (built later, both with --replace) with "C: ".
Their CVE ids are set by rewriting the manifests of the real updates (`create --cve` is not
wired yet); the modules and their sha256 stay the real ones.

The repository as machines see it is one directory (`repo`, a symlink in the guest) whose content
moves from the publication of v1 to that of v2, as a web server's would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.package import PackageFormat, Stream, build_packages
from ksplice_pkg.publish import Signer, publish
from ksplice_pkg.vm.userland import image_for, new_overlay
from tests.lab.runtime_guest import output, rewritten, status, tar_dir
from tests.lab.test_package import MAINTAINER, Lab, provider_rpm, rpm_tools_overlay, stand_in_deb
from tests.lab.test_package_cumulative import POLL, _markers
from tests.lab.test_series import A_LINE, C_LINE, ORIGINAL, _cmdline_patch
from tests.lab.updates import build_update
from tests.unit.package.own import build_debs, build_rpms

ID_1, ID_2 = "stv1", "stv2"
CVE_1, CVE_2 = "CVE-2024-1086", "CVE-2024-26581"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("rpmbuild", "createrepo_c", "apt-ftparchive", "gpg")),
    reason="rpm, createrepo-c, apt-utils and gpg are installed by scripts/setup",
)


@dataclass(frozen=True)
class Updates:
    v1: Path  # update tarballs
    v2: Path


def _key(home: Path, who: str) -> Signer:
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key",
         f"{who} <{who}@example.org>", "rsa3072", "sign", "never"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Signer.find(f"{who}@example.org", home)


@pytest.fixture(scope="module")
def updates(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path_factory: pytest.TempPathFactory
) -> Updates:
    out = tmp_path_factory.mktemp("streams")
    v1 = build_update(
        artifacts, kallsyms, _cmdline_patch(ORIGINAL, A_LINE), out / ID_1, ID_1, replace=True
    )
    v2 = build_update(
        artifacts, kallsyms, _cmdline_patch(ORIGINAL, C_LINE), out / ID_2, ID_2, replace=True
    )
    assert str(v1.manifest["created"]) < str(v2.manifest["created"])
    # A cumulative update names every CVE it fixes: v1's and its own.
    return Updates(
        v1=tar_dir(rewritten(v1, out / "cve1", cves=[CVE_1]), out / "v1.tar.gz"),
        v2=tar_dir(rewritten(v2, out / "cve2", cves=[CVE_1, CVE_2]), out / "v2.tar.gz"),
    )


@pytest.fixture(scope="module")
def lab(
    artifacts: KernelArtifacts,
    cache: Path,
    updates: Updates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Lab:
    return Lab.of_two(artifacts, cache, updates.v1, updates.v2, tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def keys(lab: Lab) -> tuple[Signer, Signer]:
    """The publisher's key, and another one the machines do not trust."""
    return _key(lab.work / "gnupg", "publisher"), _key(lab.work / "gnupg-other", "stranger")


def _published(
    lab: Lab, fmt: PackageFormat, base: list[Path], keys: tuple[Signer, Signer], name: str
) -> dict[str, Path]:
    """The guest's files: the repository as published with v1 (v1/), then with v2 too (v2/),
    and v1's publication signed by a key the guest does not trust (bad/)."""
    v1, v2 = (
        build_packages([u], fmt, lab.work / f"{name}-{u.stem}", maintainer=MAINTAINER,
                       stream=Stream())[0]
        for u in (lab.a, lab.b)
    )  # fmt: skip
    repo = lab.work / f"{name}-repo"
    snapshots = lab.work / f"{name}-snapshots"
    publisher, stranger = keys
    publish(repo, [*base, v1], publisher)
    shutil.copytree(repo, snapshots / "v1", symlinks=True)
    publish(repo, [v2], publisher)
    shutil.copytree(repo, snapshots / "v2", symlinks=True)
    publish(snapshots / "bad", [*base, v1], stranger)
    return {
        str(p.relative_to(snapshots)): p
        for p in sorted(snapshots.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _cves(out: dict[str, bytes], name: str) -> dict[str, object]:
    data = json.loads(output(out, name))
    assert isinstance(data, dict), data
    return data


# --- apt -----------------------------------------------------------------------------------

APT_FIRST_BOOT = """
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
mkdir -p /etc/apt/keyrings
cp v1/signing-key.gpg /etc/apt/keyrings/ksplice.gpg
use_repo() {{
    echo "deb [signed-by=/etc/apt/keyrings/ksplice.gpg] file:$PWD/$1/apt ksplice main" \
        > /etc/apt/sources.list.d/ksplice.list
}}
cat /proc/cmdline > "$OUT/unpatched"
# Signed by a key the machine does not trust: refused, nothing installed.
use_repo bad
rc bad-update apt-get update
rc bad-install apt-get install -y --no-install-recommends {stream}
live bad
dpkg-query -W -f '${{Package}}\\n' 'ksplice-*' > "$OUT/bad-packages" 2>/dev/null
# The publisher's repository, first with v1.
ln -sfn v1 repo
use_repo repo
rc update-1 apt-get update
rc install apt-get install -y --no-install-recommends {stream}
live v1
rc cves-1 ksplice-pkg view --cves --json
# v2 is published: the machine's routine upgrade takes it.
ln -sfn v2 repo
rc update-2 apt-get update
poll_start
rc upgrade apt-get upgrade -y
poll_stop upgrade
live v2
rc cves-2 ksplice-pkg view --cves --json
rc changelog apt-get changelog {stream}
dpkg-query -W -f '${{Package}} ${{Version}} ${{db:Status-Status}}\\n' 'ksplice-*' \
    > "$OUT/packages" 2>&1
rc stable ksplice-pkg confirm --after 20
sync
"""

APT_SECOND_BOOT = """
live boot
rc cves-boot ksplice-pkg view --cves --json
"""


def test_apt_stream_from_a_signed_repository(lab: Lab, keys: tuple[Signer, Signer]) -> None:
    release = lab.artifacts.release
    stream = f"ksplice-updates-{release}"
    base = [*build_debs(lab.work / "own-debs"),
            stand_in_deb(f"linux-image-{release}", lab.work / "stand-in")]  # fmt: skip
    files = _published(lab, PackageFormat.DEB, base, keys, "apt")
    overlay = new_overlay(image_for(lab.artifacts, lab.cache), lab.work / "apt.qcow2")

    out = lab.boot(POLL + APT_FIRST_BOOT.format(stream=stream), files, overlay, "apt stream")
    unpatched = out["unpatched"].decode().rstrip("\n")
    # The untrusted repository: apt says why and installs nothing.
    assert "NO_PUBKEY" in output(out, "bad-update") or "not signed" in output(out, "bad-update")
    assert status(out, "bad-install") != 0, output(out, "bad-install")
    assert out["bad.live"].decode().split() == []
    assert out["bad-packages"].decode().split() == []
    # v1 by name from the repository, with the runtime and the kernel stand-in.
    assert status(out, "update-1") == 0, output(out, "update-1")
    assert status(out, "install") == 0, output(out, "install")
    assert out["v1.live"].decode().split() == [f"ksplice_{ID_1}"], output(out, "install")
    assert _cves(out, "cves-1")["cves"] == [CVE_1]
    # v2 by `apt-get upgrade`, the kernel never unpatched on the way.
    assert status(out, "update-2") == 0, output(out, "update-2")
    assert status(out, "upgrade") == 0, output(out, "upgrade")
    assert out["v2.live"].decode().split() == [f"ksplice_{ID_2}"], output(out, "upgrade")
    markers = _markers(out, "upgrade", unpatched)
    print(f"apt upgrade v1 -> v2, reads of /proc/cmdline by what they showed: {markers}")
    assert "" not in markers, (markers, output(out, "upgrade"))
    assert markers.get("A", 0) > 0 and markers.get("C", 0) > 0, markers
    cves = _cves(out, "cves-2")
    assert cves["cves"] == sorted([CVE_1, CVE_2])
    assert cves["updates"] == [{"id": ID_2, "cves": [CVE_1, CVE_2]}]
    assert cves["effective_version"] == f"{release}+{ID_2}"
    assert status(out, "changelog") == 0, output(out, "changelog")
    assert f"Fixes {CVE_2}." in output(out, "changelog"), output(out, "changelog")
    packages = out["packages"].decode()
    installed = [line.split()[0] for line in packages.splitlines() if line.endswith(" installed")]
    assert [p for p in installed if p.startswith("ksplice-update")] == [stream], packages
    assert status(out, "stable") == 0, output(out, "stable")

    out = lab.boot(POLL + APT_SECOND_BOOT, {}, overlay, "apt stream reboot")
    assert out["boot.live"].decode().split() == [f"ksplice_{ID_2}"]
    assert _cves(out, "cves-boot")["cves"] == sorted([CVE_1, CVE_2])


# --- dnf -----------------------------------------------------------------------------------

DNF_BOOT = """
mkdir -p /etc/yum.repos.d
repo() {{
    cat > /etc/yum.repos.d/ksplice.repo <<EOF
[ksplice]
name=ksplice-pkg updates
baseurl=file://$PWD/$1/rpm
gpgcheck=1
repo_gpgcheck=1
gpgkey=file://$PWD/v1/signing-key.asc
metadata_expire=0
EOF
}}
dnf="dnf -y --releasever=12 --disablerepo=* --enablerepo=ksplice"
cat /proc/cmdline > "$OUT/unpatched"
repo bad
rc bad-install $dnf install {stream}
live bad
ln -sfn v1 repo
repo repo
rc install $dnf install {stream}
live v1
ln -sfn v2 repo
rc updateinfo $dnf updateinfo list --with-cve
poll_start
rc upgrade $dnf upgrade --cve={cve}
poll_stop upgrade
live v2
rc cves ksplice-pkg view --cves --json
rc changelog rpm -q --changelog {stream}
rpm -qa 'ksplice-*' > "$OUT/packages"
"""


def test_dnf_stream_from_a_signed_repository(lab: Lab, keys: tuple[Signer, Signer]) -> None:
    release = lab.artifacts.release
    stream = f"ksplice-updates-{release}"
    base = [*build_rpms(lab.work / "own-rpms"), provider_rpm(release, lab.work)]
    files = _published(lab, PackageFormat.RPM, base, keys, "dnf")
    overlay = rpm_tools_overlay(lab, lab.work / "dnf.qcow2")

    script = DNF_BOOT.format(stream=stream, cve=CVE_2)
    out = lab.boot(POLL + script, files, overlay, "dnf stream")
    unpatched = out["unpatched"].decode().rstrip("\n")
    # The untrusted repository: its metadata's signature does not verify, nothing installed.
    refused = output(out, "bad-install")
    assert status(out, "bad-install") != 0, refused
    assert "GPG" in refused or "signature" in refused, refused
    assert out["bad.live"].decode().split() == []
    assert status(out, "install") == 0, output(out, "install")
    assert out["v1.live"].decode().split() == [f"ksplice_{ID_1}"], output(out, "install")
    # The advisory of v2, by its CVE ids, applicable to the v1 installed.
    listed = output(out, "updateinfo")
    assert status(out, "updateinfo") == 0, listed
    assert CVE_2 in listed and f"{stream}-" in listed, listed
    assert status(out, "upgrade") == 0, output(out, "upgrade")
    assert out["v2.live"].decode().split() == [f"ksplice_{ID_2}"], output(out, "upgrade")
    markers = _markers(out, "upgrade", unpatched)
    print(f"dnf upgrade --cve v1 -> v2, reads of /proc/cmdline by what they showed: {markers}")
    assert "" not in markers, (markers, output(out, "upgrade"))
    assert _cves(out, "cves")["cves"] == sorted([CVE_1, CVE_2])
    assert f"- Fixes {CVE_2}" in output(out, "changelog"), output(out, "changelog")
    (installed,) = [p for p in out["packages"].decode().split() if p.startswith(stream)]
    assert "-20" in installed, out["packages"].decode()
