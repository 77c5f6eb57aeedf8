"""Hotpatch packages on the real Debian kernel, in the full Debian userland with systemd:
installed with apt, rpm and dnf, applied before the package manager returns, reapplied by the
unit after a reboot, undone live on removal.

The tool itself is installed from its own packages (debian/, rpm/ksplice-pkg.spec), built from
this tree; the updates come from the real `create` pipeline. Two stand-ins, made here and
honest about it:
- the guest boots a kernel given to qemu, not one dpkg installed, so `linux-image-<release>`
  is an empty package that records it;
- Debian's rpm database knows nothing of what dpkg installed, so one small RPM provides the
  Debian packages and the kernel that the RPMs require (python3, python3-click, kmod, /bin/sh,
  kernel-uname-r(<release>)).

Stacking is declared as in the runtime's lab tests: B's manifest is rewritten to say it is
built on A (its module and sha256 stay the real ones).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.package import PackageFormat, build_packages
from ksplice_pkg.run import run
from tests.lab.runtime_guest import PRELUDE as RUNTIME_PRELUDE
from tests.lab.runtime_guest import make_update, output, rewritten, status, tar_dir
from tests.lab.test_runtime import A_PATCH, B_PATCH
from tests.lab.userland import SUITE, image_for, new_overlay, run_userland
from tests.unit.package.own import build_debs, build_rpms

MAINTAINER = "ksplice-pkg lab <lab@example.org>"
ID_A, ID_B = "pka", "pkb"

pytestmark = pytest.mark.skipif(
    shutil.which("rpmbuild") is None or shutil.which("createrepo_c") is None,
    reason="rpm and createrepo-c are installed by scripts/setup",
)

# After RUNTIME_PRELUDE (rc NAME CMD...); snapshot NAME: what the kernel shows.
PRELUDE = r"""
export DEBIAN_FRONTEND=noninteractive
snapshot() {
    cat /proc/cmdline > "$OUT/$1.cmdline"
    cat /proc/loadavg > "$OUT/$1.loadavg"
    ls /sys/kernel/livepatch > "$OUT/$1.live"
}
# unit_log NAME: what ksplice-pkg.service did in this boot, for the test's failure messages.
unit_log() {
    { systemctl status ksplice-pkg.service; journalctl -b -o cat -u ksplice-pkg.service;
      ksplice-pkg view; } > "$OUT/$1.unit" 2>&1
}
# B's patch shows pid_max as the fifth field of /proc/loadavg: a value it cannot have by chance.
echo 54321 > /proc/sys/kernel/pid_max
"""


@dataclass(frozen=True)
class Lab:
    artifacts: KernelArtifacts
    cache: Path
    a: Path  # update tarballs
    b: Path
    other: Path  # A's update, declared for another kernel release
    other_release: str
    work: Path
    unfit: Path | None = None  # A's update, declared for another build of this release

    @classmethod
    def of_two(cls, artifacts: KernelArtifacts, cache: Path, a: Path, b: Path, work: Path) -> Lab:
        """The boot helper for tests of two updates of this kernel, none for another one."""
        return cls(artifacts, cache, a=a, b=b, other=a, other_release="", work=work)

    def boot(
        self, script: str, files: dict[str, Path], overlay: Path, name: str
    ) -> dict[str, bytes]:
        result = run_userland(
            self.artifacts,
            self.cache,
            RUNTIME_PRELUDE + PRELUDE + script,
            files=files,
            overlay=overlay,
        )
        assert result.status == 0, f"{name}: {result.console[-4000:]}"
        assert result.crash_lines() == [], result.crash_lines()
        return result.outputs


@pytest.fixture(scope="module")
def lab(
    artifacts: KernelArtifacts,
    cache: Path,
    kallsyms: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Lab:
    work = tmp_path_factory.mktemp("package-lab")
    a = make_update(artifacts, kallsyms, A_PATCH, work / ID_A, ID_A)
    b = make_update(artifacts, kallsyms, B_PATCH, work / ID_B, ID_B)
    b_stacked = rewritten(b, work / "stacked", depends_on=[ID_A])
    other_release = artifacts.release.replace("-cloud-", "-9999-cloud-", 1)
    assert other_release != artifacts.release
    other = rewritten(a, work / "other", kernel_release=other_release)
    unfit = rewritten(a, work / "unfit", target_build_id="00" * 20)
    return Lab(
        artifacts=artifacts,
        cache=cache,
        a=a.tarball,
        b=tar_dir(b_stacked, work / "b.tar.gz"),
        other=tar_dir(other, work / "other.tar.gz"),
        other_release=other_release,
        work=work,
        unfit=tar_dir(unfit, work / "unfit.tar.gz"),
    )


@pytest.fixture(scope="module")
def own_debs(lab: Lab) -> list[Path]:
    """The tool's own .deb files, built from this tree once for the apt tests."""
    return build_debs(lab.work / "own-debs")


