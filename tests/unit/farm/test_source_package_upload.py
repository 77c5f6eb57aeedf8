"""`source-package NEW --from OLD`: a whole upload as a Debian source package, made from small
linux-source .debs (a kernel tree and a changelog each) and read back with dpkg-source, make
(the tree rebuild of debian/rules, run for real on OLD's tarball) and lintian."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.distro.srcpkg import identify, prepare_source
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.farm.dsc import write_dsc
from ksplice_pkg.farm.options import FarmBuild, InstalledTarget, farm_build
from ksplice_pkg.farm.upload import read_upload
from ksplice_pkg.run import run, run_text
from ksplice_pkg.upload.changes import compare_trees
from tests.unit.distro.fixtures import (
    DEB_VERSION,
    RELEASE,
    deb,
    headers_deb,
    image_deb,
    kernel_tree,
)

EPOCH = 1767225600  # Thu, 01 Jan 2026 00:00:00 +0000
MAINTAINER = "Lab <lab@example.org>"
NEW_VERSION = "6.1.187-2"
CVES = [f"CVE-2026-1000{i}" for i in range(1, 6)]
TRAILER = " -- Lab Person <lab@example.org>  Mon, 16 Nov 2026 11:17:40 +0100\n\n"
OLD_LOG = f"linux ({DEB_VERSION}) bookworm; urgency=high\n\n  * Stand-in.\n\n" + TRAILER
NEW_LOG = (
    f"linux ({NEW_VERSION}) bookworm; urgency=high\n\n"
    + "".join(f"  * fs: fix a() ({cve})\n" for cve in CVES)
    + "\n"
    + TRAILER
    + OLD_LOG
)


def _old_tree(where: Path) -> Path:
    tree = kernel_tree(where, "linux-source-6.1")
    (tree / "fs" / "gone.c").write_text("int gone;\n")
    (tree / "fs" / "link.c").symlink_to("a.c")
    (tree / "fs" / "dir").mkdir()
    (tree / "fs" / "dir" / "x.c").write_text("int x;\n")
    (tree / "scripts").mkdir()
    (tree / "scripts" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "scripts" / "run.sh").chmod(0o755)
    return tree


def _new_tree(where: Path) -> Path:
    """OLD with a change of every kind: modified, added, removed, a link moved, a directory
    become a file, an executable script modified."""
    tree = _old_tree(where)
    (tree / "fs" / "a.c").write_text("int a(void)\n{\n\treturn 42;\n}\n")
    (tree / "fs" / "gone.c").unlink()
    (tree / "fs" / "new.c").write_text("int new;\n")
    (tree / "fs" / "link.c").unlink()
    (tree / "fs" / "link.c").symlink_to("new.c")
    shutil.rmtree(tree / "fs" / "dir")
    (tree / "fs" / "dir").write_text("now a file\n")
    (tree / "scripts" / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    return tree


def _source_deb(where: Path, tree: Path, version: str, changelog: str | None) -> Path:
    """linux-source-6.1 as Debian ships it: the tree as a tarball, the changelog beside it."""
    tarball = where / "linux-source-6.1.tar.xz"
    run(["tar", "-C", tree.parent, "-cJf", tarball, tree.name])
    files = {"usr/src/linux-source-6.1.tar.xz": tarball.read_bytes()}
    if changelog is not None:
        files["usr/share/doc/linux-source-6.1/changelog.Debian.gz"] = gzip.compress(
            changelog.encode()
        )
    return deb(where, "linux-source-6.1", files, "all", version)


def _inputs(where: Path, new_changelog: str | None = NEW_LOG) -> dict[str, Path]:
    old, new = where / "old", where / "new"
    kallsyms = where / "kallsyms"
    kallsyms.parent.mkdir(parents=True, exist_ok=True)
    kallsyms.write_text("ffffffff81000000 T _text\n")
    return {
        "old": _source_deb(old, _old_tree(old / "src"), DEB_VERSION, OLD_LOG),
        "new": _source_deb(new, _new_tree(new / "src"), NEW_VERSION, new_changelog),
        "old_tarball": old / "linux-source-6.1.tar.xz",
        "image": image_deb(where),
        "headers": headers_deb(where),
        "map": kallsyms,
    }


def _build(inputs: dict[str, Path], cache: Path) -> FarmBuild:
    build = farm_build(
        inputs["new"],
        inputs["image"],
        inputs["headers"],
        None,
        inputs["map"],
        update_id="abc",
        description=None,
        cves=(),
        epoch=EPOCH,
        from_source=inputs["old"],
        cache=cache,
    )
    return FarmBuild(**{**build.__dict__, "maintainer": MAINTAINER})


def test_the_dsc_carries_the_upload_and_its_rules_run_build_from(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    dsc = write_dsc(_build(inputs, tmp_path / "cache"), tmp_path / "out")
    tree = tmp_path / "x"
    run(["dpkg-source", "-x", dsc, tree])
    description = f"kernel source {DEB_VERSION} -> {NEW_VERSION}, live for {RELEASE}"
    control = " ".join((tree / "debian" / "control").read_text().split())
    assert f"Update abc: {description}" in control
    assert f"linux-source-6.1 (= {DEB_VERSION})" in control
    assert f"linux-image-{RELEASE} (= {DEB_VERSION})" in control
    changelog = (tree / "debian" / "changelog").read_text()
    assert f"Live kernel update abc for Linux {RELEASE}: {description}" in " ".join(
        changelog.split()
    )
    # Five CVEs: one item naming them all, wrapped at spaces, not one item each.
    assert changelog.count("  * ") == 2 and changelog.count("Fixes ") == 1, changelog
    assert f"Fixes {', '.join(CVES)}." in " ".join(changelog.split())
    assert (tree / "ksplice" / "changelog.old").read_text() == OLD_LOG
    assert (tree / "ksplice" / "changelog.new").read_text() == NEW_LOG
    assert (tree / "ksplice" / "removed").read_text() == "fs/dir/x.c\nfs/gone.c\n"
    assert not (tree / "ksplice" / "fix.patch").exists()
    with tarfile.open(tree / "ksplice" / "upload.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "fs/a.c", "fs/dir", "fs/link.c", "fs/new.c", "scripts/run.sh",
    ]  # fmt: skip
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(EPOCH, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert (modes["scripts/run.sh"], modes["fs/a.c"]) == (0o755, 0o644)
    assert [m.linkname for m in members if m.issym()] == ["new.c"]
    planned = run_text(
        ["make", "-n", "-f", "debian/rules", "build"],
        cwd=tree,
        env={"DEB_BUILD_OPTIONS": "parallel=3"},
    )
    words = " ".join(planned.replace("\\\n", " ").split())
    assert (
        "ksplice-pkg build debian/ksplice-trees/new --from=debian/ksplice-trees/old "
        "--system-map=ksplice/System.map --vmlinux=/boot/vmlinuz-"
    ) in words, planned
    assert "--jobs=3" in words and "|| [ $? -eq 6 ]" in words
    assert "--description" not in words and "--cve" not in words
    assert "tar -xf /usr/src/linux-source-6.1.tar.xz --strip-components=1" in words


def test_the_same_inputs_give_the_same_source_package(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    first = write_dsc(_build(inputs, tmp_path / "cache"), tmp_path / "a")
    second = write_dsc(_build(inputs, tmp_path / "cache"), tmp_path / "b")
    tarball = first.name.replace(".dsc", ".tar.xz")
    assert (first.parent / tarball).read_bytes() == (second.parent / tarball).read_bytes()


def _rules_tree(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The unpacked source package whose rules take OLD's tarball where the test made it."""
    inputs = _inputs(tmp_path / "in")
    paths = InstalledTarget(str(inputs["old_tarball"]), "/v", "/c", "/s", "/m")
    dsc = write_dsc(_build(inputs, tmp_path / "cache"), tmp_path / "out", paths)
    tree = tmp_path / "x"
    run(["dpkg-source", "-x", dsc, tree])
    return tree, inputs


