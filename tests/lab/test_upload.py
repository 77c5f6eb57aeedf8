"""`build NEW --from OLD` on Debian's real uploads, each proved on the kernel built from OLD.

The uploads are discovered from the archive (tests/lab/uploads.py): the one-fix uploads (one
for ext4, one for nfsd), a `.dsc` pair, and the stable update (marker `upload_stable`: run it
with `-m upload_stable`). Each update is built once per module and shared by its tests.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import KernelArtifacts, fetch
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.vm.capture import capture_kallsyms
from tests.lab import uploads
from tests.lab.runtime_guest import PRELUDE, output, status, tool_files
from tests.lab.uploads import UploadPair
from tests.lab.userland import run_userland

# A change left out is never silent: exit 6 says the update is partial.
PARTIAL = 6
REFUSED = 4


@dataclass(frozen=True)
class Built:
    pair: UploadPair
    artifacts: KernelArtifacts
    exit_code: int
    output: str
    report: dict[str, Any]
    tarball: Path | None
    top: Path | None  # the unpacked ksplice-<id>/

    @property
    def manifest(self) -> dict[str, Any]:
        assert self.top is not None, self.output[-3000:]
        data = json.loads((self.top / "manifest.json").read_text())
        assert isinstance(data, dict)
        return data

    @property
    def module(self) -> Path:
        return self.top_dir / str(self.manifest["module"])

    @property
    def top_dir(self) -> Path:
        assert self.top is not None, self.output[-3000:]
        return self.top

    def files(self) -> dict[str, dict[str, Any]]:
        return {f["path"]: f for f in self.report["files"]}


def target_of(cache: Path, pair: UploadPair) -> KernelArtifacts:
    """The kernel built from OLD, with its real symbol map read in the lab."""
    artifacts = fetch(cache, pair.release)
    if not artifacts.kallsyms.is_file():
        capture_kallsyms(artifacts)
    return artifacts


def build_upload(
    cache: Path, pair: UploadPair, old: Path, new: Path, out: Path, update_id: str
) -> Built:
    """`ksplice-pkg build NEW --from OLD` for the target kernel of pair, as a maintainer runs
    it with the kernel's packages."""
    artifacts = target_of(cache, pair)
    debs = artifacts.root / "debs"
    (image,) = debs.glob(f"linux-image-{artifacts.release}_*.deb")
    (headers,) = debs.glob(f"linux-headers-{artifacts.release}_*.deb")
    report_file = out / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "build", str(new), f"--from={old}", f"--kernel-package={image}",
            f"--headers-package={headers}", f"--system-map={artifacts.kallsyms}",
            "--format=tarball", f"--id={update_id}", f"-o{out}", f"--report={report_file}",
        ],
    )  # fmt: skip
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    tarball = out / f"ksplice-{update_id}.tar.gz"
    top = None
    if tarball.is_file():
        with tarfile.open(tarball) as tar:
            tar.extractall(out, filter="data")
        top = out / f"ksplice-{update_id}"
    return Built(
        pair, artifacts, result.exit_code, result.output, report,
        tarball if tarball.is_file() else None, top,
    )  # fmt: skip


def build_debs(cache: Path, pair: UploadPair, out: Path, update_id: str) -> Built:
    """The pair as linux-source .debs: OLD's is the one fetched with the target kernel."""
    artifacts = target_of(cache, pair)
    (old,) = (artifacts.root / "debs").glob(f"linux-source-*_{pair.old.version}_all.deb")
    new = uploads.source_deb(cache, pair.new.version)
    return build_upload(cache, pair, old, new, out, update_id)


def assert_explained(built: Built) -> None:
    """Exit 0 with nothing left out, or 6 with every change left out given a reason."""
    assert built.exit_code in (0, PARTIAL), built.output[-5000:]
    left = [i for f in built.report["files"] for i in f["left_out"]]
    assert (built.exit_code == PARTIAL) == bool(left), built.output[-5000:]
    assert all(i["reason"] and i["detail"] for i in left), left
    assert built.report["complete"] is (not left)
    assert "left out: a reboot is needed for them" in built.output or not left