def _patched(out: dict[str, bytes], name: str, unpatched: str) -> tuple[bool, bool]:
    """(A is live, B is live), read from what the patched functions print; `unpatched` is
    /proc/cmdline before any update."""
    cmdline = out[f"{name}.cmdline"].decode()
    loadavg = out[f"{name}.loadavg"].decode().split()
    assert cmdline in (unpatched, "ksplice: " + unpatched), cmdline
    return cmdline.startswith("ksplice: "), len(loadavg) > 4 and loadavg[4].endswith("/54321")


def _live(out: dict[str, bytes], name: str) -> list[str]:
    return out[f"{name}.live"].decode().split()


# --- Debian: apt -------------------------------------------------------------------------


def stand_in_deb(package: str, out: Path) -> Path:
    """An empty package named like the kernel image the guest boots without dpkg knowing."""
    root = out / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1\nArchitecture: all\nMaintainer: {MAINTAINER}\n"
        "Description: lab stand-in for the kernel the VM boots\n"
    )
    deb = out / f"{package}_1_all.deb"
    run(["dpkg-deb", "--root-owner-group", "--build", root, deb])
    return deb


DEB_FIRST_BOOT = """
snapshot before
rc install apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb ./ksplice-update-{release}-{a}_*.deb \
    ./ksplice-update-{release}-{b}_*.deb ./ksplice-update-{other}-{a}_*.deb
snapshot installed
ls /usr/lib/ksplice-pkg/updates/{other}/{a} > "$OUT/other-files"
rc enabled systemctl is-enabled ksplice-pkg.service
rc create ksplice-pkg create --patch /etc/hostname /
# dpkg would not remove A while B depends on it; forced, the runtime still refuses in prerm.
rc force-remove dpkg --remove --force-depends ksplice-update-{release}-{a}
dpkg-query -W -f '${{db:Status-Status}}' ksplice-update-{release}-{a} > "$OUT/a-status"
snapshot after-refusal
# The crash-loop guard quarantines updates whose boot ends before they proved stable: what
# ksplice-pkg-stable.service does 20 s after a load, done here before powering off.
rc stable ksplice-pkg confirm --after 20
sync
"""

DEB_SECOND_BOOT = """
snapshot boot
unit_log boot
rc remove-b apt-get remove -y ksplice-update-{release}-{b}
snapshot removed-b
rc remove-a apt-get remove -y ksplice-update-{release}-{a}
snapshot removed-a
"""


def test_apt_install_reboot_remove(lab: Lab, own_debs: list[Path]) -> None:
    release = lab.artifacts.release
    debs = own_debs
    hotpatches = build_packages(
        [lab.a, lab.b, lab.other],
        PackageFormat.DEB,
        lab.work / "hotpatch-debs",
        maintainer=MAINTAINER,
    )
    stand_ins = [
        stand_in_deb(f"linux-image-{r}", lab.work / "stand-in")
        for r in (release, lab.other_release)
    ]
    files = {p.name: p for p in [*debs, *hotpatches, *stand_ins]}
    fmt = {"a": ID_A, "b": ID_B, "other": lab.other_release, "release": release}
    overlay = new_overlay(image_for(lab.artifacts, lab.cache), lab.work / "apt.qcow2")

    out = lab.boot(DEB_FIRST_BOOT.format(**fmt), files, overlay, "apt install")
    unpatched = out["before.cmdline"].decode()
    assert _patched(out, "before", unpatched) == (False, False)
    assert status(out, "install") == 0, output(out, "install")
    # Live before apt returned: both patched functions print their new text.
    assert _patched(out, "installed", unpatched) == (True, True), output(out, "install")
    assert _live(out, "installed") == [f"ksplice_{ID_A}", f"ksplice_{ID_B}"]
    # The package for another kernel: installed, its files in place, the kernel untouched.
    assert "manifest.json" in out["other-files"].decode().split()
    assert f"is for Linux {lab.other_release}" in output(out, "install")
    assert output(out, "enabled").strip() == "enabled"
    # The runtime package alone: the build side's command says what to install.
    assert status(out, "create") == 1
    assert "install the ksplice-pkg package" in output(out, "create")
    # A removal the runtime refuses: prerm fails naming B, A stays installed and live.
    assert status(out, "force-remove") != 0
    assert ID_B in output(out, "force-remove"), output(out, "force-remove")
    assert out["a-status"].decode() == "installed"
    assert _patched(out, "after-refusal", unpatched) == (True, True)
    assert status(out, "stable") == 0, output(out, "stable")

    out = lab.boot(DEB_SECOND_BOOT.format(**fmt), {}, overlay, "apt reboot")
    # ksplice-pkg.service reapplied both at boot, A before B.
    assert _patched(out, "boot", unpatched) == (True, True), out["boot.unit"].decode()
    assert status(out, "remove-b") == 0, output(out, "remove-b")
    assert _patched(out, "removed-b", unpatched) == (True, False)
    assert status(out, "remove-a") == 0, output(out, "remove-a")
    assert _patched(out, "removed-a", unpatched) == (False, False)
    assert _live(out, "removed-a") == []


