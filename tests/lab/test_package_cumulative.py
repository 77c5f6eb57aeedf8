"""A cumulative (replace) hotpatch package taking over from an older one live, through apt and
through dnf, in the full Debian userland on the real kernel.

A changes /proc/cmdline to start with "A: ", C (built later with --replace, so its package
supersedes every older update of the kernel) to start with "C: ". While the package manager
swaps them, a loop in the guest reads /proc/cmdline as fast as it can: the kernel must show A's
text or C's, never the unpatched one. That is the "no moment where neither is applied" of the
packaging issue, observed from user space rather than inferred from the order of the scripts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.package import PackageFormat, build_packages
from ksplice_pkg.run import run
from tests.lab.runtime_guest import output, status
from tests.lab.test_package import (
    MAINTAINER,
    Lab,
    provider_rpm,
    rpm_tools_overlay,
    stand_in_deb,
)
from tests.lab.test_series import A_LINE, C_LINE, ORIGINAL, _cmdline_patch
from tests.lab.updates import build_update
from tests.lab.userland import image_for, new_overlay
from tests.unit.package.own import build_debs, build_rpms

ID_A, ID_C = "cua", "cuc"

pytestmark = pytest.mark.skipif(
    shutil.which("rpmbuild") is None or shutil.which("createrepo_c") is None,
    reason="rpm and createrepo-c are installed by scripts/setup",
)


@dataclass(frozen=True)
class Updates:
    a: Path  # update tarballs
    c: Path
    a_created: str
    c_created: str


@pytest.fixture(scope="module")
def updates(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path_factory: pytest.TempPathFactory
) -> Updates:
    out = tmp_path_factory.mktemp("cumulative")
    a = build_update(artifacts, kallsyms, _cmdline_patch(ORIGINAL, A_LINE), out / ID_A, ID_A)
    c = build_update(
        artifacts, kallsyms, _cmdline_patch(ORIGINAL, C_LINE), out / ID_C, ID_C, replace=True
    )
    return Updates(
        a=a.tarball,
        c=c.tarball,
        a_created=str(a.manifest["created"]),
        c_created=str(c.manifest["created"]),
    )


@pytest.fixture(scope="module")
def lab(
    artifacts: KernelArtifacts,
    cache: Path,
    updates: Updates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Lab:
    # The package lab's boot helper, with C where B is.
    work = tmp_path_factory.mktemp("cumulative-lab")
    return Lab.of_two(artifacts, cache, updates.a, updates.c, work)


# poll_start / poll_stop NAME: read /proc/cmdline in a loop while something else runs, then keep
# how often each distinct text was seen.
POLL = r"""
export DEBIAN_FRONTEND=noninteractive
poll_start() {
    rm -f /tmp/poll.stop
    ( while [ ! -e /tmp/poll.stop ]; do cat /proc/cmdline; done > /tmp/poll.log ) &
    poller=$!
    sleep 1
}
poll_stop() {
    sleep 1
    touch /tmp/poll.stop
    wait $poller
    sort /tmp/poll.log | uniq -c > "$OUT/$1.poll"
}
live() { ls /sys/kernel/livepatch > "$OUT/$1.live"; }
"""


def _seen(out: dict[str, bytes], name: str) -> dict[str, int]:
    """What the loop read during NAME: the text after its "A: "/"C: " marker -> how often."""
    seen: dict[str, int] = {}
    for line in out[f"{name}.poll"].decode().splitlines():
        count, _, text = line.strip().partition(" ")
        seen[text] = int(count)
    return seen


def _marker(text: str, unpatched: str) -> str:
    """'A', 'B', 'C' or '' (unpatched) for one line /proc/cmdline showed."""
    for marker in ("A", "B", "C"):
        if text == f"{marker}: {unpatched}":
            return marker
    assert text == unpatched, f"/proc/cmdline read {text!r}"
    return ""


def _markers(out: dict[str, bytes], name: str, unpatched: str) -> dict[str, int]:
    markers: dict[str, int] = {}
    for text, count in _seen(out, name).items():
        marker = _marker(text, unpatched)
        markers[marker] = markers.get(marker, 0) + count
    return markers


def test_cumulative_update_is_newer(updates: Updates) -> None:
    # The premise of both tests: C's stamp, hence its package version, is the newer one.
    assert updates.a_created < updates.c_created


# --- apt -----------------------------------------------------------------------------------

APT_FIRST_BOOT = """
cat /proc/cmdline > "$OUT/unpatched"
rc install-a apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb ./ksplice-update-{release}-{a}_*.deb
live a
poll_start
rc upgrade apt-get install -y --no-install-recommends ./ksplice-update-{release}-{c}_*.deb
poll_stop upgrade
live c
dpkg-query -W -f '${{Package}} ${{db:Status-Status}}\\n' 'ksplice-update-*' > "$OUT/packages" 2>&1
rc stable ksplice-pkg confirm --after 20
sync
"""

APT_SECOND_BOOT = """
live boot
cat /proc/cmdline > "$OUT/boot.cmdline"
{{ journalctl -b -o cat -u ksplice-pkg.service; ksplice-pkg view; }} > "$OUT/boot.unit" 2>&1
# The runtime goes, and C with it (it depends on the runtime): the runtime's prerm carries out
# the undo C's prerm deferred to the trigger, which will not run any more.
poll_start
rc remove apt-get remove -y ksplice-pkg-runtime
poll_stop remove
live removed
dpkg-query -W -f '${{Package}} ${{db:Status-Status}}\\n' 'ksplice-*' > "$OUT/left" 2>&1
"""


def test_apt_upgrade_to_a_cumulative_update_has_no_gap(lab: Lab) -> None:
    release = lab.artifacts.release
    debs = build_debs(lab.work / "own-debs")
    hotpatches = build_packages(
        [lab.a, lab.b], PackageFormat.DEB, lab.work / "hotpatch-debs", maintainer=MAINTAINER
    )
    stand_in = stand_in_deb(f"linux-image-{release}", lab.work / "stand-in")
    files = {p.name: p for p in [*debs, *hotpatches, stand_in]}
    fmt = {"a": ID_A, "c": ID_C, "release": release}
    overlay = new_overlay(image_for(lab.artifacts, lab.cache), lab.work / "apt.qcow2")

    out = lab.boot(POLL + APT_FIRST_BOOT.format(**fmt), files, overlay, "apt upgrade")
    unpatched = out["unpatched"].decode().rstrip("\n")
    assert status(out, "install-a") == 0, output(out, "install-a")
    assert out["a.live"].decode().split() == [f"ksplice_{ID_A}"]
    assert status(out, "upgrade") == 0, output(out, "upgrade")
    # apt took A's package away (C conflicts with / replaces it) and C alone is live.
    installed = [
        line.split()[0]
        for line in out["packages"].decode().splitlines()
        if line.endswith(" installed")
    ]
    assert installed == [f"ksplice-update-{release}-{ID_C}"], out["packages"].decode()
    assert out["c.live"].decode().split() == [f"ksplice_{ID_C}"], output(out, "upgrade")
    # While apt worked, the kernel showed A's text, then C's, and never neither.
    markers = _markers(out, "upgrade", unpatched)
    assert "" not in markers, (markers, output(out, "upgrade"))
    assert markers.get("A", 0) > 0 and markers.get("C", 0) > 0, markers
    assert status(out, "stable") == 0, output(out, "stable")

    out = lab.boot(POLL + APT_SECOND_BOOT.format(**fmt), {}, overlay, "apt reboot")
    # The unit reapplied C alone: A's package and files are gone.
    assert out["boot.live"].decode().split() == [f"ksplice_{ID_C}"], out["boot.unit"].decode()
    assert out["boot.cmdline"].decode() == f"C: {unpatched}\n"
    assert status(out, "remove") == 0, output(out, "remove")
    assert out["removed.live"].decode().split() == [], output(out, "remove")
    # Undone by the runtime's prerm, after dpkg had started to remove the runtime.
    removal = output(out, "remove")
    assert removal.index("Removing ksplice-pkg-runtime") < removal.index(f"{ID_C}: undone"), removal
    assert not [line for line in out["left"].decode().splitlines() if line.endswith(" installed")]
    assert _markers(out, "remove", unpatched).keys() == {"C", ""}


# --- dnf -----------------------------------------------------------------------------------

DNF_BOOT = """
mkdir -p /etc/yum.repos.d
repo() {{  # the lab repository as published: snapshot $1
    cat > /etc/yum.repos.d/lab.repo <<EOF
[lab]
name=ksplice-pkg lab
baseurl=file://$PWD/$1
gpgcheck=0
metadata_expire=0
EOF
}}
dnf="dnf -y --releasever=12 --disablerepo=* --enablerepo=lab"
cat /proc/cmdline > "$OUT/unpatched"
repo before
rc install-a $dnf install ksplice-update-{release}-{a}
live a
repo after
poll_start
rc upgrade $dnf upgrade
poll_stop upgrade
live c
rpm -qa 'ksplice-update-*' > "$OUT/packages"
"""


def test_dnf_upgrade_to_a_cumulative_update_has_no_gap(lab: Lab) -> None:
    release = lab.artifacts.release
    # Packaged in one run, so that C's package obsoletes A's by name.
    a, c = build_packages(
        [lab.a, lab.b], PackageFormat.RPM, lab.work / "hotpatch-rpms", maintainer=MAINTAINER
    )
    base = [*build_rpms(lab.work / "own-rpms"), provider_rpm(release, lab.work)]
    # The repository before C is published, and after.
    files: dict[str, Path] = {}
    for name, rpms in {"before": [*base, a], "after": [*base, a, c]}.items():
        repo = lab.work / name
        repo.mkdir()
        for rpm in rpms:
            shutil.copy(rpm, repo)
        run(["createrepo_c", "--quiet", repo])
        files |= {
            f"{name}/{p.relative_to(repo)}": p for p in sorted(repo.rglob("*")) if p.is_file()
        }
    overlay = rpm_tools_overlay(lab, lab.work / "dnf.qcow2")
    fmt = {"a": ID_A, "c": ID_C, "release": release}

    out = lab.boot(POLL + DNF_BOOT.format(**fmt), files, overlay, "dnf upgrade")
    unpatched = out["unpatched"].decode().rstrip("\n")
    assert status(out, "install-a") == 0, output(out, "install-a")
    assert out["a.live"].decode().split() == [f"ksplice_{ID_A}"]
    assert status(out, "upgrade") == 0, output(out, "upgrade")
    # dnf upgrade took A's package away (C obsoletes it) and C alone is live.
    (installed,) = out["packages"].decode().split()
    assert installed.startswith(f"ksplice-update-{release}-{ID_C}-"), installed
    assert out["c.live"].decode().split() == [f"ksplice_{ID_C}"], output(out, "upgrade")
    markers = _markers(out, "upgrade", unpatched)
    assert "" not in markers, (markers, output(out, "upgrade"))
    assert markers.get("A", 0) > 0 and markers.get("C", 0) > 0, markers
