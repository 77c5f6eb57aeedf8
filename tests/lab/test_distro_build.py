"""`ksplice-pkg build` from what Debian's archive holds: the kernel's real source package
(linux_*.dsc from the deb-src entries), its real image and headers packages, and the symbol map
of the kernel booted in the lab. The update must load in that kernel; a source RPM made here from
the same sources with Debian's patch series in its spec must give the same; and a tree that
differs from the binary in the patched function must be refused by run-pre, naming it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import (
    KernelArtifacts,
    fetch,
    fetch_source_package,
)
from ksplice_pkg.distro.srcpkg import identify, prepare_source
from ksplice_pkg.errors import RunPreMismatchError
from ksplice_pkg.run import run
from ksplice_pkg.vm.trial import try_update
from tests.lab.kernel import release_with_source
from tests.unit.distro.fixtures import source_rpm

EXAMPLE = Path(__file__).parents[2] / "ksplice_pkg" / "examples" / "proc-cmdline.patch"


@pytest.fixture(scope="module")
def distro(cache: Path) -> tuple[KernelArtifacts, Path, Path]:
    """The kernel's artifacts (image, headers, booted kallsyms), its .dsc, its symbol map."""
    # Pinned with KSPLICE_PKG_DSC_RELEASE; else the newest whose source the archive serves.
    if pinned := os.environ.get("KSPLICE_PKG_DSC_RELEASE"):
        release, dsc = pinned, fetch_source_package(cache, pinned)
    else:
        release, dsc = release_with_source(cache)
    artifacts = fetch(cache, release)
    if not artifacts.kallsyms.is_file():
        from ksplice_pkg.vm.capture import capture_kallsyms

        capture_kallsyms(artifacts)
    return artifacts, dsc, artifacts.kallsyms


def _debs(artifacts: KernelArtifacts) -> list[str]:
    debs = artifacts.root / "debs"
    (image,) = debs.glob(f"linux-image-{artifacts.release}_*.deb")
    (headers,) = debs.glob(f"linux-headers-{artifacts.release}_*.deb")
    return [f"--kernel-package={image}", f"--headers-package={headers}"]


def _build(
    source: Path,
    distro: tuple[KernelArtifacts, Path, Path],
    out: Path,
    update_id: str,
    fmt: str = "tarball",
) -> Result:
    artifacts, _, kallsyms = distro
    return CliRunner().invoke(
        main,
        [
            "build",
            str(source),
            *_debs(artifacts),
            f"--system-map={kallsyms}",
            f"--patch={EXAMPLE}",
            f"--format={fmt}",
            f"--id={update_id}",
            f"-o{out}",
        ],
    )


def _loads(artifacts: KernelArtifacts, result: Result, out: Path, update_id: str) -> None:
    assert result.exit_code == 0, result.output
    tarball = out / f"ksplice-{update_id}.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    top = out / f"ksplice-{update_id}"
    manifest = json.loads((top / "manifest.json").read_text())
    assert manifest["kernel_release"] == artifacts.release
    assert manifest["verification"] == "run-pre"
    trial = try_update(
        artifacts.vmlinuz,
        artifacts.modules_dir,
        top / str(manifest["module"]),
        str(manifest["module_name"]),
        "cat /proc/cmdline",
    )
    assert not trial.before.startswith("ksplice: ")
    assert trial.patched.startswith("ksplice: ")
    assert trial.restored == trial.before


def test_update_from_debian_source_package_loads(
    distro: tuple[KernelArtifacts, Path, Path], tmp_path: Path
) -> None:
    artifacts, dsc, _ = distro
    result = _build(dsc, distro, tmp_path, "dsc", fmt="deb")
    _loads(artifacts, result, tmp_path, "dsc")
    # The timings of each phase are printed, then the tarball and the hotpatch package.
    assert re.search(r"s  total\n", result.output)
    _package_holds_module(result, tmp_path, "dsc", ".deb")


def _package_holds_module(result: Result, out: Path, update_id: str, suffix: str) -> None:
    """The hotpatch package printed last carries the very module that loaded."""
    package = Path(result.output.strip().splitlines()[-1])
    assert package.suffix == suffix and package.parent == out, result.output
    unpacked = out / "package"
    if suffix == ".deb":
        run(["dpkg-deb", "-x", package, unpacked])
    else:
        unpacked.mkdir()
        cpio = run(["rpm2cpio", package]).stdout
        run(["cpio", "-idm", "--quiet", "--no-absolute-filenames", "-D", unpacked], input=cpio)
    (ko,) = unpacked.rglob(f"ksplice_{update_id}.ko")
    assert ko.read_bytes() == (out / f"ksplice-{update_id}" / ko.name).read_bytes()


