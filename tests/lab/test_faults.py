"""Faults that real machines meet, injected while hotpatch packages come and go: in the lab's
Debian userland with systemd, on the real Debian kernel, the tool installed from its own .deb.

Each test ends with the same question: is anything lost, and is what the administrator sees
(`ksplice-pkg view`, /sys/kernel/livepatch, dpkg's database, the installed tree) the truth?

- A clean `systemctl poweroff` right after the first `apt install`, as an administrator does
  it, and after a manual apply in a boot with ksplice.reapply=0: nothing is quarantined.
- A power cut is qemu killed from the host (ksplice_pkg/vm/qemu.py) at a marker the guest
  prints on its console and then blocks (lab_cut): the cut lands exactly there. The points are
  reached through hooks that live in /run, so the cut takes them away with the guest's memory:
  a dpkg post-invoke hook (the hotpatch unpacked, not configured) and a wrapper bind-mounted
  over /usr/bin/ksplice-pkg (the hotpatch's postinst before or after its apply).
- A full file system is a tiny tmpfs mounted on /usr/lib/ksplice-pkg or /var/lib/ksplice-pkg.
- A module the kernel refuses: the kernel booted with module.sig_enforce=1 (updates are not
  signed; Debian's own modules are and still load).

Updates: A and C change /proc/cmdline ("A: ", "C: "; C is cumulative, built after A, so its
package replaces A's); B is independent (/proc/version starts with "ksplice-c ").
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.package import PackageFormat, build_packages
from tests.lab.runtime_guest import PRELUDE as RUNTIME_PRELUDE
from tests.lab.runtime_guest import output, status
from tests.lab.test_package import MAINTAINER, stand_in_deb
from tests.lab.test_runtime import C_PATCH as VERSION_PATCH
from tests.lab.test_series import A_LINE, C_LINE, ORIGINAL, _cmdline_patch
from tests.lab.updates import build_update
from tests.lab.userland import (
    Interrupted,
    Poweroff,
    cut_power,
    image_for,
    new_overlay,
    run_userland,
)
from tests.unit.package.own import build_debs

ID_A, ID_B, ID_C = "fla", "flb", "flc"
CUT = "ksplice-lab-cut:"


@dataclass(frozen=True)
class Kit:
    artifacts: KernelArtifacts
    cache: Path
    work: Path
    files: dict[str, Path]  # own debs, hotpatch debs, the stand-in, B's tarball
    timings: dict[str, float]  # boot name -> seconds, for the report

    def overlay(self, name: str, base: Path | None = None) -> Path:
        return new_overlay(base or image_for(self.artifacts, self.cache), self.work / name)

    def boot(
        self,
        script: str,
        overlay: Path,
        name: str,
        *,
        append: str = "",
        poweroff: Poweroff = Poweroff.FORCED,
    ) -> dict[str, bytes]:
        start = time.monotonic()
        result = run_userland(
            self.artifacts,
            self.cache,
            PRELUDE + script,
            files=self.files,
            overlay=overlay,
            append=append,
            poweroff=poweroff,
        )
        self.timings[name] = time.monotonic() - start
        assert result.status == 0, f"{name}: {result.console[-4000:]}"
        assert result.crash_lines() == [], result.crash_lines()
        return result.outputs

    def cut(self, script: str, overlay: Path, point: str | None, name: str) -> Interrupted:
        """Boot, run script, cut the power when it reaches `point` (lab_cut); None: the
        script brings the guest down itself (a crash, a reset)."""
        start = time.monotonic()
        ended = cut_power(
            self.artifacts,
            self.cache,
            PRELUDE + script,
            f"{CUT} {point}" if point else None,
            files=self.files,
            overlay=overlay,
        )
        self.timings[name] = time.monotonic() - start
        assert ended.power_cut == (point is not None), f"{name}: {ended.console[-3000:]}"
        return ended


@pytest.fixture(scope="module")
def kit(
    artifacts: KernelArtifacts,
    cache: Path,
    kallsyms: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Kit]:
    work = tmp_path_factory.mktemp("faults")
    a = build_update(artifacts, kallsyms, _cmdline_patch(ORIGINAL, A_LINE), work / ID_A, ID_A)
    b = build_update(artifacts, kallsyms, VERSION_PATCH, work / ID_B, ID_B)
    c = build_update(
        artifacts, kallsyms, _cmdline_patch(ORIGINAL, C_LINE), work / ID_C, ID_C, replace=True
    )
    hotpatches = build_packages(
        [a.tarball, b.tarball, c.tarball],
        PackageFormat.DEB,
        work / "hotpatch-debs",
        maintainer=MAINTAINER,
    )
    stand_in = stand_in_deb(f"linux-image-{artifacts.release}", work / "stand-in")
    own = build_debs(work / "own-debs")
    files = {p.name: p for p in [*own, *hotpatches, stand_in]}
    files[f"{ID_B}.tar.gz"] = b.tarball
    timings: dict[str, float] = {}
    yield Kit(artifacts, cache, work, files, timings)
    # The measured column of the README's Reliability table.
    print("\nfault boots (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))


# After RUNTIME_PRELUDE (rc NAME CMD...): the helpers of every test here.
PRELUDE = (
    RUNTIME_PRELUDE
    + f"A={ID_A} B={ID_B} C={ID_C}\n"
    + r"""
