"""`build --from` on the real kernel with an upload made for the test: one change of each kind
the classification tells apart, each checked to land where it must in the report, the manifest
and the module that loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.vm.trial import try_update

LOCKS = "fs/locks.c"


def _edit(tree: Path, path: str, old: str, new: str) -> None:
    """Replace one text in the NEW tree's copy of path, as a new file: the tree is a hard-link
    copy of OLD, whose files must stay as they are."""
    target = tree / path
    text = target.read_text()
    assert text.count(old) == 1, (path, old)
    target.unlink()
    target.write_text(text.replace(old, new))


def _new_upload(old: Path, new: Path) -> None:
    subprocess.run(["cp", "-al", old, new], check=True)
    # fs/locks.c (built in): a data change and, far below, a function change.
    _edit(new, LOCKS, "static int lease_break_time = 45;", "static int lease_break_time = 46;")
    _edit(
        new,
        LOCKS,
        "\tWARN_ON_ONCE(filp != fl->fl_file);\n\tif (filp->f_op->lock)",
        "\tif (WARN_ON_ONCE(filp != fl->fl_file))\n\t\treturn -EINVAL;\n\tif (filp->f_op->lock)",
    )
    # A struct body in a header that built units include.
    _edit(
        new,
        "include/linux/proc_fs.h",
        "struct proc_ops {\n\tunsigned int proc_flags;\n",
        "struct proc_ops {\n\tunsigned int proc_flags;\n\tunsigned int proc_spare;\n",
    )
    # What decides the build, and what this config never builds.
    (new / "fs/proc/Makefile").unlink()
    (new / "fs/proc/Makefile").write_text((old / "fs/proc/Makefile").read_text() + "# new\n")
    arm = new / "arch/arm64/kernel/time.c"
    text = arm.read_text()
    arm.unlink()
    arm.write_text("/* changed */\n" + text)
    (new / "Documentation/ksplice-upload-test.rst").write_text("A new document.\n")


def _build_from(
    artifacts: KernelArtifacts, kallsyms: Path, new: Path, tmp_path: Path, update_id: str
) -> tuple[str, dict[str, Any], Path]:
    """`build NEW --from` the lab kernel's source, as a tarball: its output, its report and
    the output directory. Exit 6: partial, something was left out."""
    debs = artifacts.root / "debs"
    (image,) = debs.glob(f"linux-image-{artifacts.release}_*.deb")
    (headers,) = debs.glob(f"linux-headers-{artifacts.release}_*.deb")
    out, report_file = tmp_path / "out", tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "build", str(new), f"--from={artifacts.source_tree}", f"--kernel-package={image}",
            f"--headers-package={headers}", f"--system-map={kallsyms}", "--format=tarball",
            f"--id={update_id}", f"-o{out}", f"--report={report_file}",
        ],
    )  # fmt: skip
    assert result.exit_code == 6, result.output
    report: dict[str, Any] = json.loads(report_file.read_text())
    return result.output, report, out


def test_each_kind_of_change_lands_in_its_verdict(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    old = artifacts.source_tree
    new = tmp_path / "new-upload"
    _new_upload(old, new)
    output, report, out = _build_from(artifacts, kallsyms, new, tmp_path, "verdicts")
    assert "left out: a reboot is needed for them" in output
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == {
        LOCKS,
        "include/linux/proc_fs.h",
        "fs/proc/Makefile",
        "arch/arm64/kernel/time.c",
        "Documentation/ksplice-upload-test.rst",
    }
    locks = files[LOCKS]
    assert locks["scope"] == "built-in" and locks["hunks"] == 2 and locks["included_hunks"] == 1
    assert [(i["reason"], "lease_break_time" in i["detail"]) for i in locks["left_out"]] == [
        ("data", True)
    ]
    assert locks["functions"] == ["vfs_test_lock"]
    proc_fs = files["include/linux/proc_fs.h"]
    assert proc_fs["scope"] == "header" and proc_fs["included_hunks"] == 0
    assert [i["reason"] for i in proc_fs["left_out"]] == ["layout"]
    assert "struct proc_ops" in proc_fs["left_out"][0]["detail"]
    assert files["fs/proc/Makefile"]["left_out"][0]["reason"] == "build-system"
    for path in ("arch/arm64/kernel/time.c", "Documentation/ksplice-upload-test.rst"):
        assert files[path]["scope"] == "not-built" and files[path]["left_out"] == []
    totals = report["totals"]
    assert totals["changed_files"] == 5 and totals["not_built"] == 2
    assert totals["left_out_by_reason"] == {"build-system": 1, "data": 1, "layout": 1}
    assert report["complete"] is False

    # The update carries vfs_test_lock alone, says what it left out, and loads.
    with tarfile.open(out / "ksplice-verdicts.tar.gz") as tar:
        tar.extractall(out, filter="data")
    top = out / "ksplice-verdicts"
    manifest = json.loads((top / "manifest.json").read_text())
    assert manifest["replace"] is True
    assert [p["name"] for p in manifest["patched"]] == ["vfs_test_lock"]
    assert len(manifest["left_out"]) == 3
    patch = (top / "patch").read_text()
    assert "return -EINVAL;" in patch and "lease_break_time" not in patch
    trial = try_update(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        top / str(manifest["module"]),
        str(manifest["module_name"]),
        "grep -c . /proc/locks || true",
    )
    assert trial.patched == trial.before
    shutil.rmtree(new)


FCNTL = "fs/fcntl.c"


def _helper_upload(old: Path, new: Path) -> None:
    """A fix that adds a helper in one file and calls it from another, where the helper's
    file also has a hunk that needs a left-out struct change: the definer does not compile in
    the first round, so its new global is not there for the caller until the next."""
    subprocess.run(["cp", "-al", old, new], check=True)
    _edit(
        new,
        "include/linux/proc_fs.h",
        "struct proc_ops {\n\tunsigned int proc_flags;\n",
        "struct proc_ops {\n\tunsigned int proc_flags;\n\tunsigned int proc_spare;\n",
    )
    _edit(
        new,
        LOCKS,
        "static int lease_break_time = 45;\n",
        "static int lease_break_time = 45;\n\nint locks_ksplice_probe(void);\n"
        "int locks_ksplice_probe(void)\n{\n\treturn READ_ONCE(lease_break_time) + 1;\n}\n",
    )
    _edit(
        new,
        LOCKS,
        "static int locks_show(struct seq_file *f, void *v)\n{\n",
        "static int locks_show(struct seq_file *f, void *v)\n{\n"
        "\tBUILD_BUG_ON(sizeof(((struct proc_ops *)NULL)->proc_spare) != 4);\n",
    )
    _edit(
        new,
        FCNTL,
        "\tlong err = -EINVAL;\n\n\tswitch (cmd) {\n\tcase F_DUPFD:\n",
        "\tlong err = -EINVAL;\n\n\tif (locks_ksplice_probe() < 0)\n\t\treturn err;\n"
        "\tswitch (cmd) {\n\tcase F_DUPFD:\n",
    )
    _edit(new, FCNTL, "static long do_fcntl(int fd,", "int locks_ksplice_probe(void);\n\n"
          "static long do_fcntl(int fd,")  # fmt: skip


def test_a_helper_whose_file_fails_a_round_is_still_called_from_another_file(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    new = tmp_path / "new-upload"
    _helper_upload(artifacts.source_tree, new)
    _, report, out = _build_from(artifacts, kallsyms, new, tmp_path, "helper")
    files = {f["path"]: f for f in report["files"]}
    locks, fcntl = files[LOCKS], files[FCNTL]
    # The helper's hunk passed alone; the hunk needing the struct member did not.
    assert locks["hunks"] == 2 and locks["included_hunks"] == 1
    assert [i["reason"] for i in locks["left_out"]] == ["compile"]
    assert "proc_spare" in locks["left_out"][0]["detail"]
    # The caller waited for the helper instead of being left out for lacking it.
    assert fcntl["included_hunks"] == fcntl["hunks"] == 2 and fcntl["left_out"] == [], fcntl
    assert "unknown-symbol" not in report["totals"]["left_out_by_reason"]

    with tarfile.open(out / "ksplice-helper.tar.gz") as tar:
        tar.extractall(out, filter="data")
    top = out / "ksplice-helper"
    manifest = json.loads((top / "manifest.json").read_text())
    trial = try_update(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        top / str(manifest["module"]),
        str(manifest["module_name"]),
        "exec 3</proc/self/status; cat <&3 >/dev/null; echo fcntl-ok",
    )
    assert trial.patched.strip() == "fcntl-ok" == trial.before.strip()
    shutil.rmtree(new)