DEB_UNFIT = """
rc install apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb ./ksplice-update-{release}-{a}_*.deb
dpkg-query -W -f '${{db:Status-Status}}' ksplice-update-{release}-{a} > "$OUT/a-status"
snapshot installed
"""


def test_apt_install_of_an_update_the_kernel_refuses(lab: Lab, own_debs: list[Path]) -> None:
    """A failed apply does not fail apt: the package stays installed (for the next boot) and
    the terminal says why. The runtime refuses the update for real, its build-id being
    another build's."""
    release = lab.artifacts.release
    assert lab.unfit is not None
    (hotpatch,) = build_packages(
        [lab.unfit], PackageFormat.DEB, lab.work / "unfit-debs", maintainer=MAINTAINER
    )
    stand_in = stand_in_deb(f"linux-image-{release}", lab.work / "unfit-stand-in")
    files = {p.name: p for p in [*own_debs, hotpatch, stand_in]}
    overlay = new_overlay(image_for(lab.artifacts, lab.cache), lab.work / "unfit.qcow2")
    fmt = {"a": ID_A, "release": release}

    out = lab.boot(DEB_UNFIT.format(**fmt), files, overlay, "apt install unfit")
    assert status(out, "install") == 0, output(out, "install")
    assert out["a-status"].decode() == "installed"
    assert _live(out, "installed") == []
    said = output(out, "install")
    assert "is for the build 0000" in said and "applied at the next boot" in said, said


# --- RPM: rpm and dnf in the Debian guest ------------------------------------------------

RPM_TOOLS = ("rpm", "dnf")


def rpm_tools_overlay(lab: Lab, path: Path) -> Path:
    """A qcow2 over the lab's image with Debian's rpm and dnf installed."""
    return overlay_with(lab, path, RPM_TOOLS)


def overlay_with(lab: Lab, path: Path, tools: tuple[str, ...]) -> Path:
    """A qcow2 over the lab's image with the Debian packages `tools` installed (the guest has
    no network). The installed state is cached as its own qcow2, built once per image."""
    image = image_for(lab.artifacts, lab.cache)
    derived = image.with_name(f"{image.stem}-{'-'.join(tools)}.qcow2")
    if not derived.is_file():
        debs = _tools_debs(lab, image, tools)
        partial = derived.with_name(derived.name + ".partial")
        partial.unlink(missing_ok=True)
        new_overlay(image, partial)
        result = run_userland(
            lab.artifacts,
            lab.cache,
            'dpkg -i ./*.deb > "$OUT/dpkg.out" 2>&1\nsync',
            files={d.name: d for d in debs},
            overlay=partial,
            timeout=1500,
        )
        assert result.status == 0, result.outputs.get("dpkg.out", result.console[-3000:])
        partial.rename(derived)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", derived, "-F", "qcow2", path])
    return path


def _tools_debs(lab: Lab, image: Path, tools: tuple[str, ...]) -> list[Path]:
    """`tools` and what they need beyond what the image has: apt on this machine resolves
    them against the image's own dpkg status file and downloads them (checksums checked)."""
    status_file = lab.work / "guest-dpkg-status"
    run(["debugfs", "-R", f"dump /var/lib/dpkg/status {status_file}", image])
    key = hashlib.sha256(status_file.read_bytes() + " ".join(tools).encode()).hexdigest()
    archives = lab.cache / "userland" / f"{SUITE}-{'-'.join(tools)}-{key[:12]}"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    run(
        [
            "apt-get",
            "-q",
            "-y",
            "--download-only",
            "--no-install-recommends",
            "-o",
            f"Dir::State::status={status_file}",
            "-o",
            f"Dir::Cache::archives={archives}",
            "-o",
            "Debug::NoLocking=1",
            "install",
            *tools,
        ],
        timeout=1800,
    )
    return sorted(archives.glob("*.deb"))


PROVIDER_SPEC = """\
Name: ksplice-lab-debian-base
Version: 1
Release: 1
Summary: Lab stand-in: what dpkg installed and the booted kernel, told to rpm
License: GPL-2.0-only
BuildArch: noarch
Provides: /bin/sh, /usr/bin/python3, python3, python3-click, kmod
Provides: kernel-uname-r({release})

%description
Debian's rpm database starts empty: this package tells it about the Debian packages the
ksplice-pkg RPMs require and about the kernel the lab boots.

%files
"""