export DEBIAN_FRONTEND=noninteractive
release=$(uname -r)
deb() { echo ./ksplice-update-$release-${1}_*.deb; }
install_runtime() {
    rc runtime apt-get install -y --no-install-recommends ./linux-image-*.deb \
        ./ksplice-pkg-runtime_*.deb
}
# seen NAME: what an administrator sees, from every side, into $OUT/NAME.*
seen() {
    ls /sys/kernel/livepatch > "$OUT/$1.live"
    ksplice-pkg view --json > "$OUT/$1.view" 2>&1
    dpkg-query -W -f '${Package} ${db:Status-Status}\n' 'ksplice-update-*' \
        > "$OUT/$1.dpkg" 2>/dev/null
    ls -a /usr/lib/ksplice-pkg/updates/$release > "$OUT/$1.tree" 2>/dev/null
    find /usr/lib/ksplice-pkg /var/lib/ksplice-pkg -name '*.dpkg-*' -o -name '*.partial' \
        -o -name '.*' > "$OUT/$1.debris" 2>&1
    cat /proc/cmdline /proc/version > "$OUT/$1.proc"
    journalctl -b -o cat -u ksplice-pkg.service > "$OUT/$1.journal" 2>&1
}
# apt_cut POINT APT-ARGS...: apt-get, stopped at POINT for the host to cut the power there:
#   unpacked      dpkg unpacked the package (its post-invoke hook), nothing configured yet;
#   before-apply  a hotpatch's postinst is about to run `ksplice-pkg apply`;
#   after-apply   that apply is done, the postinst has not returned;
#   deferred-undo the runtime's trigger is about to carry out the undos deferred by removals.
# The hooks live in /run: the power cut takes them away with the guest's memory.
apt_cut() {
    mkdir -p /run/lab-bin
    echo "$1" > /run/lab-bin/point
    shift
    cat > /run/lab-bin/ksplice-pkg <<'EOF'
#!/bin/sh
. /usr/local/lib/ksplice-lab/lib.sh
point=$(cat /run/lab-bin/point)
state() {
    echo "ksplice-lab-state: live=$(ls /sys/kernel/livepatch | tr '\n' ,)" \
        "deferred-undo=$(ls /run/ksplice-pkg/deferred-undo 2>/dev/null | tr '\n' ,)" \
        > /dev/ttyS0
}
[ "$point $1" = "before-apply apply" ] && { state; lab_cut "ksplice-lab-cut: $point"; }
[ "$point $1 $2" = "deferred-undo undo --deferred" ] &&
    { state; lab_cut "ksplice-lab-cut: $point"; }
/run/lab-bin/ksplice-pkg.real "$@"
rc=$?
[ "$point $1" = "after-apply apply" ] && { state; lab_cut "ksplice-lab-cut: $point"; }
exit $rc
EOF
    cat > /run/lab-bin/post-invoke <<'EOF'
#!/bin/sh
. /usr/local/lib/ksplice-lab/lib.sh
if [ "$(cat /run/lab-bin/point)" = unpacked ] && [ "$DPKG_HOOK_ACTION" = unpack ]; then
    lab_cut "ksplice-lab-cut: unpacked"
fi
exit 0
EOF
    chmod 755 /run/lab-bin/ksplice-pkg /run/lab-bin/post-invoke
    # dpkg runs maintainer scripts with a PATH of its own: the wrapper is bind-mounted over the
    # command instead, a mount that the power cut takes away too.
    cp /usr/bin/ksplice-pkg /run/lab-bin/ksplice-pkg.real
    mount --bind /run/lab-bin/ksplice-pkg /usr/bin/ksplice-pkg
    apt-get -o DPkg::Options::=--post-invoke=/run/lab-bin/post-invoke "$@" \
        > /run/lab-bin/apt.log 2>&1
    # A fresh open of the console: serial-getty's vhangup() may have cut the script's own.
    { echo "lab: apt-get returned $? without reaching the cut:"; cat /run/lab-bin/apt.log; } \
        > /dev/ttyS0
    exit 1
}
"""
)


@dataclass(frozen=True)
class Seen:
    """One snapshot of what the administrator sees."""

    live: list[str]  # update ids whose livepatch is in /sys/kernel/livepatch
    view: dict[str, str]  # id -> state, from `ksplice-pkg view --json`
    boot_stable: bool
    packages: dict[str, str]  # id -> dpkg's Status of its package
    tree: list[str]  # ids installed under /usr/lib/ksplice-pkg/updates/<release>/
    debris: list[str]  # temporaries left behind (.dpkg-new, .partial, dot-files)
    cmdline: str  # "A", "C" or "" (unpatched): which text /proc/cmdline shows
    version_patched: bool  # B's text in /proc/version
    journal: str


def seen(out: Mapping[str, bytes], name: str) -> Seen:
    def text(suffix: str) -> str:
        return out[f"{name}.{suffix}"].decode(errors="replace")

    view = json.loads(text("view"))
    packages = {}
    for line in text("dpkg").splitlines():
        package, _, state = line.partition(" ")
        packages[package.rsplit("-", 1)[-1]] = state
    cmdline, version = text("proc").splitlines()[:2]
    marker = cmdline[:3] if cmdline[:3] in ("A: ", "C: ") else ""
    return Seen(
        live=sorted(n.removeprefix("ksplice_") for n in text("live").split()),
        view={u["id"]: u["state"] for u in view["updates"]},
        boot_stable=bool(view["boot_stable"]),
        packages=packages,
        tree=sorted(n for n in text("tree").split() if n not in (".", "..")),
        debris=text("debris").split(),
        cmdline=marker.rstrip(": "),
        version_patched=version.startswith("ksplice-c "),
        journal=text("journal"),
    )


def assert_truth(s: Seen, live: set[str], installed: set[str], what: str) -> None:
    """Every side tells the same story: `live` applied, `installed` (a superset) installed."""
    assert set(s.live) == live, (what, s)
    assert {i for i, state in s.view.items() if state == "applied"} == live, (what, s)
    assert set(s.view) == installed | live, (what, s)
    assert {i for i, state in s.packages.items() if state == "installed"} == installed, (what, s)
    assert set(s.tree) == installed, (what, s)
    # No package left half-way (half-installed, unpacked, half-configured, triggers-*).
    assert set(s.packages.values()) <= {"installed", "not-installed", "config-files"}, (what, s)
    assert s.debris == [], (what, s)
    assert s.cmdline == ("C" if ID_C in live else "A" if ID_A in live else ""), (what, s)
    assert s.version_patched == (ID_B in live), (what, s)


def quarantine_lines(journal: str) -> list[str]:
    return [line for line in journal.splitlines() if "quarantined" in line]


# --- 1. a clean shutdown right after the first install ---------------------------------

FIRST_INSTALL = """
rc install apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb $(deb $A)
"""

# Then at once, as an administrator would: only what takes no time before the poweroff (the
# window is 20 s, and `seen` alone runs Python several times).
RIGHT_AFTER = """
ls /sys/kernel/livepatch > "$OUT/live"
systemctl is-active ksplice-pkg-shutdown.service > "$OUT/active" 2>&1
"""

# In the next boot: the journal of the one before (the shutdown unit's and the 20 s window's).
PREVIOUS_BOOT = """
journalctl -b -1 -o cat -u ksplice-pkg-shutdown.service -u ksplice-pkg-stable.service \
    > "$OUT/previous" 2>&1