def assert_upload_recorded(built: Built) -> None:
    manifest = built.manifest
    assert manifest["replace"] is True
    assert manifest["kernel_release"] == built.pair.release
    upload = manifest["upload"]
    assert (upload["from"], upload["to"]) == (built.pair.old.version, built.pair.new.version)
    assert upload["changelog"], upload


def patched_in(built: Built, directory: str) -> set[str]:
    """The functions the report says the update carries for the changed files under
    directory, checked to be in the manifest too."""
    found = {
        name
        for path, f in built.files().items()
        if path.startswith(directory)
        for name in f["functions"]
    }
    manifest_names = {p["name"] for p in built.manifest["patched"]}
    assert found <= manifest_names, (found, manifest_names)
    return found


# ---- ext4: 6.1.192-1 -> 6.1.192-2 when the issue was written -------------------------------


@pytest.fixture(scope="module")
def ext4(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    pair = uploads.one_fix_pair(cache, uploads.EXT4)
    return build_debs(cache, pair, tmp_path_factory.mktemp("ext4"), "ext4fix")


def test_ext4_upload_is_one_update_of_the_ext4_fix(ext4: Built) -> None:
    assert_explained(ext4)
    assert_upload_recorded(ext4)
    changed = [p for p in ext4.files() if p.startswith("fs/ext4/")]
    assert changed, list(ext4.files())
    assert all(ext4.files()[p]["scope"] == "built-in" for p in changed)
    functions = patched_in(ext4, "fs/ext4/")
    assert functions, ext4.output[-3000:]
    # ext4 is built into vmlinux in Debian's cloud config: every patched function is vmlinux's.
    objects = {p["name"]: p["object"] for p in ext4.manifest["patched"]}
    assert {objects[name] for name in functions} == {"vmlinux"}, objects
    # The update's patch is the upload's ext4 change, applied to the old tree.
    assert "fs/ext4/" in (ext4.top_dir / "patch").read_text()
    assert ext4.report["units_compiled"] >= 1


# Files written and deleted on a freshly made and mounted ext4 filesystem: block allocation
# loads the buddy bitmaps and initialises the groups (mballoc) on every round.
EXT4_WORKLOAD = r"""
ext4_workload() {
    mkdir -p /mnt/ext4
    truncate -s 256M /var/tmp/ext4.img
    mkfs.ext4 -q -F /var/tmp/ext4.img
    mount -o loop /var/tmp/ext4.img /mnt/ext4
    i=0
    while [ $i -lt 300 ]; do
        dd if=/dev/urandom of=/mnt/ext4/f$i bs=4k count=$((i % 32 + 1)) 2>/dev/null
        i=$((i + 1))
    done
    dd if=/dev/zero of=/mnt/ext4/big bs=1M count=96 2>/dev/null
    sync
    find /mnt/ext4 -type f | wc -l
    rm -f /mnt/ext4/f* /mnt/ext4/big
    sync
    echo 3 > /proc/sys/vm/drop_caches
    find /mnt/ext4 -type f | wc -l
    umount /mnt/ext4
    rm -f /var/tmp/ext4.img
}
"""


def test_ext4_update_runs_an_ext4_workload_in_the_real_kernel(ext4: Built, cache: Path) -> None:
    name = str(ext4.manifest["module_name"])
    ko = ext4.module
    script = (
        EXT4_WORKLOAD
        + rf"""
set -e
ext4_workload > "$OUT/before"
insmod {ko.name}
klp_wait_transition {name}
cat /sys/kernel/livepatch/{name}/enabled > "$OUT/enabled"
ext4_workload > "$OUT/patched"
cat /sys/kernel/livepatch/{name}/transition > "$OUT/transition"
klp_disable {name}
rmmod {name}
ext4_workload > "$OUT/restored"
dmesg > "$OUT/dmesg"
"""
    )
    result = run_userland(ext4.artifacts, cache, script, files={ko.name: ko})
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    assert result.output_text("enabled").strip() == "1"
    assert result.output_text("transition").strip() == "0"
    # 301 files written, none left after the delete, in each stage.
    for stage in ("before", "patched", "restored"):
        assert result.output_text(stage).split() == ["301", "0"], result.output_text(stage)
    assert not re.search(r"EXT4-fs error|Oops|BUG:", result.output_text("dmesg"))


# ---- nfsd: 6.1.192-2 -> 6.1.192-3 when the issue was written -------------------------------


@pytest.fixture(scope="module")
def nfsd(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    pair = uploads.one_fix_pair(cache, uploads.NFSD)
    return build_debs(cache, pair, tmp_path_factory.mktemp("nfsd"), "nfsdfix")


def test_nfsd_upload_patches_the_nfsd_module_and_names_its_cve(nfsd: Built) -> None:
    assert_explained(nfsd)
    assert_upload_recorded(nfsd)
    changed = [p for p in nfsd.files() if p.startswith("fs/nfsd/")]
    assert changed and all(nfsd.files()[p]["scope"] == "module" for p in changed)
    assert all("nfsd" in nfsd.files()[p]["modules"] for p in changed)
    functions = patched_in(nfsd, "fs/nfsd/")
    assert functions, nfsd.output[-3000:]
    objects = {p["name"]: p["object"] for p in nfsd.manifest["patched"]}
    assert {objects[name] for name in functions} == {"nfsd"}, objects
    # The CVE the changelog names: the upload changes one file, so it is tied to it.
    named = set(re.findall(r"CVE-\d{4}-\d+", " ".join(nfsd.manifest["upload"]["changelog"])))
    assert named, nfsd.manifest["upload"]
    assert nfsd.manifest["upload"]["cves"] == {cve: "included" for cve in named}
    assert set(nfsd.manifest["cves"]) >= named
    assert nfsd.report["cves"] == {cve: "included" for cve in named}


def _patched(name: str, label: str) -> str:
    """Shell: the nfsd object's patched state of the update into $OUT/<label> ("absent" when
    the patch has no such object loaded)."""
    path = f"/sys/kernel/livepatch/{name}/nfsd/patched"
    return f'cat {path} > "$OUT/{label}" 2>/dev/null || echo absent > "$OUT/{label}"\n'


def test_nfsd_update_applies_with_nfsd_loaded_before_and_after(nfsd: Built, cache: Path) -> None:
    """Applied by the tool inside the guest: nfsd loaded after the update (the kernel patches
    it as it loads), then reloaded; then undone, and applied again with nfsd already loaded.
    `view` names the upload's CVE."""
    assert nfsd.tarball is not None
    name = str(nfsd.manifest["module_name"])
    uid = str(nfsd.manifest["id"])
    script = rf"""
install_tool
rc apply1 ksplice-pkg apply {nfsd.tarball.name}
{_patched(name, "nfsd-unloaded")}
rc load modprobe nfsd
{_patched(name, "nfsd-loaded-after")}
rc serve sh -c 'mount -t nfsd nfsd /proc/fs/nfsd && cat /proc/fs/nfsd/versions'
rc view ksplice-pkg view
rc cves ksplice-pkg view --cves
umount /proc/fs/nfsd || true
rc unload rmmod nfsd
rc reload modprobe nfsd
{_patched(name, "nfsd-reloaded")}
rc undo1 ksplice-pkg undo {uid}
rc apply2 ksplice-pkg apply {nfsd.tarball.name}
{_patched(name, "nfsd-loaded-before")}
rc undo2 ksplice-pkg undo {uid}
lsmod > "$OUT/lsmod"
"""
    result = run_userland(
        nfsd.artifacts, cache, PRELUDE + script,
        files={**tool_files(), nfsd.tarball.name: nfsd.tarball},
    )  # fmt: skip
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    out = result.outputs
    for step in ("apply1", "load", "serve", "view", "cves", "unload", "reload", "undo1",
                 "apply2", "undo2"):  # fmt: skip
        assert status(out, step) == 0, (step, output(out, step), result.console[-3000:])
    assert result.output_text("nfsd-unloaded").strip() in ("0", "absent")
    for label in ("nfsd-loaded-after", "nfsd-reloaded", "nfsd-loaded-before"):
        assert result.output_text(label).strip() == "1", label
    assert "4.1" in output(out, "serve")
    named = set(nfsd.manifest["upload"]["cves"])
    for cve in named:
        assert cve in output(out, "view"), output(out, "view")
        assert cve in output(out, "cves"), output(out, "cves")
    assert name not in result.output_text("lsmod")


# ---- a .dsc pair -------------------------------------------------------------------------


def dsc_pair(cache: Path) -> UploadPair:
    """The oldest pair of served `.dsc` versions whose older one's kernel is served; a version
    listed in the index whose files the mirror no longer has is passed over."""
    for pair in uploads.dsc_pairs(cache):
        try:
            uploads.dsc(cache, pair.old.version)
            uploads.dsc(cache, pair.new.version)
        except KspliceError:  # listed but not served: try the next pair
            continue
        return pair
    pytest.fail("the archive serves no two .dsc versions with the older one's kernel")


@pytest.fixture(scope="module")
def dsc_built(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    pair = dsc_pair(cache)
    old, new = uploads.dsc(cache, pair.old.version), uploads.dsc(cache, pair.new.version)
    return build_upload(cache, pair, old, new, tmp_path_factory.mktemp("dsc"), "dscpair")


def test_dsc_pair_is_refused_for_a_struct_layout_change(dsc_built: Built) -> None:
    """Two upstream stable releases apart, the .dsc pair changes struct task_struct, which
    nearly every unit uses: nothing is live-patchable, nothing is written but the report."""
    built = dsc_built
    assert built.exit_code == REFUSED, built.output[-5000:]
    assert "no change of the upload is live-patchable" in built.output
    assert built.tarball is None
    assert built.report["complete"] is False
    assert built.report["from"]["version"] == built.pair.old.version
    assert built.report["to"]["version"] == built.pair.new.version
    left = [(f["path"], i) for f in built.report["files"] for i in f["left_out"]]
    layouts = [i["detail"] for _, i in left if i["reason"] == "layout"]
    assert any("struct task_struct" in d for d in layouts), layouts
    # Every change is accounted for: not built, or left out with a reason.
    for f in built.report["files"]:
        assert f["scope"] == "not-built" or f["left_out"] or f["included_hunks"] == 0, f


# ---- the stable update (slow: run with -m upload_stable) ---------------------------------


@pytest.fixture(scope="module")
def stable(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    pair = uploads.stable_pair()
    return build_debs(cache, pair, tmp_path_factory.mktemp("stable"), "stable")


@pytest.mark.upload_stable
def test_stable_update_builds_loads_and_runs_a_workload(stable: Built, cache: Path) -> None:
    assert_explained(stable)
    assert_upload_recorded(stable)
    totals = stable.report["totals"]
    assert totals["changed_files"] > 100 and totals["functions"] > 0, totals
    # Every change left out is one the tool must refuse, with its reason's evidence.
    for f in stable.report["files"]:
        for item in f["left_out"]:
            if item["reason"] == "layout":
                assert re.search(r"\b(struct|union) \w+", item["detail"]), item
            if item["reason"] == "build-system":
                assert f["scope"] == "build-system", f
    name = str(stable.manifest["module_name"])
    ko = stable.module
    script = (
        EXT4_WORKLOAD
        + rf"""
set -e
insmod {ko.name}
klp_wait_transition {name} 120
ext4_workload > "$OUT/patched"
ls /proc/self/fd | wc -l > "$OUT/proc"
klp_disable {name}
rmmod {name}
"""
    )
    result = run_userland(stable.artifacts, cache, script, files={ko.name: ko})
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    assert result.output_text("patched").split() == ["301", "0"]
