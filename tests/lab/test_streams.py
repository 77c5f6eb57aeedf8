"""The stream of a kernel from signed repositories, in the full Debian userland on the real kernel:
`apt install ksplice-updates-<release>` from the apt repository `publish` made, then `apt-get
update && apt-get upgrade` to the next (cumulative) version once it is published, and the real
`unattended-upgrade` to the one after, with a loop reading /proc/cmdline across each upgrade;
the same with dnf, `gpgcheck=1` and `repo_gpgcheck=1`,
taking the new version by `dnf upgrade --cve=...`. A repository signed by a key the machine does
not trust is refused.

v1 changes /proc/cmdline to start with "A: ", v2 (built later, all with --replace) with "C: ",
v3 with "B: ".
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
from tests.lab.runtime_guest import output, rewritten, status, tar_dir
from tests.lab.test_package import (
    MAINTAINER,
    Lab,
    overlay_with,
    provider_rpm,
    rpm_tools_overlay,
    stand_in_deb,
)
from tests.lab.test_package_cumulative import POLL, _markers
from tests.lab.test_series import A_LINE, B_LINE, C_LINE, ORIGINAL, _cmdline_patch
from tests.lab.updates import build_update
from tests.unit.package.own import build_debs, build_rpms

ID_1, ID_2, ID_3 = "stv1", "stv2", "stv3"
CVE_1, CVE_2, CVE_3 = "CVE-2024-1086", "CVE-2024-26581", "CVE-2024-36971"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("rpmbuild", "createrepo_c", "apt-ftparchive", "gpg")),
    reason="rpm, createrepo-c, apt-utils and gpg are installed by scripts/setup",
)


@dataclass(frozen=True)
class Updates:
    v1: Path  # update tarballs
    v2: Path
    v3: Path


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
    v3 = build_update(
        artifacts, kallsyms, _cmdline_patch(ORIGINAL, B_LINE), out / ID_3, ID_3, replace=True
    )
    assert str(v1.manifest["created"]) < str(v2.manifest["created"]) < str(v3.manifest["created"])
    # A cumulative update names every CVE it fixes: the earlier ones' and its own.
    return Updates(
        v1=tar_dir(rewritten(v1, out / "cve1", cves=[CVE_1]), out / "v1.tar.gz"),
        v2=tar_dir(rewritten(v2, out / "cve2", cves=[CVE_1, CVE_2]), out / "v2.tar.gz"),
        v3=tar_dir(rewritten(v3, out / "cve3", cves=[CVE_1, CVE_2, CVE_3]), out / "v3.tar.gz"),
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
    lab: Lab,
    fmt: PackageFormat,
    base: list[Path],
    tarballs: list[Path],
    keys: tuple[Signer, Signer],
    name: str,
) -> dict[str, Path]:
    """The guest's files: the repository as published with v1 (v1/), then with each later
    version too (v2/, v3/), and v1's publication signed by a key the guest does not trust
    (bad/)."""
    packages = [
        build_packages([t], fmt, lab.work / f"{name}-{t.stem}", maintainer=MAINTAINER,
                       stream=Stream())[0]
        for t in tarballs
    ]  # fmt: skip
    repo = lab.work / f"{name}-repo"
    snapshots = lab.work / f"{name}-snapshots"
    publisher, stranger = keys
    for n, package in enumerate(packages, 1):
        publish(repo, [*base, package] if n == 1 else [package], publisher)
        shutil.copytree(repo, snapshots / f"v{n}", symlinks=True)
    publish(snapshots / "bad", [*base, packages[0]], stranger)
    return {
        str(p.relative_to(snapshots)): p
        for p in sorted(snapshots.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _swapped(
    out: dict[str, bytes],
    step: str,
    texts: tuple[str, str],
    new: tuple[str, str],
    unpatched: str,
) -> None:
    """The package manager's `step` took the stream from the version whose /proc/cmdline starts
    with texts[0] to the one with texts[1], update new[1] (`live` snapshot new[0]) alone live
    after it, and the loop reading /proc/cmdline across it never saw the unpatched text."""
    assert status(out, step) == 0, output(out, step)
    assert out[f"{new[0]}.live"].decode().split() == [f"ksplice_{new[1]}"], output(out, step)
    markers = _markers(out, step, unpatched)
    print(f"{step}: reads of /proc/cmdline by the version they showed: {markers}")
    assert "" not in markers, (markers, output(out, step))
    assert markers.get(texts[0], 0) > 0 and markers.get(texts[1], 0) > 0, markers


def _cves(out: dict[str, bytes], name: str) -> dict[str, object]:
    data = json.loads(output(out, name))
    assert isinstance(data, dict), data
    return data


# --- apt -----------------------------------------------------------------------------------

APT_FIRST_BOOT = """
# apt's daily timers would take the dpkg lock in the middle of the test: ours runs them by hand.
systemctl stop apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
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
# v3 is published: the real unattended-upgrade run takes it, its origin allowed.
cat > /etc/apt/apt.conf.d/51ksplice-pkg <<EOF
Unattended-Upgrade::Origins-Pattern {{ "origin=ksplice-pkg"; }};
EOF
ln -sfn v3 repo
rc update-3 apt-get update
poll_start
rc unattended unattended-upgrade -v
poll_stop unattended
live v3
rc cves-3 ksplice-pkg view --cves --json
dpkg-query -W -f '${{Package}} ${{Version}} ${{db:Status-Status}}\\n' 'ksplice-*' \
    > "$OUT/packages" 2>&1