seen boot
"""

REAPPLY_OFF_MANUAL_APPLY = """
rc apply ksplice-pkg apply $A
"""

# The image has no man-db: the units' Documentation= pages are checked on the host.
UNITS = """
rc verify systemd-analyze verify --man=no /lib/systemd/system/ksplice-pkg-shutdown.service
systemctl is-enabled ksplice-pkg-shutdown.service > "$OUT/enabled" 2>&1
"""

NEXT_BOOT = """
seen boot
"""


def marks(out: Mapping[str, bytes]) -> list[str]:
    """What marked the boot before stable: the shutdown unit or the 20 s window."""
    return [ln for ln in out["previous"].decode().splitlines() if ln.startswith("stable (")]


def test_clean_poweroff_right_after_install_or_manual_apply_quarantines_nothing(
    kit: Kit,
) -> None:
    """`apt install ksplice-pkg-runtime ./hotpatch.deb` then `systemctl poweroff` at once; then a
    boot with ksplice.reapply=0, `ksplice-pkg apply` by hand, `systemctl poweroff` at once."""
    overlay = kit.overlay("clean.qcow2")
    out = kit.boot(FIRST_INSTALL + RIGHT_AFTER, overlay, "install+poweroff",
                   poweroff=Poweroff.CLEAN)  # fmt: skip
    assert status(out, "install") == 0, output(out, "install")
    assert out["live"] == f"ksplice_{ID_A}\n".encode(), output(out, "install")
    # The runtime's postinst started the unit whose stop marks the boot stable.
    assert out["active"] == b"active\n", out["active"]

    out = kit.boot(
        PREVIOUS_BOOT + REAPPLY_OFF_MANUAL_APPLY + RIGHT_AFTER,
        overlay,
        "reapply=0+apply+poweroff",
        append="ksplice.reapply=0",
        poweroff=Poweroff.CLEAN,
    )
    # The boot before was marked by its clean shutdown, in one line, not by the window.
    assert marks(out) == [f"stable (clean shutdown): {ID_A}"], out["previous"].decode()
    boot = seen(out, "boot")
    assert boot.live == [] and boot.view == {ID_A: "installed"}, boot
    assert status(out, "apply") == 0, output(out, "apply")
    # Applying it judged the boot before: it ended cleanly, nothing is quarantined.
    assert "quarantined" not in output(out, "apply"), output(out, "apply")
    assert out["live"] == f"ksplice_{ID_A}\n".encode(), output(out, "apply")

    out = kit.boot(PREVIOUS_BOOT + UNITS, overlay, "next boot")
    assert marks(out) == [f"stable (clean shutdown): {ID_A}"], out["previous"].decode()
    after = seen(out, "boot")
    assert quarantine_lines(after.journal) == [], after.journal
    assert_truth(after, {ID_A}, {ID_A}, "reapplied at the next boot")
    assert status(out, "verify") == 0 and output(out, "verify") == "", output(out, "verify")
    assert out["enabled"] == b"enabled\n", out["enabled"]


# --- 2. power cuts during apt install of a hotpatch ------------------------------------

RUNTIME_ONLY = """
install_runtime
"""

CUT_INSTALL = """
apt_cut {point} install -y --no-install-recommends $(deb $A)
"""

RECOVER = """
seen boot
rc configure dpkg --configure -a
seen recovered
"""


@pytest.fixture(scope="module")
def runtime_only(kit: Kit) -> Path:
    """A machine with the runtime installed and nothing else, cleanly powered off."""
    base = kit.overlay("runtime-only.qcow2")
    out = kit.boot(RUNTIME_ONLY, base, "runtime only", poweroff=Poweroff.CLEAN)
    assert status(out, "runtime") == 0, output(out, "runtime")
    return base


# What the boot after the cut shows before any recovery: dpkg's state of A, whether the unit
# applied it. After the apply, the guard cannot tell the cut from a crash the update caused:
# it quarantines A as designed, and the postinst's apply, run again by `dpkg --configure -a`,
# brings it back (an explicit apply clears a quarantine).
AT_BOOT = {
    "unpacked": ("unpacked", "applied"),
    "before-apply": ("half-configured", "applied"),
    "after-apply": ("half-configured", "quarantined"),
}


@pytest.mark.parametrize("point", list(AT_BOOT))
def test_power_cut_during_apt_install(kit: Kit, runtime_only: Path, point: str) -> None:
    overlay = kit.overlay(f"cut-{point}.qcow2", runtime_only)
    ended = kit.cut(CUT_INSTALL.format(point=point), overlay, point, f"cut at {point}")
    if point != "unpacked":
        live = f"ksplice_{ID_A}," if point == "after-apply" else ""
        assert f"ksplice-lab-state: live={live} " in ended.console, ended.console[-2000:]

    out = kit.boot(RECOVER, overlay, f"recover from {point}")
    package_state, unit_state = AT_BOOT[point]
    boot = seen(out, "boot")
    assert boot.packages == {ID_A: package_state}, boot
    assert boot.view == {ID_A: unit_state}, boot
    assert len(quarantine_lines(boot.journal)) == (unit_state == "quarantined"), boot.journal
    assert status(out, "configure") == 0, output(out, "configure")
    assert_truth(seen(out, "recovered"), {ID_A}, {ID_A}, f"recovered from {point}")


# --- 3. a power cut during a cumulative upgrade, the deferred undo pending --------------

INSTALL_A = """
rc install-a apt-get install -y --no-install-recommends $(deb $A)
"""

CUT_UPGRADE = """
apt_cut {point} install -y --no-install-recommends $(deb $C)
"""

RECOVER_UPGRADE = (
    RECOVER
    + """
