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
from ksplice_pkg.distro.srcpkg import identify, prepare_source
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, VmError
from ksplice_pkg.vm.capture import capture_kallsyms
from ksplice_pkg.vm.guest import GuestResult
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


def source_trees(cache: Path, pair: UploadPair) -> tuple[Path, Path]:
    """The two unpacked linux-source trees of the pair, from the cache build_debs filled."""
    artifacts = target_of(cache, pair)
    (old,) = (artifacts.root / "debs").glob(f"linux-source-*_{pair.old.version}_all.deb")
    new = uploads.source_deb(cache, pair.new.version)
    return prepare_source(identify(old), cache), prepare_source(identify(new), cache)


def assert_explained(built: Built) -> None:
    """Exit 0 with nothing left out, or 6 with every change left out given a reason."""
    assert built.exit_code in (0, PARTIAL), built.output[-5000:]
    left = [i for f in built.report["files"] for i in f["left_out"]]
    left += built.report["left_out_in_other_files"]
    assert len(left) == built.report["totals"]["left_out"], built.report["totals"]
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


def boot_clean(built: Built, cache: Path, script: str, files: dict[str, Path]) -> GuestResult:
    """The Debian userland booted on the target kernel, script run: it must end with status 0
    and no oops, BUG or warning on the console."""
    result = run_userland(built.artifacts, cache, script, files=files)
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    return result


def one_fix(cache: Path, factory: pytest.TempPathFactory, subsystem: str) -> Built:
    pair = uploads.one_fix_pair(cache, subsystem)
    return build_debs(cache, pair, factory.mktemp(subsystem), f"{subsystem}fix")


def changed_under(built: Built, directory: str, scope: str) -> list[dict[str, Any]]:
    """The report's changed files under directory, checked to be of scope, once the build is
    checked to be explained and to record its upload."""
    assert_explained(built)
    assert_upload_recorded(built)
    changed = [f for path, f in built.files().items() if path.startswith(directory)]
    assert changed, list(built.files())
    assert all(f["scope"] == scope for f in changed), changed
    return changed


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
    return one_fix(cache, tmp_path_factory, uploads.EXT4)


def test_ext4_upload_is_one_update_of_the_ext4_fix(ext4: Built) -> None:
    changed_under(ext4, "fs/ext4/", "built-in")
    functions = patched_in(ext4, "fs/ext4/")
    assert functions, ext4.output[-3000:]
    # ext4 is built into vmlinux in Debian's cloud config: every patched function is vmlinux's.
    objects = {p["name"]: p["object"] for p in ext4.manifest["patched"]}
    assert {objects[name] for name in functions} == {"vmlinux"}, objects
    # The update's patch is the upload's ext4 change, applied to the old tree.
    assert "fs/ext4/" in (ext4.top_dir / "patch").read_text()
    assert ext4.report["units_compiled"] >= 1


# Files written and deleted on a freshly made and mounted ext4 filesystem: block allocation
# loads the buddy bitmaps (not yet in the page cache) and initialises the groups (mballoc).
EXT4_WORKLOAD = r"""
workload() {
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
EXT4_RESULT = ["301", "0"]  # files written, files left after the delete


def workload_under(built: Built, cache: Path, workload: str, wait: int = 60) -> str:
    """The shell function `workload()` run in the target kernel with the update applied
    (after its transition), then the update undone and removed: no error, no oops. Returns
    what the workload printed."""
    name = str(built.manifest["module_name"])
    ko = built.module
    script = workload + rf"""
set -e
insmod {ko.name}
klp_wait_transition {name} {wait}
cat /sys/kernel/livepatch/{name}/enabled > "$OUT/enabled"
workload > "$OUT/patched"
cat /sys/kernel/livepatch/{name}/transition > "$OUT/transition"
klp_disable {name}
rmmod {name}
lsmod > "$OUT/lsmod"
dmesg > "$OUT/dmesg"
"""  # fmt: skip
    result = boot_clean(built, cache, script, {ko.name: ko})
    assert result.output_text("enabled").strip() == "1"
    assert result.output_text("transition").strip() == "0"
    assert name not in result.output_text("lsmod")
    assert not re.search(r"EXT4-fs error|Oops|BUG:", result.output_text("dmesg"))
    return result.output_text("patched")


def test_ext4_workload_oopses_the_target_kernel_without_the_update(
    ext4: Built, cache: Path
) -> None:
    """The upload fixes a NULL folio dereference in mballoc: the workload below reaches it in
    the kernel built from OLD. This is what makes the next test's clean run mean something."""
    with pytest.raises(VmError) as crashed:
        run_userland(ext4.artifacts, cache, EXT4_WORKLOAD + "workload\n")
    message = crashed.value.message
    assert "NULL pointer dereference" in message, message[-3000:]
    patched = {p["name"] for p in ext4.manifest["patched"]}
    # The oops is in a function the update replaces, in vmlinux's copy (no [module] after it).
    rip = re.search(r"RIP: 0010:(\w+)\+0x\w+/0x\w+\n", message)
    assert rip is not None and rip.group(1) in patched, message[-3000:]


