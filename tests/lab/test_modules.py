"""Updates to loadable modules, built by create from the real source against the real .ko files
of Debian's image package, and loaded in the real kernel with the modules loaded before the
update and after it.

One update patches four modules and vmlinux at once: loop (a sysfs attribute of a loop device),
fat (the mount options vfat shows in /proc/mounts), vfat (mkdir logs through fat) and the dummy
network driver (the MTU of the devices it sets up), each change referring to symbols of its own
module, fat's to one fat exports and vfat's to fat's, plus /proc/cmdline in vmlinux.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.config import work_dir_for
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.errors import RefusedError, RunPreMismatchError
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.run import run_text
from ksplice_pkg.vm.guest import GuestResult, module_load_order, run_script
from tests.lab.updates import build_update

LOOP_PATCH = """\
--- a/drivers/block/loop.c
+++ b/drivers/block/loop.c
@@ -686,7 +686,7 @@
 
 static ssize_t loop_attr_offset_show(struct loop_device *lo, char *buf)
 {
-	return sysfs_emit(buf, "%llu\\n", (unsigned long long)lo->lo_offset);
+	return sysfs_emit(buf, "%llu %ps\\n", (unsigned long long)lo->lo_offset, &part_shift);
 }
 
 static ssize_t loop_attr_sizelimit_show(struct loop_device *lo, char *buf)
"""
FAT_PATCH = """\
--- a/fs/fat/inode.c
+++ b/fs/fat/inode.c
@@ -947,6 +947,7 @@
 	struct fat_mount_options *opts = &sbi->options;
 	int isvfat = opts->isvfat;
 
+	seq_printf(m, ",ksplice=%ps/%ps/%pS", fat_sops.statfs, fat_getattr, init_once);
 	if (!uid_eq(opts->fs_uid, GLOBAL_ROOT_UID))
 		seq_printf(m, ",uid=%u",
 				from_kuid_munged(&init_user_ns, opts->fs_uid));
"""
VFAT_PATCH = """\
--- a/fs/fat/namei_vfat.c
+++ b/fs/fat/namei_vfat.c
@@ -859,6 +859,7 @@
 	int err, cluster;
 
 	mutex_lock(&MSDOS_SB(sb)->s_lock);
+	fat_msg(sb, KERN_INFO, "ksplice: mkdir %pd", dentry);
 
 	ts = current_time(dir);
 	cluster = fat_alloc_new_dir(dir, &ts);
"""
# The network driver: devices it sets up get an MTU of 1400 instead of Ethernet's 1500.
DUMMY_PATCH = """\
--- a/drivers/net/dummy.c
+++ b/drivers/net/dummy.c
@@ -134,6 +134,7 @@
 
 	dev->min_mtu = 0;
 	dev->max_mtu = 0;
+	dev->mtu = 1400;
 }
 
 static int dummy_validate(struct nlattr *tb[], struct nlattr *data[],
"""
CMDLINE_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "patched: ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\\n');
 	return 0;
"""
MODULES_PATCH = LOOP_PATCH + FAT_PATCH + VFAT_PATCH + DUMMY_PATCH + CMDLINE_PATCH

# The modules the guest loads from the image (dependencies first); nls_* are what vfat's
# default codepage and iocharset need, since the busybox guest has no modprobe.
GUEST_MODULES = ("loop", "vfat", "nls_cp437", "nls_ascii", "dummy")

# Shell: a vfat file system on /dev/loop0, mounted on /mnt.
SET_UP = r"""
insmod_all() { for ko in $(cat modules.list); do insmod "$ko"; done; }
mount_fat() {
    dd if=/dev/zero of=/tmp/fat.img bs=1024 count=2048 2>/dev/null
    losetup /dev/loop0 /tmp/fat.img
    mkdosfs /dev/loop0 >/dev/null
    mkdir -p /mnt
    mount -t vfat /dev/loop0 /mnt
}
check() {
    mkdir "/mnt/$1"
    echo "vfat: $(dmesg | grep -o "ksplice: mkdir $1\$")"
    echo "loop: $(cat /sys/block/loop0/loop/offset)"
    ip link add "d$1" type dummy
    echo "dummy: $(cat "/sys/class/net/d$1/mtu") $(cat /sys/class/net/dummy0/mtu)"
    echo "fat: $(grep ' /mnt ' /proc/mounts)"
    echo "cmdline: $(cat /proc/cmdline)"
}
"""


def _build(
    artifacts: KernelArtifacts, kallsyms: Path, out: Path, update_id: str, patch: str
) -> tuple[dict[str, object], Path]:
    built = build_update(
        artifacts, kallsyms, patch, out, update_id, description=f"modules test {update_id}"
    )
    return built.manifest, built.ko


@pytest.fixture(scope="module")
def update(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, object], Path]:
    return _build(artifacts, kallsyms, tmp_path_factory.mktemp("modules"), "modules", MODULES_PATCH)