rc apply-c ksplice-pkg apply $C
seen applied
"""
)


@pytest.fixture(scope="module")
def with_a(kit: Kit, runtime_only: Path) -> Path:
    """The runtime and A installed, A live then cleanly powered off."""
    base = kit.overlay("with-a.qcow2", runtime_only)
    out = kit.boot(INSTALL_A, base, "install A", poweroff=Poweroff.CLEAN)
    assert status(out, "install-a") == 0, output(out, "install-a")
    return base


# Cut in C's postinst before its apply: A is still live, its undo deferred (apt removed its
# package first). Cut in the runtime's trigger: C's apply has superseded A live (A's deferred
# undo still pending), moments ago: the guard quarantines C as it would after a crash, and
# `dpkg --configure -a` has no postinst of C left to run; the administrator sees the quarantine
# in `view` and lets C back in with `ksplice-pkg apply` (as its reason says).
UPGRADE_CUTS = {
    "before-apply": (f"live=ksplice_{ID_A}, deferred-undo={ID_A}.json,", "applied"),
    "deferred-undo": (f"live=ksplice_{ID_C}, deferred-undo={ID_A}.json,", "quarantined"),
}


@pytest.mark.parametrize("point", list(UPGRADE_CUTS))
def test_power_cut_during_cumulative_upgrade(kit: Kit, with_a: Path, point: str) -> None:
    overlay = kit.overlay(f"cut-upgrade-{point}.qcow2", with_a)
    ended = kit.cut(CUT_UPGRADE.format(point=point), overlay, point, f"upgrade cut at {point}")
    state, at_boot = UPGRADE_CUTS[point]
    assert f"ksplice-lab-state: {state}" in ended.console, ended.console[-2000:]

    out = kit.boot(RECOVER_UPGRADE, overlay, f"recover the upgrade from {point}")
    boot = seen(out, "boot")
    # At boot, A's files are gone and C's are there: the unit applied C alone, or skipped it.
    assert boot.view == {ID_C: at_boot} and boot.live == ([ID_C] if at_boot == "applied" else [])
    assert len(quarantine_lines(boot.journal)) == (at_boot == "quarantined"), boot.journal
    assert status(out, "configure") == 0, output(out, "configure")
    recovered = seen(out, "recovered")
    if at_boot == "quarantined":
        assert recovered.view == {ID_C: "quarantined"} and recovered.live == [], recovered
        assert recovered.packages == {ID_C: "installed"}, recovered
    else:
        assert_truth(recovered, {ID_C}, {ID_C}, f"recovered from {point}")
    assert status(out, "apply-c") == 0, output(out, "apply-c")
    assert_truth(seen(out, "applied"), {ID_C}, {ID_C}, f"C applied after {point}")


# --- 4. power cuts within the stability window, twice in a row --------------------------

INSTALL_STABLE = """
install_runtime
rc install-a apt-get install -y --no-install-recommends $(deb $A)
rc stable wait_stable
"""

# The unit reapplied A at boot, moments ago: cut the power while the window is still open.
CUT_IN_WINDOW = """
systemctl stop ksplice-pkg-stable.service
if ksplice-pkg view --json | grep -q '"boot_stable": false' &&
    [ -d /sys/kernel/livepatch/ksplice_$A ]; then
    lab_cut "ksplice-lab-cut: in window"