def test_rules_rebuild_new_over_old_without_writing_through_to_old(tmp_path: Path) -> None:
    tree, inputs = _rules_tree(tmp_path)
    run(["make", "-f", "debian/rules", "debian/ksplice-trees/new"], cwd=tree)
    trees = tree / "debian" / "ksplice-trees"
    cache = tmp_path / "cache"
    old = prepare_source(identify(inputs["old"]), cache)
    new = prepare_source(identify(inputs["new"]), cache)
    # Each side is the source package's tree, plus the changelog `build --from` reads there.
    for rebuilt, given, log in ((trees / "old", old, OLD_LOG), (trees / "new", new, NEW_LOG)):
        assert [c.path for c in compare_trees(given, rebuilt)] == ["debian/changelog"]
        assert (rebuilt / "debian" / "changelog").read_text() == log
    assert os.access(trees / "new" / "scripts" / "run.sh", os.X_OK)
    assert (trees / "old" / "fs" / "dir" / "x.c").is_file()
    # What both keep is one file; what NEW changes is a file of its own.
    same = [(trees / side / "Makefile").stat().st_ino for side in ("old", "new")]
    changed = [(trees / side / "fs" / "a.c").stat().st_ino for side in ("old", "new")]
    assert same[0] == same[1] and changed[0] != changed[1]
    run(["make", "-f", "debian/rules", "clean"], cwd=tree)
    assert not trees.exists()