def _srpm_from_debian(dsc: Path, where: Path) -> tuple[Path, list[str]]:
    """A kernel .src.rpm: the upstream tarball of the .dsc as Source0, Debian's patch series
    (debian/patches/series, from the .dsc's debian tarball) as Patch1..N in series order.

    rpm keeps the expanded %prep, paths and all, in the header: `where` must be the same
    directory every run for the .src.rpm (and so its cached tree) to be the same."""
    shutil.rmtree(where, ignore_errors=True)
    sources = where / "SOURCES"
    sources.mkdir(parents=True)
    (orig,) = dsc.parent.glob("linux_*.orig.tar.xz")
    (debian_tar,) = dsc.parent.glob(f"{dsc.stem}.debian.tar.xz")
    os.link(orig, sources / orig.name)
    with tarfile.open(debian_tar) as tar:
        tar.extractall(where, filter="data")
    series = [
        line.split()[0]
        for line in (where / "debian" / "patches" / "series").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = []
    for n, rel in enumerate(series, start=1):
        name = f"{n:04d}-{Path(rel).name}"
        shutil.copy(where / "debian" / "patches" / rel, sources / name)
        names.append(name)
    version = dsc.stem.split("_")[1].split("-")[0]
    top = orig.name.removesuffix(".orig.tar.xz").replace("_", "-")
    patches = "\n".join(f"Patch{n}: {name}" for n, name in enumerate(names, start=1))
    spec = sources / "kernel.spec"
    spec.write_text(
        f"""Name: kernel
Version: {version}
Release: 1
Summary: Debian's kernel source as a source RPM
License: GPL-2.0-only
BuildArch: noarch
Source0: {orig.name}
{patches}

%description
Debian's linux source, its patch series applied in %prep.

%prep
%setup -q -n {top}
%autopatch -p1

%files
"""
    )
    srpm = source_rpm(
        spec,
        where,
        {
            # The tarball is compressed already: a second compression only costs minutes.
            "_source_payload": "w1.gzdio",
            # Reproducible (with the fixed directory above), so that the unpacked tree, cached
            # by content, is reused next time: with the copied patches' mtimes or a per-run
            # directory in it, every run's .src.rpm was new and left another 1.5 GB tree.
            "use_source_date_epoch_as_buildtime": "1",
            "clamp_mtime_to_source_date_epoch": "1",
            "_buildhost": "lab",
        },
    )
    return srpm, names


def test_update_from_source_rpm_with_patch_series_loads(
    distro: tuple[KernelArtifacts, Path, Path], tmp_path: Path, cache: Path
) -> None:
    artifacts, dsc, _ = distro
    srpm, patches = _srpm_from_debian(dsc, cache / "lab" / "srpm")
    assert len(patches) > 50  # Debian's series: the %prep has real work to do
    out = tmp_path / "out"
    result = _build(srpm, distro, out, "srpm", fmt="rpm")
    _loads(artifacts, result, out, "srpm")
    _package_holds_module(result, out, "srpm", ".rpm")
    # %prep applied the series: every file the patches touch is as in Debian's own tree
    # (dpkg-source -x of the .dsc), not as in the upstream tarball.
    srpm_tree = prepare_source(identify(srpm), cache)
    debian_tree = prepare_source(identify(dsc), cache)
    touched = set()
    for name in patches:
        text = (srpm.parent / "SOURCES" / name).read_text(errors="replace")
        touched |= set(re.findall(r"^\+\+\+ [^/\s]+/(\S+)", text, re.M))
    assert len(touched) > 50
    for rel in sorted(touched):
        theirs = debian_tree / rel
        ours = srpm_tree / rel
        assert ours.exists() == theirs.exists(), rel
        if theirs.is_file():
            assert ours.read_bytes() == theirs.read_bytes(), rel


def test_source_that_differs_from_binary_is_refused_by_run_pre(
    distro: tuple[KernelArtifacts, Path, Path], cache: Path, tmp_path: Path
) -> None:
    """An unrelated change in the function the patch touches: the pre code built from this tree
    is not the target's, and run-pre says which function."""
    artifacts, _, _ = distro
    # Under the cache, so that the work dir (keyed by the tree's path) stays warm across runs.
    tree = cache / "lab" / f"runpre-mismatch-{artifacts.release}"
    if not (tree / "Makefile").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-al", artifacts.source_tree, tree])
        cmdline = tree / "fs" / "proc" / "cmdline.c"
        text = cmdline.read_text()
        cmdline.unlink()  # break the hard link: the fetched tree stays pristine
        cmdline.write_text(
            text.replace("\tseq_putc(m, '\\n');", "\tseq_putc(m, ' ');\n\tseq_putc(m, '\\n');")
        )
        assert cmdline.read_text() != text
    out = tmp_path / "out"
    result = _build(tree, distro, out, "mismatch")
    assert result.exit_code == RunPreMismatchError.exit_code, result.output
    assert "cmdline_proc_show" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_real_kernel_package_of_another_version_is_refused_naming_both(
    distro: tuple[KernelArtifacts, Path, Path], cache: Path, tmp_path: Path
) -> None:
    """The .dsc of one upload with the image of another (the lab's default kernel, when the
    archive's newest source is not served): refused before anything is unpacked or built."""
    artifacts, dsc, kallsyms = distro
    other = next(
        (
            deb
            for deb in (cache / "kernels").glob("*/debs/linux-image-*.deb")
            if artifacts.release not in deb.name
        ),
        None,
    )
    if other is None:
        other_artifacts = fetch(cache)  # Debian's current kernel
        if other_artifacts.release == artifacts.release:
            pytest.skip("the archive serves the source of its current kernel: no other to mix")
        (other,) = (other_artifacts.root / "debs").glob("linux-image-*.deb")
    version = other.name.split("_")[1]
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(dsc),
            f"--kernel-package={other}",
            f"--system-map={kallsyms}",
            f"--patch={EXAMPLE}",
            f"-o{tmp_path / 'out'}",
        ],
    )
    assert result.exit_code == 1, result.output
    assert version in result.output and dsc.stem.split("_")[1] in result.output
    assert other.name in result.output and dsc.name in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