fi
echo "lab: A not live, or the window closed before the script ran"
exit 1
"""


def test_power_cuts_within_the_window_twice_in_a_row(kit: Kit) -> None:
    overlay = kit.overlay("window.qcow2")
    out = kit.boot(INSTALL_STABLE, overlay, "install, stable")
    assert status(out, "stable") == 0, output(out, "stable")
    # A proved stable once: one unclean boot could be an unrelated power loss, two in a row
    # point at it (guard.UNSTABLE_BOOTS_LIMIT).
    kit.cut(CUT_IN_WINDOW, overlay, "in window", "cut in window 1")
    kit.cut(CUT_IN_WINDOW, overlay, "in window", "cut in window 2")

    out = kit.boot(NEXT_BOOT, overlay, "boot after two cuts")
    boot = seen(out, "boot")
    assert boot.live == [] and boot.view == {ID_A: "quarantined"}, boot
    assert boot.packages == {ID_A: "installed"} and boot.tree == [ID_A], boot
    # One line per event.
    (line,) = quarantine_lines(boot.journal)
    assert line.startswith(f"{ID_A}: quarantined: the previous boot"), boot.journal


# A crash (a panic) or a reset (the machine restarts without shutting down) right after the
# first install: the update never proved stable, so one such boot quarantines it.
DOWN_AFTER_INSTALL = """
install_runtime
rc install-a apt-get install -y --no-install-recommends $(deb $A)
[ -d /sys/kernel/livepatch/ksplice_$A ] || exit 1
echo 1 > /proc/sys/kernel/sysrq
echo {key} > /proc/sysrq-trigger
"""


@pytest.mark.parametrize("fault", ["crash", "reset"])
def test_crash_or_reset_right_after_install(kit: Kit, fault: str) -> None:
    overlay = kit.overlay(f"{fault}.qcow2")
    ended = kit.cut(DOWN_AFTER_INSTALL.format(key="c" if fault == "crash" else "b"), overlay,
                    None, f"{fault} after install")  # fmt: skip
    if fault == "crash":
        assert "Kernel panic - not syncing: sysrq triggered crash" in ended.console

    out = kit.boot(NEXT_BOOT, overlay, f"boot after a {fault}")
    boot = seen(out, "boot")
    assert boot.live == [] and boot.view == {ID_A: "quarantined"}, boot
    (line,) = quarantine_lines(boot.journal)
    assert line.startswith(f"{ID_A}: quarantined: the previous boot"), boot.journal


# --- 5. full file systems -----------------------------------------------------------------

FULL = """
mkdir -p /usr/lib/ksplice-pkg /var/lib/ksplice-pkg
mount -t tmpfs -o size=4m,mode=755 lab-usr /usr/lib/ksplice-pkg
mount -t tmpfs -o size=64k,mode=755 lab-var /var/lib/ksplice-pkg
fill() { dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null; sync; }
install_runtime
rc install-a apt-get install -y --no-install-recommends $(deb $A)
seen before

