"""The runtime (apply, undo, view, reapply, the boot unit, the crash-loop guard) on the real
Debian kernel, in the full Debian userland with systemd, the tool installed inside the guest.

Updates come from the real `create` pipeline, built once per session. Stacking: until create
has --series, B's "built on A" is declared by rewriting the manifest.json of a real update
(depends_on: [A]); its module and sha256 stay the real ones.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from ksplice_pkg.compile.kbuild import PreparedTree, build_external_module, default_jobs
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import VmError
from ksplice_pkg.runtime.errors import (
    DependencyError,
    IntegrityError,
    NotFoundError,
    TransitionError,
    WrongKernelError,
)
from tests.lab.runtime_guest import (
    PRELUDE,
    make_update,
    output,
    reasons,
    rewritten,
    states,
    status,
    tar_dir,
    tool_files,
    view_json,
)
from tests.lab.test_create import LOADAVG_PID_MAX_PATCH
from tests.lab.updates import Update
from tests.lab.userland import image_for, new_overlay, run_userland

# A: the built-in example (/proc/cmdline gains a "ksplice: " prefix).
A_PATCH = (
    Path(__file__).resolve().parents[2] / "ksplice_pkg/examples/proc-cmdline.patch"
).read_text()
# B: /proc/loadavg also shows pid_max (declared as built on A, see the module docstring).
B_PATCH = LOADAVG_PID_MAX_PATCH

# C, independent: /proc/version starts with a marker.
C_PATCH = """\
--- a/fs/proc/version.c
+++ b/fs/proc/version.c
@@ -9,6 +9,7 @@
 
 static int version_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "ksplice-c ");
 	seq_printf(m, linux_proc_banner,
 		utsname()->sysname,
 		utsname()->release,
"""

# The crash-loop guard's test update: reading /proc/uptime oopses (a NULL write the compiler
# cannot see through), and a unit of the test's reads it at every boot.
CRASH_PATCH = """\
--- a/fs/proc/uptime.c
+++ b/fs/proc/uptime.c
@@ -15,7 +15,9 @@
 	struct timespec64 idle;
 	u64 idle_nsec;
 	u32 rem;
 	int i;
+	int *volatile crash = NULL;
 
+	*crash = 1;
 	idle_nsec = 0;
 	for_each_possible_cpu(i) {
 		struct kernel_cpustat kcs;
"""

# The stalled transition's update: msleep() sleeps one jiffy longer.
MSLEEP_PATCH = """\
--- a/kernel/time/timer.c
+++ b/kernel/time/timer.c
@@ -2318,7 +2318,7 @@
  */
 void msleep(unsigned int msecs)
 {
-	unsigned long timeout = msecs_to_jiffies(msecs) + 1;
+	unsigned long timeout = msecs_to_jiffies(msecs) + 2;
 
 	while (timeout)
 		timeout = schedule_timeout_uninterruptible(timeout);
"""

# A kthread asleep in msleep() for 10 minutes, TASK_UNINTERRUPTIBLE: livepatch's fake signal
# does not wake it, so a patch of msleep cannot switch it.
SLEEPER_C = """\
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>

static int ksplice_sleeper(void *data)
{
	msleep(600000);
	return 0;
}

static int __init sleeper_init(void)
{
	return PTR_ERR_OR_ZERO(kthread_run(ksplice_sleeper, NULL, "ksplice_sleeper"));
}
module_init(sleeper_init);
MODULE_LICENSE("GPL");
"""


class Updates:
    def __init__(self, root: Path, artifacts: KernelArtifacts, kallsyms: Path) -> None:
        self.root = root
        self.artifacts = artifacts
        self.kallsyms = kallsyms
        self._built: dict[str, Update] = {}

    def get(self, update_id: str, patch: str) -> Update:
        if update_id not in self._built:
            self._built[update_id] = make_update(
                self.artifacts, self.kallsyms, patch, self.root / update_id, update_id
            )
        return self._built[update_id]


@pytest.fixture(scope="module")
def updates(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path_factory: pytest.TempPathFactory
) -> Updates:
    return Updates(tmp_path_factory.mktemp("runtime-updates"), artifacts, kallsyms)


@pytest.fixture(scope="module")
def stack(updates: Updates, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tarballs of A, B (built on A) and C."""
    out = tmp_path_factory.mktemp("stack")
    a = updates.get("rta", A_PATCH)
    b = rewritten(updates.get("rtb", B_PATCH), out, depends_on=["rta"])
    c = updates.get("rtc", C_PATCH)
    return {
        "rta.tar.gz": a.tarball,
        "rtb.tar.gz": tar_dir(b, out / "rtb.tar.gz"),
        "rtc.tar.gz": c.tarball,
    }


def boot(
    artifacts: KernelArtifacts,
    cache: Path,
    script: str,
    files: dict[str, Path],
    overlay: Path | None = None,
    append: str = "",
) -> dict[str, bytes]:
    result = run_userland(
        artifacts,
        cache,
        PRELUDE + script,
        files={**tool_files(), **files},
        overlay=overlay,
        append=append,
    )
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    return result.outputs


def link_chain_tarball(path: Path, top: str) -> Path:
    """An update tarball whose links reach out of it: `q -> .`, a link through q/q/.. that
    climbs to /tmp/escaped, then a file written through that link."""
    with tarfile.open(path, "w:gz") as tar:
        for name, target in (("q", "."), ("l", "q/q/q/" + "../" * 12 + "tmp/escaped")):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        data = b"written through a link\n"
        info = tarfile.TarInfo(f"{top}/l")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def patch_log(outputs: dict[str, bytes], name: str) -> list[tuple[str, str]]:
    """The kernel's own livepatch lines, in order: what happened, in the kernel's words."""
    return re.findall(r"livepatch: '(\w+)': (\w+ \w+)", output(outputs, name))


APPLY_VIEW_UNDO = """
install_tool
rc view-empty ksplice-pkg view --json
cat /proc/cmdline > "$OUT/cmdline-before"
rc apply-b-first ksplice-pkg apply rtb.tar.gz
rc apply-a ksplice-pkg apply rta.tar.gz
cat /proc/cmdline > "$OUT/cmdline-a"
rc apply-a-again ksplice-pkg apply rta.tar.gz
echo 54321 > /proc/sys/kernel/pid_max
rc apply-b ksplice-pkg apply rtb.tar.gz
cat /proc/loadavg > "$OUT/loadavg-b"
rc view-ab ksplice-pkg view --json
rc view-classic ksplice-view
rc undo-a ksplice-pkg undo rta
cat /proc/cmdline > "$OUT/cmdline-after-refusal"
rc other-release ksplice-pkg apply other-release
rc other-build ksplice-pkg apply other-build
rc tampered ksplice-apply ./tampered
# Said as an id, `tampered` names an installed update, never the directory planted here.
rc planted ksplice-apply tampered
# Ids that are paths delete nothing; an archive with links writes nothing.
mkdir -p /tmp/victim && echo precious > /tmp/victim/keep
rc undo-path ksplice-pkg undo /tmp/victim
rc undo-climb ksplice-pkg undo ../../../../../tmp/victim
rc uninstall-path ksplice-pkg uninstall ../../../../../tmp/victim
cat /tmp/victim/keep > "$OUT/victim"
rc evil ksplice-pkg install evil.tar.gz
ls /tmp > "$OUT/tmp-after-evil"
python3 -c 'import sys, tarfile; print(sys.version.split()[0], hasattr(tarfile, "data_filter"))' \
    > "$OUT/python"
ls /sys/kernel/livepatch > "$OUT/livepatch-after-refusals"
rc view-file ksplice-pkg view --json --file rtc.tar.gz
rc undo-nosuch ksplice-pkg undo nosuch
dmesg -c > /dev/null
rc undo-all ksplice-undo --all
dmesg > "$OUT/dmesg-undo.out"
cat /proc/cmdline > "$OUT/cmdline-restored"
rc view-after ksplice-pkg view --json
ls /sys/kernel/livepatch > "$OUT/livepatch-after"
rc install-c ksplice-pkg install rtc.tar.gz
rc apply-c ksplice-pkg apply rtc
cat /proc/version > "$OUT/version-c"
rc uninstall-c ksplice-pkg uninstall rtc
cat /proc/version > "$OUT/version-uninstalled"
ls /sys/kernel/livepatch /usr/lib/ksplice-pkg/updates/$(uname -r) > "$OUT/after-uninstall"
"""


def test_apply_view_undo_stacking(
    artifacts: KernelArtifacts,
    cache: Path,
    updates: Updates,
    stack: dict[str, Path],
    tmp_path: Path,
) -> None:
    a = updates.get("rta", A_PATCH)
    assert a.manifest["target_build_id"], "the premise: create recorded the target's build-id"
    other_release = rewritten(a, tmp_path / "r", kernel_release=artifacts.release + "-other")
    other_build = rewritten(a, tmp_path / "b", target_build_id="00" * 20)
    tampered = rewritten(updates.get("rtc", C_PATCH), tmp_path / "t")
    ko = tampered / "ksplice_rtc.ko"
    data = bytearray(ko.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ko.write_bytes(bytes(data))
    files = {
        **stack,
        "evil.tar.gz": link_chain_tarball(tmp_path / "evil.tar.gz", "ksplice-rtc"),
        **{f"other-release/{p.name}": p for p in other_release.iterdir()},
        **{f"other-build/{p.name}": p for p in other_build.iterdir()},
        **{f"tampered/{p.name}": p for p in tampered.iterdir()},
    }
    out = boot(artifacts, cache, APPLY_VIEW_UNDO, files)

    assert status(out, "view-empty") == 0
    assert states(view_json(out, "view-empty")) == {}
    # B before A: refused, nothing loaded.
    assert status(out, "apply-b-first") == DependencyError.exit_code, output(out, "apply-b-first")
    assert "rta" in output(out, "apply-b-first")
    assert status(out, "apply-a") == 0, output(out, "apply-a")
    before = (out["cmdline-before"]).decode()
    assert out["cmdline-a"].decode() == "ksplice: " + before
    assert status(out, "apply-a-again") == 0
    assert "already applied" in output(out, "apply-a-again")
    assert status(out, "apply-b") == 0, output(out, "apply-b")
    assert out["loadavg-b"].decode().split()[4].endswith("/54321")

    view = view_json(out, "view-ab")
    assert states(view) == {"rta": "applied", "rtb": "applied"}
    assert view["effective_version"] == f"{artifacts.release}+rtb"
    by_id = {u["id"]: u for u in view["updates"]}  # type: ignore[attr-defined]
    assert by_id["rta"]["patched"] == ["vmlinux:cmdline_proc_show"]
    assert by_id["rtb"]["depends_on"] == ["rta"]
    assert "test update rta" in output(out, "view-classic")
    assert f"{artifacts.release}+rtb" in output(out, "view-classic")

    assert status(out, "undo-a") == DependencyError.exit_code
    assert "rtb" in output(out, "undo-a")
    assert out["cmdline-after-refusal"] == out["cmdline-a"]

    assert status(out, "other-release") == WrongKernelError.exit_code
    assert artifacts.release + "-other" in output(out, "other-release")
    assert status(out, "other-build") == WrongKernelError.exit_code
    assert "00" * 20 in output(out, "other-build")
    assert status(out, "tampered") == IntegrityError.exit_code, output(out, "tampered")
    assert "sha256" in output(out, "tampered")
    assert status(out, "planted") == NotFoundError.exit_code, output(out, "planted")
    for name in ("undo-path", "undo-climb", "uninstall-path"):
        assert status(out, name) == 1, output(out, name)
        assert "is not an update id" in output(out, name)
    assert out["victim"] == b"precious\n"
    assert status(out, "evil") == IntegrityError.exit_code, output(out, "evil")
    assert "escaped" not in out["tmp-after-evil"].decode().split()
    # All of this ran on Debian 12's own Python, which has no tarfile.data_filter.
    version, has_filter = out["python"].decode().split()
    assert version.startswith("3.11.") and has_filter == "False", version
    # Refused before loading: only A and B are in the kernel.
    assert out["livepatch-after-refusals"].decode().split() == ["ksplice_rta", "ksplice_rtb"]

    info = view_json(out, "view-file")
    assert info["id"] == "rtc" and info["for_this_kernel"] is True
    assert info["patched"] == ["vmlinux:version_proc_show"]
    assert status(out, "undo-nosuch") == NotFoundError.exit_code

    assert status(out, "undo-all") == 0, output(out, "undo-all")
    # The kernel says it: B's patch was taken away before A's.
    done = [p for p, what in patch_log(out, "dmesg-undo") if what == "unpatching complete"]
    assert done == ["ksplice_rtb", "ksplice_rta"], output(out, "dmesg-undo")
    assert out["cmdline-restored"] == out["cmdline-before"]
    assert out["livepatch-after"].decode().split() == []
    view = view_json(out, "view-after")
    assert states(view) == {}
    assert view["effective_version"] == artifacts.release

    # install, apply by id, uninstall (which undoes first).
    assert status(out, "install-c") == 0 and status(out, "apply-c") == 0, output(out, "apply-c")
    assert out["version-c"].decode().startswith("ksplice-c ")
    assert status(out, "uninstall-c") == 0, output(out, "uninstall-c")
    assert not out["version-uninstalled"].decode().startswith("ksplice-c ")
    assert "rtc" not in out["after-uninstall"].decode()


FIRST_BOOT_INSTALL = """
install_tool
for u in rta rtb rtc; do rc install-$u ksplice-pkg install $u.tar.gz; done
# The image has no man-db: the units' Documentation= pages are checked on the host
# (tests/unit/runtime/test_units.py).
rc verify systemd-analyze verify --man=no /etc/systemd/system/ksplice-pkg.service \
    /etc/systemd/system/ksplice-pkg-stable.service
rc view-installed ksplice-pkg view --json
ls /sys/kernel/livepatch > "$OUT/livepatch"
"""

AFTER_BOOT = """
rc view ksplice-pkg view --json
ls /sys/kernel/livepatch > "$OUT/livepatch"
cat /proc/cmdline > "$OUT/cmdline"
cat /proc/version > "$OUT/version"
dmesg > "$OUT/dmesg.out"
journalctl -b -o cat -u ksplice-pkg.service > "$OUT/journal.out" 2>&1
systemctl is-active ksplice-pkg.service > "$OUT/active" 2>&1
systemctl show -p ConditionResult --value ksplice-pkg.service > "$OUT/condition"
"""


def test_reboot_reapply(
    artifacts: KernelArtifacts, cache: Path, stack: dict[str, Path], tmp_path: Path
) -> None:
    overlay = new_overlay(image_for(artifacts, cache), tmp_path / "disk.qcow2")
    first = boot(artifacts, cache, FIRST_BOOT_INSTALL, stack, overlay)
    for u in ("rta", "rtb", "rtc"):
        assert status(first, f"install-{u}") == 0, output(first, f"install-{u}")
    assert status(first, "verify") == 0 and output(first, "verify") == "", output(first, "verify")
    assert set(states(view_json(first, "view-installed")).values()) == {"installed"}
    assert first["livepatch"].decode().split() == []

    # Boot 2: the unit applied all three, A before B; then A's module gets damaged.
    second = boot(
        artifacts,
        cache,
        AFTER_BOOT
        + "wait_stable\n"
        + "ko=/usr/lib/ksplice-pkg/updates/$(uname -r)/rta/ksplice_rta.ko\n"
        + 'printf "\\377\\377\\377\\377" | dd of="$ko" bs=1 seek=4096 conv=notrunc 2>/dev/null\n',
        {},
        overlay,
    )
    assert states(view_json(second, "view")) == dict.fromkeys(("rta", "rtb", "rtc"), "applied"), (
        output(second, "view") + output(second, "journal")
    )
    assert second["livepatch"].decode().split() == ["ksplice_rta", "ksplice_rtb", "ksplice_rtc"]
    assert second["cmdline"].decode().startswith("ksplice: ")
    assert second["version"].decode().startswith("ksplice-c ")
    started = [p for p, what in patch_log(second, "dmesg") if what == "starting patching"]
    assert started.index("ksplice_rta") < started.index("ksplice_rtb"), started
    assert second["active"].decode().strip() == "active"

    # Boot 3: A fails its integrity check, B is skipped because of it, C is applied.
    third = boot(artifacts, cache, AFTER_BOOT, {}, overlay)
    view = view_json(third, "view")
    assert states(view) == {"rta": "failed", "rtb": "skipped", "rtc": "applied"}, output(
        third, "view"
    )
    assert "sha256" in reasons(view)["rta"]
    assert "rta" in reasons(view)["rtb"]
    assert third["livepatch"].decode().split() == ["ksplice_rtc"]
    journal = output(third, "journal")
    assert re.search(r"rta: failed.*sha256", journal), journal
    assert re.search(r"rtb: skipped.*rta", journal), journal
    assert third["active"].decode().strip() == "active"  # the unit did not fail the boot

    # Boot 4: the opt-out switch: nothing is loaded though C is fine.
    fourth = boot(artifacts, cache, AFTER_BOOT, {}, overlay, append="ksplice.reapply=0")
    assert fourth["livepatch"].decode().split() == []
    assert fourth["condition"].decode().strip() == "no"
    assert not fourth["cmdline"].decode().startswith("ksplice: ")


CRASH_FIRST_BOOT = """
install_tool
rc install-c ksplice-pkg install rtc.tar.gz
rc install-crash ksplice-pkg install rtcrash.tar.gz
rc apply-c ksplice-pkg apply rtc
wait_stable
cat > /etc/systemd/system/lab-read-uptime.service <<EOF
[Unit]
Description=Read /proc/uptime at boot, after the updates are applied
After=ksplice-pkg.service
[Service]
Type=oneshot
ExecStart=/bin/cat /proc/uptime
[Install]
WantedBy=multi-user.target
EOF
systemctl enable lab-read-uptime.service
"""

CRASH_THIRD_BOOT = (
    AFTER_BOOT
    + """
cat /proc/uptime > "$OUT/uptime"
rc clear ksplice-pkg reapply --clear
rc view-cleared ksplice-pkg view --json
rc undo-crash ksplice-pkg undo rtcrash
"""
)


def test_crash_loop_guard(
    artifacts: KernelArtifacts,
    cache: Path,
    updates: Updates,
    stack: dict[str, Path],
    tmp_path: Path,
) -> None:
    crash = updates.get("rtcrash", CRASH_PATCH)
    files = {"rtc.tar.gz": stack["rtc.tar.gz"], "rtcrash.tar.gz": crash.tarball}
    overlay = new_overlay(image_for(artifacts, cache), tmp_path / "disk.qcow2")
    first = boot(artifacts, cache, CRASH_FIRST_BOOT, files, overlay)
    assert status(first, "apply-c") == 0, output(first, "apply-c")

    # Boot 2: the unit applies the crashing update, the boot reads /proc/uptime: oops, panic.
    with pytest.raises(VmError) as crashed:
        run_userland(artifacts, cache, "true", overlay=overlay)
    # The oops is in the update's code (its module is named on the RIP line).
    message = crashed.value.message
    assert "NULL pointer dereference" in message, message[-3000:]
    assert re.search(r"RIP: 0010:\S+ \[ksplice_rtcrash\]", message), message[-3000:]

    # Boot 3: it is quarantined and skipped, C is applied, the boot completes.
    third = boot(artifacts, cache, CRASH_THIRD_BOOT, {}, overlay)
    view = view_json(third, "view")
    assert states(view) == {"rtc": "applied", "rtcrash": "quarantined"}, output(third, "view")
    assert "went down" in reasons(view)["rtcrash"]
    assert third["livepatch"].decode().split() == ["ksplice_rtc"]
    assert float(third["uptime"].decode().split()[0]) > 0
    # --clear lets it back in (and the test takes it out again before anything reads uptime).
    assert status(third, "clear") == 0, output(third, "clear")
    assert states(view_json(third, "view-cleared"))["rtcrash"] == "applied"
    assert status(third, "undo-crash") == 0


STALL = """
install_tool
insmod sleeper.ko
sleep 1
rc stall ksplice-pkg apply rtstall.tar.gz --timeout 8 --signal-after 2
ls /sys/kernel/livepatch > "$OUT/livepatch"
cat /proc/modules > "$OUT/modules"
rc view ksplice-pkg view --json
rc apply-a ksplice-pkg apply rta.tar.gz
rc undo-a ksplice-pkg undo rta
"""


def test_stalled_transition_is_reversed(
    artifacts: KernelArtifacts,
    cache: Path,
    tree: PreparedTree,
    updates: Updates,
    stack: dict[str, Path],
    tmp_path: Path,
) -> None:
    stall = updates.get("rtstall", MSLEEP_PATCH)
    assert stall.patched_names == ["msleep"]
    moddir = tmp_path / "sleeper"
    moddir.mkdir()
    (moddir / "sleeper.c").write_text(SLEEPER_C)
    (moddir / "Kbuild").write_text("obj-m := sleeper.o\n")
    (sleeper,) = build_external_module(tree, moddir, default_jobs())
    files = {
        "sleeper.ko": sleeper,
        "rtstall.tar.gz": stall.tarball,
        "rta.tar.gz": stack["rta.tar.gz"],
    }
    out = boot(artifacts, cache, STALL, files)
    text = output(out, "stall")
    assert status(out, "stall") == TransitionError.exit_code, text
    assert "ksplice_sleeper" in text and "msleep" in text, text
    assert out["livepatch"].decode().split() == []
    assert "ksplice_rtstall" not in out["modules"].decode()
    assert states(view_json(out, "view")) == {}
    # Healthy: another update goes in and out.
    assert status(out, "apply-a") == 0, output(out, "apply-a")
    assert status(out, "undo-a") == 0