rc stable ksplice-pkg confirm --after 20
sync
"""

APT_SECOND_BOOT = """
live boot
rc cves-boot ksplice-pkg view --cves --json
"""


def test_apt_stream_from_a_signed_repository(
    lab: Lab, updates: Updates, keys: tuple[Signer, Signer]
) -> None:
    release = lab.artifacts.release
    stream = f"ksplice-updates-{release}"
    base = [*build_debs(lab.work / "own-debs"),
            stand_in_deb(f"linux-image-{release}", lab.work / "stand-in")]  # fmt: skip
    files = _published(
        lab, PackageFormat.DEB, base, [updates.v1, updates.v2, updates.v3], keys, "apt"
    )
    overlay = overlay_with(lab, lab.work / "apt.qcow2", ("unattended-upgrades",))

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
    _swapped(out, "upgrade", ("A", "C"), ("v2", ID_2), unpatched)
    cves = _cves(out, "cves-2")
    assert cves["cves"] == sorted([CVE_1, CVE_2])
    assert cves["updates"] == [{"id": ID_2, "cves": [CVE_1, CVE_2]}]
    assert cves["effective_version"] == f"{release}+{ID_2}"
    assert status(out, "changelog") == 0, output(out, "changelog")
    assert f"Fixes {CVE_2}." in output(out, "changelog"), output(out, "changelog")
    # v3 by unattended-upgrades, the same way.
    assert status(out, "update-3") == 0, output(out, "update-3")
    _swapped(out, "unattended", ("C", "B"), ("v3", ID_3), unpatched)
    every = sorted([CVE_1, CVE_2, CVE_3])
    assert _cves(out, "cves-3")["cves"] == every
    packages = out["packages"].decode()
    installed = [line.split()[0] for line in packages.splitlines() if line.endswith(" installed")]
    assert [p for p in installed if p.startswith("ksplice-update")] == [stream], packages
    assert status(out, "stable") == 0, output(out, "stable")

    out = lab.boot(POLL + APT_SECOND_BOOT, {}, overlay, "apt stream reboot")
    assert out["boot.live"].decode().split() == [f"ksplice_{ID_3}"]
    assert _cves(out, "cves-boot")["cves"] == every


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


def test_dnf_stream_from_a_signed_repository(
    lab: Lab, updates: Updates, keys: tuple[Signer, Signer]
) -> None:
    release = lab.artifacts.release
    stream = f"ksplice-updates-{release}"
    base = [*build_rpms(lab.work / "own-rpms"), provider_rpm(release, lab.work)]
    files = _published(lab, PackageFormat.RPM, base, [updates.v1, updates.v2], keys, "dnf")
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
    _swapped(out, "upgrade", ("A", "C"), ("v2", ID_2), unpatched)
    assert _cves(out, "cves")["cves"] == sorted([CVE_1, CVE_2])
    assert f"- Fixes {CVE_2}" in output(out, "changelog"), output(out, "changelog")
    (installed,) = [p for p in out["packages"].decode().split() if p.startswith(stream)]
    assert "-20" in installed, out["packages"].decode()