fill /usr/lib/ksplice-pkg
rc apt-usr-full apt-get install -y --no-install-recommends $(deb $B)
seen apt-usr-full
rc install-usr-full ksplice-pkg install $B.tar.gz
seen install-usr-full
rm /usr/lib/ksplice-pkg/fill

fill /var/lib/ksplice-pkg
cp /var/lib/ksplice-pkg/guard.json "$OUT/guard-before"
rc apt-var-full apt-get install -y --no-install-recommends $(deb $B)
seen apt-var-full
rc apply-var-full ksplice-pkg apply $B
seen apply-var-full
cp /var/lib/ksplice-pkg/guard.json "$OUT/guard-after"
rm /var/lib/ksplice-pkg/fill

rc apply-freed ksplice-pkg apply $B
seen freed
"""


def test_full_file_systems(kit: Kit) -> None:
    out = kit.boot(FULL, kit.overlay("full.qcow2"), "full file systems")
    assert status(out, "install-a") == 0, output(out, "install-a")
    assert_truth(seen(out, "before"), {ID_A}, {ID_A}, "before")

    # /usr/lib/ksplice-pkg full: dpkg cannot unpack B, says so, and leaves nothing of it.
    said = output(out, "apt-usr-full")
    assert status(out, "apt-usr-full") != 0 and "No space left on device" in said, said
    assert_truth(seen(out, "apt-usr-full"), {ID_A}, {ID_A}, "apt, /usr/lib full")
    said = output(out, "install-usr-full")
    assert status(out, "install-usr-full") != 0 and "No space left on device" in said, said
    assert "Traceback" not in said and "[(" not in said, said  # one line, no list of errors
    assert_truth(seen(out, "install-usr-full"), {ID_A}, {ID_A}, "install, /usr/lib full")

    # /var/lib/ksplice-pkg full: the guard cannot record the load, so nothing is loaded; the
    # package installs (the update is applied at the next boot) and says why.
    said = output(out, "apt-var-full")
    assert status(out, "apt-var-full") == 0, said
    assert "No space left on device" in said and "could not be applied now" in said, said
    assert_truth(seen(out, "apt-var-full"), {ID_A}, {ID_A, ID_B}, "apt, /var/lib full")
    said = output(out, "apply-var-full")
    assert status(out, "apply-var-full") != 0 and "No space left on device" in said, said
    assert f"{ID_B}: not loaded: the crash-loop guard cannot record" in said, said
    assert "free space on the file system that holds /var/lib/ksplice-pkg" in said, said
    assert_truth(seen(out, "apply-var-full"), {ID_A}, {ID_A, ID_B}, "apply, /var/lib full")
    assert out["guard-after"] == out["guard-before"]

    # Space again: nothing stands in the way.
    assert status(out, "apply-freed") == 0, output(out, "apply-freed")
    assert_truth(seen(out, "freed"), {ID_A, ID_B}, {ID_A, ID_B}, "space freed")


# --- 6. a module the kernel refuses -------------------------------------------------------

SIG_BOOT = """
seen boot
systemctl --failed --plain --no-legend > "$OUT/failed" 2>&1
systemctl is-failed ksplice-pkg.service > "$OUT/unit" 2>&1 || :  # 1: not failed
"""


def test_module_the_kernel_refuses(kit: Kit) -> None:
    overlay = kit.overlay("sig.qcow2")
    enforce = "module.sig_enforce=1"
    script = FIRST_INSTALL + "seen installed\n"
    out = kit.boot(script, overlay, "refused at postinst", append=enforce, poweroff=Poweroff.CLEAN)
    said = output(out, "install")
    assert status(out, "install") == 0, said
    assert "Key was rejected by service" in said and "could not be applied now" in said, said
    installed = seen(out, "installed")
    assert installed.live == [] and installed.packages == {ID_A: "installed"}, installed

    out = kit.boot(SIG_BOOT, overlay, "refused at boot", append=enforce)
    boot = seen(out, "boot")
    assert boot.live == [] and boot.view == {ID_A: "failed"}, boot
    assert f"{ID_A}: failed: the kernel refused" in boot.journal, boot.journal
    # The boot went on: the lab's script ran after multi-user.target; nothing failed.
    assert "ksplice" not in out["failed"].decode(), out["failed"]
    assert out["unit"].decode().strip() == "active", out["unit"]
