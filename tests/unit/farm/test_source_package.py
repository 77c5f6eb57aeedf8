"""Hotpatch source packages, made from stand-in kernel packages and read back with the distro's
own tools: dpkg-source, make (what debian/rules would run), lintian, rpmbuild and rpmlint."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksplice_pkg.cli import main
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.farm.dsc import write_dsc
from ksplice_pkg.farm.options import FarmBuild, farm_build
from ksplice_pkg.farm.srpm import write_srpm
from ksplice_pkg.run import run, run_text
from tests.unit.distro.fixtures import DEB_VERSION, FIX, RELEASE, deb, headers_deb, image_deb

EPOCH = 1767225600  # Thu, 01 Jan 2026 00:00:00 +0000
MAINTAINER = "Lab <lab@example.org>"
# make expands $ and rpmbuild % in what they read: the description must come out as written.
DESCRIPTION = "fix $HOME and 100% of `uname`'s \\ cases"


def _inputs(where: Path, source_version: str = DEB_VERSION) -> dict[str, Path]:
    where.mkdir(parents=True, exist_ok=True)
    patch = where / "fix.patch"
    patch.write_text(FIX)
    kallsyms = where / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T _text\n")
    return {
        "source": deb(where, "linux-source-6.1", {"usr/src/x": b""}, "all", source_version),
        "image": image_deb(where),
        "headers": headers_deb(where),
        "patch": patch,
        "map": kallsyms,
    }


def _build(inputs: dict[str, Path], **options: object) -> FarmBuild:
    given: dict[str, object] = {
        "update_id": "abc",
        "description": DESCRIPTION,
        "cves": ("CVE-2024-26581", "CVE-2024-1086"),
        "epoch": EPOCH,
        **options,
    }
    build = farm_build(
        inputs["source"],
        inputs["image"],
        inputs["headers"],
        inputs["patch"],
        inputs["map"],
        **given,  # type: ignore[arg-type]
    )
    return FarmBuild(**{**build.__dict__, "maintainer": MAINTAINER})


def test_dsc_unpacks_and_its_rules_run_build_against_the_installed_kernel(
    tmp_path: Path,
) -> None:
    build = _build(_inputs(tmp_path / "in"))
    dsc = write_dsc(build, tmp_path / "out", distribution="bookworm-security")
    assert dsc.name == f"ksplice-update-{RELEASE}-abc_20260101.000000.dsc"
    changes = (tmp_path / "out" / dsc.name.replace(".dsc", "_source.changes")).read_text()
    assert "Architecture: source" in changes and dsc.name in changes
    assert "Distribution: bookworm-security" in changes
    tree = tmp_path / "x"
    run(["dpkg-source", "-x", dsc, tree])
    control = (tree / "debian" / "control").read_text()
    for relation in (
        f"linux-image-{RELEASE} (= {DEB_VERSION})",
        f"linux-headers-{RELEASE} (= {DEB_VERSION})",
        f"linux-source-6.1 (= {DEB_VERSION})",
        "ksplice-pkg (>= ",
    ):
        assert relation in control
    changelog = (tree / "debian" / "changelog").read_text()
    assert changelog.startswith(
        f"ksplice-update-{RELEASE}-abc (20260101.000000) bookworm-security; urgency=medium"
    )
    assert "Fixes CVE-2024-26581." in changelog and "Fixes CVE-2024-1086." in changelog
    assert f"-- {MAINTAINER}  Thu, 01 Jan 2026 00:00:00 +0000" in changelog
    assert (tree / "ksplice" / "fix.patch").read_text() == FIX
    assert (tree / "ksplice" / "System.map").read_text().endswith("_text\n")
    # What make would run (-n prints it): the build with the installed kernel's files, the
    # description as given, parallel jobs from DEB_BUILD_OPTIONS.
    planned = run_text(
        ["make", "-n", "-f", "debian/rules", "build"],
        cwd=tree,
        env={"DEB_BUILD_OPTIONS": "nocheck parallel=3"},
    )
    words = " ".join(planned.replace("\\\n", " ").split())
    for word in (
        "ksplice-pkg build /usr/src/linux-source-6.1.tar.xz",
        f"--vmlinux=/boot/vmlinuz-{RELEASE}",
        f"--kconfig=/boot/config-{RELEASE}",
        f"--symvers=/usr/src/linux-headers-{RELEASE}/Module.symvers",
        f"--modules-dir=/lib/modules/{RELEASE}",
        "--format=deb",
        "--jobs=3",
        f"--cache-dir={tree}/debian/ksplice-cache",
    ):
        assert word in words, planned
    shown = run_text(["sh", "-c", f"printf '%s\\n' {_description_word(words)}"])
    assert shown == f"--description={DESCRIPTION}\n"


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is installed by scripts/setup")
def test_lintian_accepts_the_dsc(tmp_path: Path) -> None:
    dsc = write_dsc(_build(_inputs(tmp_path / "in")), tmp_path / "out")
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", dsc], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpm is installed by scripts/setup")
def test_srpm_spec_reads_back_and_passes_rpmlint(tmp_path: Path) -> None:
    srpm = write_srpm(_build(_inputs(tmp_path / "in")), tmp_path / "out")
    assert srpm.name == f"ksplice-update-{RELEASE}-abc-20260101.000000-1.src.rpm"
    unpacked = tmp_path / "x"
    unpacked.mkdir()
    subprocess.run(f"rpm2cpio {srpm} | cpio -idm --quiet", shell=True, cwd=unpacked, check=True)
    (spec,) = unpacked.glob("*.spec")
    assert (unpacked / "fix.patch").read_text() == FIX
    parsed = run_text(["rpmspec", "-P", spec])
    assert f"BuildRequires: linux-source-6.1 = {DEB_VERSION}" in parsed
    assert f"--vmlinux=/boot/vmlinuz-{RELEASE}" in parsed
    assert "%{ksplice" not in parsed
    assert "Fixes CVE-2024-1086" in parsed
    shown = run_text(["sh", "-c", f"printf '%s\\n' {_description_word(parsed)}"])
    assert shown == f"--description={DESCRIPTION}\n"
    if shutil.which("rpmlint"):
        lint = subprocess.run(["rpmlint", spec], capture_output=True, text=True, check=False)
        assert lint.returncode == 0 and "0 errors, 0 warnings" in lint.stdout, lint.stdout


def _description_word(command: str) -> str:
    """The --description word of a shell command line, quoted as the shell reads it."""
    (line,) = (ln for ln in command.splitlines() if "--description=" in ln)
    start = line.index("'--description=")
    return line[start : line.index(" --cve=", start)]


def test_refuses_kernel_packages_of_another_version(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", source_version="6.1.187-2")
    with pytest.raises(KspliceError, match=re.escape("6.1.187-2")):
        _build(inputs)


def test_refuses_a_source_the_farm_cannot_install(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    tarball.write_bytes(b"")
    with pytest.raises(KspliceError, match=re.escape("linux-source-X.Y .deb")):
        _build({**inputs, "source": tarball})


def test_command_needs_the_symbol_map_and_writes_nothing_without(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    args = [
        "source-package",
        str(inputs["source"]),
        f"--kernel-package={inputs['image']}",
        f"--headers-package={inputs['headers']}",
        f"--patch={inputs['patch']}",
        f"-o{tmp_path / 'out'}",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "--system-map" in result.output
    assert not (tmp_path / "out").exists()
    ok = CliRunner().invoke(
        main,
        [*args, f"--system-map={inputs['map']}", "--maintainer", MAINTAINER, "--id=xyz"],
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().endswith(f"ksplice-update-{RELEASE}-xyz_20260101.000000.dsc")