def test_ext4_update_runs_the_workload_in_the_real_kernel(ext4: Built, cache: Path) -> None:
    assert workload_under(ext4, cache, EXT4_WORKLOAD).split() == EXT4_RESULT


# ---- nfsd: 6.1.192-2 -> 6.1.192-3 when the issue was written -------------------------------


@pytest.fixture(scope="module")
def nfsd(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return one_fix(cache, tmp_path_factory, uploads.NFSD)


def test_nfsd_upload_patches_the_nfsd_module_and_names_its_cve(nfsd: Built) -> None:
    changed = changed_under(nfsd, "fs/nfsd/", "module")
    assert all("nfsd" in f["modules"] for f in changed), changed
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
    """Applied by the tool inside the guest, first with nfsd loaded before (patched as the
    update applies), then, after undo and nfsd's removal, with nfsd loaded after it (the kernel
    patches it as it loads). `view` names the upload's CVE.

    nfsd is never removed while the update is applied: Linux 6.1 does not clear a livepatch's
    relocations to a module that goes away (upstream does since 6.4), so loading it again
    then fails ("existing value is nonzero", Exec format error)."""
    assert nfsd.tarball is not None
    name = str(nfsd.manifest["module_name"])
    uid = str(nfsd.manifest["id"])
    serve = "rc serve{n} sh -c 'mount -t nfsd nfsd /proc/fs/nfsd && cat /proc/fs/nfsd/versions'"
    script = rf"""
install_tool
rc load1 modprobe nfsd
rc apply1 ksplice-pkg apply {nfsd.tarball.name}
{_patched(name, "nfsd-loaded-before")}
{serve.format(n=1)}
rc view ksplice-pkg view
rc cves ksplice-pkg view --cves
umount /proc/fs/nfsd
rc undo1 ksplice-pkg undo {uid}
rc unload rmmod nfsd
rc apply2 ksplice-pkg apply {nfsd.tarball.name}
{_patched(name, "nfsd-not-loaded")}
rc load2 modprobe nfsd
{_patched(name, "nfsd-loaded-after")}
{serve.format(n=2)}
umount /proc/fs/nfsd
rc undo2 ksplice-pkg undo {uid}
lsmod > "$OUT/lsmod"
"""
    files = {**tool_files(), nfsd.tarball.name: nfsd.tarball}
    result = boot_clean(nfsd, cache, PRELUDE + script, files)
    out = result.outputs
    for step in ("load1", "apply1", "serve1", "view", "cves", "undo1", "unload", "apply2",
                 "load2", "serve2", "undo2"):  # fmt: skip
        assert status(out, step) == 0, (step, output(out, step), result.console[-3000:])
    assert result.output_text("nfsd-not-loaded").strip() in ("0", "absent")
    for label in ("nfsd-loaded-before", "nfsd-loaded-after"):
        assert result.output_text(label).strip() == "1", label
    assert "4.1" in output(out, "serve1") and "4.1" in output(out, "serve2")
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
    """The oldest served .dsc pair (6.1.170-3 -> 6.1.172-1 when this was written) adds a
    member to struct task_struct, and the only built code it changes uses it: a layout change
    cannot be live-patched, so nothing is; nothing is written but the report. (Which reason
    the code that needs the member gets, `compile` or `needs-left-out`, is not asserted.)"""
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
        assert f["scope"] == "not-built" or f["left_out"], f


# Files on tmpfs, files read from the root filesystem, processes, a TCP round trip on loopback.
GENERAL_WORKLOAD = r"""
workload() {
    mkdir -p /dev/shm/w
    i=0
    while [ $i -lt 200 ]; do echo $i > /dev/shm/w/f$i; i=$((i + 1)); done
    cat /dev/shm/w/* | wc -l
    rm -rf /dev/shm/w
    find /usr/lib/python3* -name '*.py' | head -500 | xargs cat | sha256sum > /dev/null
    python3 -c '
import socket, threading
srv = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = srv.accept()
    conn.sendall(conn.recv(16))
threading.Thread(target=serve).start()
c = socket.create_connection(srv.getsockname())
c.sendall(b"ok")
print(c.recv(16).decode())
'
}
"""


# ---- the stable update (slow: run with -m upload_stable) ---------------------------------


def assert_refusals_hold(built: Built, trees: tuple[Path, Path] | None = None) -> None:
    """Every change left out is one the tool must refuse, with its reason's evidence: a layout
    names its type, a build-system change is a build file, and a symbol the update's code
    refers to but nothing defines is really absent from the module the update links (the
    stable upload once refused callers of helpers the update itself carried). Given the two
    unpacked trees, a header hunk refused for a layout must lie in the body of the type it
    names, and that body must differ by more than comments between the trees (read here with
    a brace matcher of this test's own, not the tool's)."""
    carried = {s.name for s in read_object(built.module).symbols if s.is_defined}
    for f in built.report["files"]:
        for item in f["left_out"]:
            if item["reason"] == "layout":
                assert re.search(r"\b(struct|union) \w+", item["detail"]), item
                said = re.match(r"the patch changes the layout of (.+) in \S+$", item["detail"])
                if trees is not None and said is not None and item["hunk"]:
                    _assert_layout_hunk(trees, f["path"], item["hunk"], said[1].split(", "))
            if item["reason"] == "build-system":
                assert f["scope"] == "build-system", f
            if item["reason"] == "unknown-symbol":
                (name,) = re.findall(r"the update refers to (\S+), which", item["detail"])
                assert name not in carried, item


def _assert_layout_hunk(trees: tuple[Path, Path], path: str, hunk: str, types: list[str]) -> None:
    m = re.match(r"@@ -(\d+),?(\d*) \+(\d+),?(\d*) @@", hunk)
    assert m is not None, hunk
    spans = [(int(m[1]), int(m[2] or 1)), (int(m[3]), int(m[4] or 1))]
    texts = [(tree / path).read_text(errors="replace") for tree in trees]
    bodies = [{t: _body(text, t) for t in types} for text in texts]
    inside = [
        t
        for t in types
        if any(
            body is not None and body[0] <= first + count and first <= body[1]
            for (first, count), body in zip(spans, (b[t] for b in bodies), strict=True)
        )
    ]
    assert inside, (path, hunk, types, [b for b in bodies])
    assert any(_tokens(texts[0], bodies[0][t]) != _tokens(texts[1], bodies[1][t]) for t in inside)


def _body(text: str, named: str) -> tuple[int, int] | None:
    """The lines (first, last) of `struct name { ... }` in text, comments aside."""
    code = re.sub(r"/\*.*?\*/|//[^\n]*", lambda c: re.sub(r"[^\n]", " ", c[0]), text, flags=re.S)
    opened = re.search(rf"\b{re.escape(named)}\s*\{{", code)
    if opened is None:
        return None
    depth = 0
    for at in range(opened.end() - 1, len(code)):
        depth += {"{": 1, "}": -1}.get(code[at], 0)
        if depth == 0:
            return code.count("\n", 0, opened.start()) + 1, code.count("\n", 0, at) + 1
    return None


def _tokens(text: str, body: tuple[int, int] | None) -> str:
    if body is None:
        return ""
    lines = text.splitlines()[body[0] - 1 : body[1]]
    return " ".join(re.sub(r"/\*.*?\*/|//[^\n]*", " ", "\n".join(lines), flags=re.S).split())


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
    assert_refusals_hold(stable, source_trees(cache, stable.pair))
    # Not the ext4 workload: this upload brings the mballoc code whose NULL folio dereference
    # the next upload fixes (the ext4 one-fix upload), so it would oops the patched kernel.
    assert workload_under(stable, cache, GENERAL_WORKLOAD, wait=120).split() == ["200", "ok"]