def provider_rpm(release: str, out: Path) -> Path:
    top = out / "provider"
    (top / "SPECS").mkdir(parents=True)
    spec = top / "SPECS" / "provider.spec"
    spec.write_text(PROVIDER_SPEC.format(release=release))
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", spec])
    (rpm,) = (top / "RPMS" / "noarch").glob("*.rpm")
    return rpm


@pytest.fixture(scope="module")
def rpm_files(lab: Lab) -> list[Path]:
    """The tool's RPMs, A's and B's, and the stand-in, built once for the RPM tests."""
    release = lab.artifacts.release
    own = build_rpms(lab.work / "own-rpms")
    hotpatches = build_packages(
        [lab.a, lab.b], PackageFormat.RPM, lab.work / "hotpatch-rpms", maintainer=MAINTAINER
    )
    return [*own, *hotpatches, provider_rpm(release, lab.work)]


RPM_FIRST_BOOT = """
snapshot before
rc install rpm -i ./ksplice-lab-debian-base-*.rpm ./ksplice-pkg-runtime-*.rpm \
    ./ksplice-update-{release}-{a}-*.rpm
snapshot installed
rc enabled systemctl is-enabled ksplice-pkg.service
rc stable ksplice-pkg confirm --after 20
sync
"""

RPM_SECOND_BOOT = """
snapshot boot
unit_log boot
rc erase rpm -e ksplice-update-{release}-{a}
snapshot erased
"""


def test_rpm_install_reboot_erase(lab: Lab, rpm_files: list[Path]) -> None:
    release = lab.artifacts.release
    files = {p.name: p for p in rpm_files}
    overlay = rpm_tools_overlay(lab, lab.work / "rpm.qcow2")
    fmt = {"a": ID_A, "release": release}

    out = lab.boot(RPM_FIRST_BOOT.format(**fmt), files, overlay, "rpm -i")
    unpatched = out["before.cmdline"].decode()
    assert _patched(out, "before", unpatched) == (False, False)
    assert status(out, "install") == 0, output(out, "install")
    assert _patched(out, "installed", unpatched) == (True, False), output(out, "install")
    assert output(out, "enabled").strip() == "enabled"
    assert status(out, "stable") == 0, output(out, "stable")

    out = lab.boot(RPM_SECOND_BOOT.format(**fmt), {}, overlay, "rpm reboot")
    assert _patched(out, "boot", unpatched) == (True, False), out["boot.unit"].decode()
    assert status(out, "erase") == 0, output(out, "erase")
    assert _patched(out, "erased", unpatched) == (False, False)
    assert _live(out, "erased") == []


DNF_BOOT = """
mkdir -p /etc/yum.repos.d
cat > /etc/yum.repos.d/lab.repo <<EOF
[lab]
name=ksplice-pkg lab
baseurl=file://$PWD/repo
gpgcheck=0
EOF
dnf="dnf -y --releasever=12 --disablerepo=* --enablerepo=lab"
snapshot before
rc install $dnf install ksplice-update-{release}-{b}
snapshot installed
rc remove $dnf remove ksplice-update-{release}-{a}
snapshot removed
rc left rpm -qa
"""


def test_dnf_from_a_local_repository(lab: Lab, rpm_files: list[Path]) -> None:
    release = lab.artifacts.release
    repo = lab.work / "repo"
    repo.mkdir()
    for rpm in rpm_files:
        shutil.copy(rpm, repo)
    run(["createrepo_c", "--quiet", repo])
    files = {f"repo/{p.relative_to(repo)}": p for p in sorted(repo.rglob("*")) if p.is_file()}
    overlay = rpm_tools_overlay(lab, lab.work / "dnf.qcow2")
    fmt = {"a": ID_A, "b": ID_B, "release": release}

    out = lab.boot(DNF_BOOT.format(**fmt), files, overlay, "dnf")
    unpatched = out["before.cmdline"].decode()
    # dnf resolved B -> A -> the runtime and the stand-in from the repository's metadata.
    assert status(out, "install") == 0, output(out, "install")
    assert _patched(out, "installed", unpatched) == (True, True), output(out, "install")
    assert _live(out, "installed") == [f"ksplice_{ID_A}", f"ksplice_{ID_B}"]
    # Removing A removes B, which depends on it: B is undone first, then A.
    assert status(out, "remove") == 0, output(out, "remove")
    assert _patched(out, "removed", unpatched) == (False, False)
    # dnf also took away what it had installed only as their dependencies (the runtime, the
    # stand-in): clean_requirements_on_remove.
    assert status(out, "left") == 0
    assert "ksplice-update-" not in output(out, "left")