def _run(artifacts: KernelArtifacts, ko: Path, script: str) -> GuestResult:
    modules = module_load_order(artifacts.modules_dir, GUEST_MODULES)
    files = {ko.name: ko, **{m.name: m for m in modules}}
    listing = Path(ko.parent / "modules.list")
    listing.write_text("".join(f"{m.name}\n" for m in modules))
    files["modules.list"] = listing
    result = run_script(artifacts.vmlinuz, artifacts.modules_dir, SET_UP + script, files=files)
    assert result.status == 0, result.console[-4000:]
    assert result.crash_lines() == [], result.crash_lines()
    return result


def _lines(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def _inode_init_once(artifacts: KernelArtifacts) -> tuple[int, int]:
    """The sympos and size of inode.c's init_once in the target's fat.ko: cache.c has a
    static init_once too. The distro .ko keeps no FILE symbols, so inode.c's is told by its
    size in the pre object create compiled from inode.c."""
    pre = work_dir_for(cache_dir(), artifacts.source_tree) / "pre/fs/fat/inode.o"
    (size,) = {int(r[2]) for r in _symbol_rows(pre) if r[3] == "FUNC" and r[7] == "init_once"}
    ko = artifacts.modules_dir / "kernel/fs/fat/fat.ko"
    sizes = [int(r[2]) for r in _symbol_rows(ko) if r[3] == "FUNC" and r[7] == "init_once"]
    assert len(sizes) == 2 and sizes.count(size) == 1, sizes
    return sizes.index(size) + 1, size


def _symbol_rows(obj: Path) -> list[list[str]]:
    """readelf -sW rows of named symbols, in symbol table order."""
    rows = [line.split() for line in run_text(["readelf", "-sW", obj]).splitlines()]
    return [r for r in rows if len(r) == 8 and r[0].endswith(":")]


def _assert_patched(text: str, stage: str, artifacts: KernelArtifacts) -> None:
    seen = _lines(text)
    # %pS shows init_once's size: inode.c's, the one the unchanged code of fat_show_options'
    # unit refers to, not cache.c's (sympos from the .ko's symbol table).
    _, size = _inode_init_once(artifacts)
    shown = re.search(r"/init_once\+0x0/(0x[0-9a-f]+) \[fat\],", seen["fat"])
    assert shown is not None, text
    # kallsyms' size runs to the next symbol: the function padded to its 16-byte alignment.
    assert size <= int(shown[1], 16) < size + 16, (size, text)
    # vfat's change calls fat's functions, one of them not exported: klp relocations against
    # the module vfat depends on, written when vfat comes.
    assert seen["vfat"] == f"ksplice: mkdir {stage}", text
    # %ps of part_shift and of fat's own functions: the klp relocations against each module
    # bound the symbols of that module, whichever was loaded first.
    assert seen["loop"] == "0 part_shift [loop]", text
    # A dummy device created now is set up by the patched dummy_setup.
    assert seen["dummy"].split()[0] == "1400", text
    assert ",ksplice=fat_statfs [fat]/fat_getattr [fat]/" in seen["fat"], text
    assert seen["cmdline"].startswith("patched: "), text


def _assert_unpatched(text: str) -> None:
    seen = _lines(text)
    assert seen["vfat"] == "", text
    assert seen["loop"] == "0", text
    assert seen["dummy"].split()[0] == "1500", text
    assert "ksplice" not in seen["fat"] and "vfat" in seen["fat"], text
    assert not seen["cmdline"].startswith("patched"), text


def test_manifest_and_klp_relocations_name_each_module(
    artifacts: KernelArtifacts, update: tuple[dict[str, object], Path]
) -> None:
    manifest, ko = update
    patched = manifest["patched"]
    assert isinstance(patched, list)
    objects = {(p["object"], p["name"]) for p in patched}
    assert {
        ("loop", "loop_attr_do_show_offset"),
        ("fat", "fat_show_options"),
        ("vfat", "vfat_mkdir"),
        ("dummy", "dummy_setup"),
    } <= objects
    assert ("vmlinux", "cmdline_proc_show") in objects
    symbols = run_text(["readelf", "-sW", ko])
    # The module's statics and its export alike are klp symbols of that module: an ordinary
    # relocation against fat_getattr would keep the update from loading without fat.
    for name in (".klp.sym.loop.part_shift,0", ".klp.sym.fat.fat_getattr,0"):
        assert re.search(rf"\[0xff20\]\s+{re.escape(name)}$", symbols, re.MULTILINE), name
    assert not re.search(r"UND\s+fat_getattr$", symbols, re.MULTILINE)
    sympos, _ = _inode_init_once(artifacts)
    assert sympos > 1
    assert f".klp.sym.fat.init_once,{sympos}" in symbols, symbols
    sections = run_text(["readelf", "-SW", ko])
    assert ".klp.rela.fat.text" in sections and ".klp.rela.loop.text" in sections
    # vfat's reference to fat (not exported) is written when vfat comes: in vfat's section.
    relocations = run_text(["readelf", "-rW", ko]).split("Relocation section ")
    in_vfat = "".join(r for r in relocations if r.startswith("'.klp.rela.vfat."))
    assert ".klp.sym.fat._fat_msg,0" in in_vfat, in_vfat
    assert not any(".klp.sym.fat._fat_msg" in r for r in relocations if ".klp.rela.fat." in r)
    # modpost recorded no dependency on the patched modules.
    assert run_text(["modinfo", "-F", "depends", ko]).strip() == ""


def test_modules_loaded_before_the_update(
    artifacts: KernelArtifacts, update: tuple[dict[str, object], Path]
) -> None:
    manifest, ko = update
    name = manifest["module_name"]
    result = _run(
        artifacts,
        ko,
        f"""
set -e
insmod_all
mount_fat
check before > "$OUT/before" 2>&1
insmod {ko.name}
klp_wait_transition {name}
check patched > "$OUT/patched" 2>&1
klp_disable {name}
rmmod {name}
check restored > "$OUT/restored" 2>&1
""",
    )
    _assert_unpatched(result.output_text("before"))
    _assert_patched(result.output_text("patched"), "patched", artifacts)
    # dummy0 was set up as dummy.ko loaded, before the update: it keeps Ethernet's MTU.
    assert _lines(result.output_text("patched"))["dummy"] == "1400 1500"
    _assert_unpatched(result.output_text("restored"))


def test_modules_loaded_after_the_update(
    artifacts: KernelArtifacts, update: tuple[dict[str, object], Path]
) -> None:
    manifest, ko = update
    name = manifest["module_name"]
    result = _run(
        artifacts,
        ko,
        f"""
set -e
insmod {ko.name}
klp_wait_transition {name}
ls /sys/kernel/livepatch/{name} > "$OUT/objects"
insmod_all
mount_fat
check patched > "$OUT/patched" 2>&1
cat /sys/kernel/livepatch/{name}/fat/patched /sys/kernel/livepatch/{name}/loop/patched \\
    > "$OUT/objects_patched"
klp_disable {name}
rmmod {name}
check restored > "$OUT/restored" 2>&1
""",
    )
    assert {"fat", "loop", "vmlinux"} <= set(result.output_text("objects").split())
    assert result.output_text("objects_patched").split() == ["1", "1"]
    _assert_patched(result.output_text("patched"), "patched", artifacts)
    # dummy0 was set up as dummy.ko loaded, after the update: by the patched dummy_setup.
    assert _lines(result.output_text("patched"))["dummy"] == "1400 1400"
    _assert_unpatched(result.output_text("restored"))


def _create_cli(
    artifacts: KernelArtifacts,
    kallsyms: Path,
    tmp: Path,
    modules: Path | None,
    config: Path | None = None,
) -> Result:
    patch = tmp / "fat.patch"
    patch.write_text(FAT_PATCH)
    return CliRunner().invoke(
        main,
        [
            "create",
            f"--config={config or artifacts.target_dir}",
            f"--system-map={kallsyms}",
            *([f"--modules-dir={modules}"] if modules else []),
            f"--patch={patch}",
            f"-o{tmp / 'out'}",
            f"--cache-dir={cache_dir()}",
            str(artifacts.source_tree),
        ],
    )


def test_modules_link_of_the_config_dir_is_the_default(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    # A config dir as fetch lays it out: `modules` links the image's lib/modules/<release>.
    config = tmp_path / "target"
    config.mkdir()
    for name in (".config", "Module.symvers", "vmlinuz"):
        (config / name).symlink_to(artifacts.target_dir / name)
    (config / "modules").symlink_to(artifacts.modules_dir)
    result = _create_cli(artifacts, kallsyms, tmp_path, None, config)
    assert result.exit_code == 0, result.output
    (tarball,) = (tmp_path / "out").iterdir()
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(next(n for n in names if n.endswith("manifest.json")))
        assert manifest is not None
        patched = json.loads(manifest.read())["patched"]
    assert {"object": "fat", "name": "fat_show_options", "sympos": 0} in patched


def test_module_missing_from_the_modules_dir_is_a_run_pre_mismatch(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    order = (artifacts.modules_dir / "modules.order").read_text().splitlines()
    (modules / "modules.order").write_text("".join(f"{m}\n" for m in order if "/fat/" not in m))
    result = _create_cli(artifacts, kallsyms, tmp_path, modules)
    assert result.exit_code == RunPreMismatchError.exit_code, result.output
    assert "module fat" in result.output and "modules.order" in result.output, result.output


def test_another_ko_in_place_of_the_module_is_a_run_pre_mismatch(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    # vfat.ko where fat.ko should be: fat_show_options is not there to compare with.
    modules = tmp_path / "modules"
    (modules / "kernel/fs/fat").mkdir(parents=True)
    shutil.copy2(artifacts.modules_dir / "kernel/fs/fat/vfat.ko", modules / "kernel/fs/fat/fat.ko")
    (modules / "modules.order").write_text("kernel/fs/fat/fat.ko\n")
    result = _create_cli(artifacts, kallsyms, tmp_path, modules)
    assert result.exit_code == RunPreMismatchError.exit_code, result.output
    assert "module fat" in result.output and "fat_show_options" in result.output, result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# nft_do_chain tests the static key nft_trace_enabled, which nf_tables itself defines.
NFT_PATCH = """\
--- a/net/netfilter/nf_tables_core.c
+++ b/net/netfilter/nf_tables_core.c
@@ -238,6 +238,8 @@
 	struct nft_rule_blob *blob;
 	struct nft_traceinfo info;
 
+	if (unlikely(!pkt->skb))
+		return NF_DROP;
 	info.trace = false;
 	if (static_branch_unlikely(&nft_trace_enabled))
 		nft_trace_init(&info, pkt, &regs.verdict, basechain);
"""


def test_jump_label_on_a_key_of_the_module_is_refused_naming_it(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    with pytest.raises(RefusedError) as e:
        _build(artifacts, kallsyms, tmp_path, "nftkey", NFT_PATCH)
    assert "nft_trace_enabled" in e.value.message and "nf_tables" in e.value.message
    assert "__jump_table" in e.value.message
    assert not list(tmp_path.iterdir())