_FAKE_BUILD = """#!/bin/sh
# A stand-in ksplice-pkg: `build` makes the update tarball and exits with $FAKE_STATUS.
[ "$1" = build ] || exit 0
top=debian/ksplice-out/ksplice-abc
mkdir -p "$top" && echo '{{"id": "abc"}}' > "$top/manifest.json"
tar -C debian/ksplice-out -czf debian/ksplice-out/ksplice-abc.tar.gz ksplice-abc
exit {status}
"""


@pytest.mark.parametrize(("status", "succeeds"), [(0, True), (6, True), (4, False), (1, False)])
def test_rules_take_a_partial_update_and_fail_on_anything_else(
    tmp_path: Path, status: int, succeeds: bool
) -> None:
    tree, _ = _rules_tree(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ksplice-pkg").write_text(_FAKE_BUILD.format(status=status))
    (bin_dir / "ksplice-pkg").chmod(0o755)
    proc = subprocess.run(
        ["make", "-f", "debian/rules", "build"],
        cwd=tree,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode == 0) is succeeds, proc.stdout + proc.stderr
    if succeeds:
        assert '{"id": "abc"}' in proc.stdout  # the manifest, printed into the log


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is installed by scripts/setup")
def test_lintian_accepts_the_dsc_of_an_upload(tmp_path: Path) -> None:
    dsc = write_dsc(_build(_inputs(tmp_path / "in"), tmp_path / "cache"), tmp_path / "out")
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", dsc], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _invoke(inputs: dict[str, Path], out: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "source-package",
            str(inputs["new"]),
            f"--kernel-package={inputs['image']}",
            f"--headers-package={inputs['headers']}",
            f"--system-map={inputs['map']}",
            f"--cache-dir={out.parent / 'cache'}",
            f"-o{out}",
            *extra,
        ],
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )


def test_the_command_writes_the_dsc_of_an_upload(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    result = _invoke(inputs, tmp_path / "out", f"--from={inputs['old']}", "--id=xyz")
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"ksplice-update-{RELEASE}-xyz_20260101.000000.dsc")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patch={patch}", "--from={old}"], "not both"),
        ([], "--patch"),
        (["--from={old}", "--format=srpm"], "only the dsc form"),
        (["--from={old}", "--description=x"], "--description and --cve go with --patch"),
        (["--from={old}", "--cve=CVE-2026-10001"], "--description and --cve go with --patch"),
    ],
)
def test_bad_combinations_are_refused_and_nothing_is_written(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    inputs = _inputs(tmp_path / "in")
    patch = tmp_path / "fix.patch"
    patch.write_text("")
    args = [a.format(patch=patch, old=inputs["old"]) for a in extra]
    result = _invoke(inputs, tmp_path / "out", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_side_without_a_changelog_is_refused(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", new_changelog=None)
    result = _invoke(inputs, tmp_path / "out", f"--from={inputs['old']}")
    assert result.exit_code == 1 and "has no Debian changelog" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_removed_path_with_a_newline_is_refused(tmp_path: Path) -> None:
    old = kernel_tree(tmp_path / "old")
    (old / "debian").mkdir()
    (old / "debian" / "changelog").write_text(OLD_LOG)
    (old / "fs" / "two\nlines.c").write_text("")
    new = kernel_tree(tmp_path / "new")
    (new / "debian").mkdir()
    (new / "debian" / "changelog").write_text(NEW_LOG)
    with pytest.raises(KspliceError, match=re.escape("newline")):
        read_upload(old, new, tmp_path / "cache")
