"""Mismatched inputs to `create` that only the real kernel's files can show: a Module.symvers,
symbol map or .config of another build, a function of a loadable module without the target's
modules. Each is refused
naming both sides, writes nothing outside the cache and -o, and the next valid run still makes a
module that loads in the real kernel.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.paths import cache_dir
from tests.lab.updates import build_update, try_update

# The /proc/cmdline change of the built-in example: quick to build, easy to see.
CMDLINE_PATCH = """\
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+	seq_puts(m, "hostile: ");
 	seq_puts(m, saved_command_line);
 	seq_putc(m, '\\n');
 	return 0;
"""

# fs/fat is =m in Debian's cloud config: its code lives in fat.ko, not in vmlinux.
FAT_MODULE_PATCH = """\
--- a/fs/fat/dir.c
+++ b/fs/fat/dir.c
@@ -42,7 +42,7 @@
 				    struct buffer_head *bh,
 				    struct msdos_dir_entry *de)
 {
-	return ((loff_t)bh->b_blocknr << MSDOS_SB(sb)->dir_per_block_bits)
+	return 1 + ((loff_t)bh->b_blocknr << MSDOS_SB(sb)->dir_per_block_bits)
 		| (de - (struct msdos_dir_entry *)bh->b_data);
 }
 
"""


def _target_copy(artifacts: KernelArtifacts, kallsyms: Path, where: Path) -> Path:
    """The fetched target's files, in a directory the test may spoil."""
    where.mkdir()
    for name in (".config", "Module.symvers", "vmlinuz"):
        shutil.copy2(artifacts.target_dir / name, where / name)
    shutil.copy2(kallsyms, where / "kallsyms")
    return where


def _create(
    artifacts: KernelArtifacts,
    target: Path,
    out: Path,
    *extra: str,
    patch_text: str = CMDLINE_PATCH,
) -> Result:
    patch = out.parent / "input.patch"
    patch.write_text(patch_text)
    return CliRunner().invoke(
        main,
        [
            "create",
            f"--config={target}",
            f"--patch={patch}",
            f"-o{out}",
            f"--cache-dir={cache_dir()}",
            *extra,
            str(artifacts.source_tree),
        ],
    )


def _refused(result: Result, *names: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for name in names:
        assert name in result.output, (name, result.output)


def _only(directory: Path, names: set[str]) -> None:
    assert {p.name for p in directory.iterdir()} == names


def test_symvers_of_another_build_is_refused_with_the_crc(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    target = _target_copy(artifacts, kallsyms, tmp_path / "target")
    symvers = target / "Module.symvers"
    text = symvers.read_text()
    crc, name = re.search(r"^0x([0-9a-f]{8})\t(seq_puts)\t", text, re.MULTILINE).groups()  # type: ignore[union-attr]
    wrong = f"{(int(crc, 16) ^ 1):08x}"
    symvers.write_text(text.replace(f"0x{crc}\t{name}\t", f"0x{wrong}\t{name}\t"))
    result = _create(artifacts, target, tmp_path / "out")
    _refused(result, "Module.symvers", name, wrong, crc)
    _only(target, {".config", "Module.symvers", "vmlinuz", "kallsyms"})
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_stale_symvers_in_the_work_dir_does_not_outlive_its_run(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    """Without the binary a wrong CRC cannot be seen; the work dir must still not keep it."""
    target = _target_copy(artifacts, kallsyms, tmp_path / "target")
    (target / "vmlinuz").unlink()
    symvers = target / "Module.symvers"
    symvers.write_text(
        re.sub(r"^0x[0-9a-f]{8}(\tseq_puts\t)", r"0x00000001\1", symvers.read_text(), flags=re.M)
    )
    bad = _create(
        artifacts, target, tmp_path / "bad", f"--kernel-release={artifacts.release}", "--id=bad"
    )
    assert bad.exit_code == 0, bad.output
    # The next run with the right inputs makes a module the kernel loads.
    update = build_update(artifacts, kallsyms, CMDLINE_PATCH, tmp_path / "good", "good")
    before, patched, restored, _ = try_update(artifacts, update, "cat /proc/cmdline")
    assert patched == "hostile: " + before and restored == before


def test_symbol_map_of_another_kernel_is_refused(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    target = _target_copy(artifacts, kallsyms, tmp_path / "target")
    # Another build of the same source places data elsewhere: move linux_banner by a page.
    lines = []
    for line in (target / "kallsyms").read_text().splitlines():
        fields = line.split()
        if fields[2:3] == ["linux_banner"]:
            fields[0] = f"{int(fields[0], 16) + 0x1000:016x}"
        lines.append(" ".join(fields))
    (target / "kallsyms").write_text("\n".join(lines) + "\n")
    result = _create(artifacts, target, tmp_path / "out")
    _refused(result, "symbol map", str(target / "kallsyms"), artifacts.release)


def test_config_of_another_compiler_is_refused(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    target = _target_copy(artifacts, kallsyms, tmp_path / "target")
    config = target / ".config"
    text = config.read_text()
    m = re.search(r'^CONFIG_CC_VERSION_TEXT="(.*)"$', text, re.MULTILINE)
    assert m is not None
    other = "gcc-13 (Debian 13.2.0-25) 13.2.0"
    config.write_text(text.replace(m[0], f'CONFIG_CC_VERSION_TEXT="{other}"'))
    result = _create(artifacts, target, tmp_path / "out")
    _refused(result, str(config), other)


def test_module_unit_without_the_target_modules_is_refused_naming_it(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    # A target description without lib/modules: the .ko that run-pre and the module's sympos
    # need is missing, so the change to fat is refused, naming the unit, the module and the
    # option that supplies it, before anything is written.
    target = _target_copy(artifacts, kallsyms, tmp_path / "target")
    out = tmp_path / "out"
    result = _create(artifacts, target, out, patch_text=FAT_MODULE_PATCH)
    _refused(result, "fs/fat/dir.o", "fat.ko", "--modules-dir")
    assert re.search(r"\bmodule fat\b", result.output), result.output
    assert not out.exists() or not list(out.iterdir())
