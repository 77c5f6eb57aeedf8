"""Build farms: the hotpatch as a source package, built by the real farm tools.

A clean bookworm chroot made by mmdebstrap; sbuild in unshare mode builds the .dsc with the
target kernel's packages and the tool's own .debs (built from this tree) installed in it, the
network cut during the build. The .deb it makes must be the very bytes `build` makes here under
the same SOURCE_DATE_EPOCH, and it must install and apply in the lab's userland on that kernel.
The source RPM: rpmbuild --rebuild gives the .rpm, rpmlint passes its spec. A whole upload
(`source-package NEW --from OLD`): Debian's one-fix ext4 upload, built by sbuild into the same
.deb as `build NEW --from OLD`.

Marked `farm`: deselected unless `-m` names it (a chroot build takes minutes, too slow for CI).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.run import run
from tests.lab import uploads
from tests.lab.runtime_guest import PRELUDE, output, status
from tests.lab.test_package import stand_in_deb
from tests.lab.test_upload import PARTIAL, target_of
from tests.lab.userland import image_for, new_overlay, run_userland
from tests.unit.package.own import SYSTEM_PATH, build_debs

pytestmark = [
    pytest.mark.farm,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("mmdebstrap", "sbuild", "newuidmap", "rpmbuild")),
        reason="mmdebstrap, sbuild, uidmap and rpm are installed by scripts/setup",
    ),
]

EXAMPLE = Path(__file__).parents[2] / "ksplice_pkg" / "examples" / "proc-cmdline.patch"
EPOCH = 1767225600  # 2026-01-01T00:00:00Z: the changelog's date, the farm's SOURCE_DATE_EPOCH
UPDATE_ID = "farm"
UPLOAD_ID = "farmfrom"
CVE = "CVE-2024-26581"
MAINTAINER = "ksplice-pkg lab <lab@example.org>"
SUITE = "bookworm"
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]


def _debs(artifacts: KernelArtifacts) -> dict[str, Path]:
    debs = artifacts.root / "debs"
    (image,) = debs.glob(f"linux-image-{artifacts.release}_*.deb")
    (headers,) = debs.glob(f"linux-headers-{artifacts.release}_*.deb")
    (source,) = debs.glob("linux-source-*.deb")
    return {"image": image, "headers": headers, "source": source}


def _inputs(artifacts: KernelArtifacts, kallsyms: Path) -> list[str]:
    """What `source-package` and `build` are both given: the same update of the same kernel."""
    debs = _debs(artifacts)
    return [
        str(debs["source"]),
        f"--kernel-package={debs['image']}",
        f"--headers-package={debs['headers']}",
        f"--system-map={kallsyms}",
        f"--patch={EXAMPLE}",
        f"--id={UPDATE_ID}",
        f"--cve={CVE}",
    ]


def _invoke(args: list[str], ok: tuple[int, ...] = (0,)) -> Result:
    result = CliRunner().invoke(main, args, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert result.exit_code in ok, f"{args[0]}: {result.output}"
    return result


def _source_package(artifacts: KernelArtifacts, kallsyms: Path, fmt: str, out: Path) -> Path:
    result = _invoke(
        [
            "source-package",
            *_inputs(artifacts, kallsyms),
            f"--maintainer={MAINTAINER}",
            f"--format={fmt}",
            f"-o{out}",
        ]
    )
    return Path(result.output.strip().splitlines()[-1])


def bookworm_chroot(cache: Path) -> Path:
    """sbuild's unshare-mode chroot: a tarball of a buildd variant of bookworm, made once and
    kept in the cache (safe to delete: made again)."""
    tarball = cache / "farm" / f"{SUITE}-amd64.tar"
    if not tarball.is_file():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(f".{os.getpid()}.tmp.tar")
        run(
            [
                "mmdebstrap",
                "--variant=buildd",
                "--skip=output/mknod",
                "--architectures=amd64",
                SUITE,
                partial,
                *MIRRORS,
            ],
            timeout=1800,
        )
        partial.rename(tarball)
    return tarball


def _sbuild(dsc: Path, chroot: Path, extra: Path, out: Path, *options: str) -> Path:
    """sbuild's unshare mode cuts the network during the build: the build runs offline."""
    out.mkdir()
    proc = subprocess.run(
        [
            "sbuild",
            "--chroot-mode=unshare",
            f"--chroot={chroot}",
            f"--dist={SUITE}",
            "--arch=amd64",
            "--no-run-lintian",
            "--no-run-piuparts",
            "--no-run-autopkgtest",
            "--no-source-only-changes",
            f"--extra-package={extra}",
            f"--build-dir={out}",
            "--jobs=2",
            *options,
            dsc,
        ],
        cwd=out,
        capture_output=True,
        check=False,
        timeout=3600,
    )
    (log,) = (p for p in out.glob("*.build") if not p.is_symlink())
    assert proc.returncode == 0, log.read_text(errors="replace")[-6000:]
    return log


FARM_BOOT = """
cat /proc/cmdline > "$OUT/before"
rc install apt-get install -y --no-install-recommends ./linux-image-*.deb \
    ./ksplice-pkg-runtime_*.deb ./{package}
cat /proc/cmdline > "$OUT/installed"
ls /sys/kernel/livepatch > "$OUT/live"
"""


def test_sbuild_builds_the_dsc_into_the_same_deb(
    artifacts: KernelArtifacts, kallsyms: Path, cache: Path, tmp_path: Path
) -> None:
    dsc = _source_package(artifacts, kallsyms, "dsc", tmp_path / "source")
    lintian = subprocess.run(
        ["lintian", "--fail-on", "error,warning", dsc], capture_output=True, text=True, check=False
    )
    assert lintian.returncode == 0, lintian.stdout + lintian.stderr
    run(["dpkg-source", "-x", dsc, tmp_path / "unpacked"])
    changelog = (tmp_path / "unpacked" / "debian" / "changelog").read_text()
    assert f"Fixes {CVE}." in changelog and "Thu, 01 Jan 2026 00:00:00 +0000" in changelog

    extra = tmp_path / "extra"
    extra.mkdir()
    for deb in [*build_debs(tmp_path / "own"), *_debs(artifacts).values()]:
        shutil.copy(deb, extra / deb.name)
    log = _sbuild(dsc, bookworm_chroot(cache), extra, tmp_path / "farm").read_text()
    # The build's phases, timings and the update's manifest are in the build log.
    assert "s  total" in log and f'"{CVE}"' in log, log[-4000:]
    (farm_deb,) = (tmp_path / "farm").glob("ksplice-update-*.deb")

    local = tmp_path / "local"
    _invoke(
        [
            "build",
            *_inputs(artifacts, kallsyms),
            "--format=deb",
            f"-o{local}",
        ]
    )
    local_deb = local / farm_deb.name
    assert local_deb.is_file(), sorted(p.name for p in local.iterdir())
    assert _sha256(farm_deb) == _sha256(local_deb), "the farm's .deb differs from build's"

    stand_in = stand_in_deb(f"linux-image-{artifacts.release}", tmp_path / "stand-in")
    runtime = next(extra.glob("ksplice-pkg-runtime_*.deb"))
    files = {p.name: p for p in (farm_deb, stand_in, runtime)}
    overlay = new_overlay(image_for(artifacts, cache), tmp_path / "disk.qcow2")
    result = run_userland(
        artifacts, cache, PRELUDE + FARM_BOOT.format(package=farm_deb.name),
        files=files, overlay=overlay,
    )  # fmt: skip
    assert result.status == 0, result.console[-4000:]
    out = result.outputs
    assert status(out, "install") == 0, output(out, "install")
    assert not out["before"].decode().startswith("ksplice: ")
    assert out["installed"].decode().startswith("ksplice: "), output(out, "install")
    assert out["live"].decode().split() == [f"ksplice_{UPDATE_ID}"]


def test_sbuild_builds_the_dsc_from_an_upload_into_the_same_deb(
    cache: Path, tmp_path: Path
) -> None:
    """Debian's one-fix ext4 upload for the kernel built from the older source: the farm gets
    OLD's linux-source as a package and NEW's changes in the source package."""
    pair = uploads.one_fix_pair(cache, uploads.EXT4)
    artifacts = target_of(cache, pair)
    (old,) = (artifacts.root / "debs").glob(f"linux-source-*_{pair.old.version}_all.deb")
    new = uploads.source_deb(cache, pair.new.version)
    debs = _debs(artifacts)
    inputs = [
        f"--kernel-package={debs['image']}",
        f"--headers-package={debs['headers']}",
        f"--system-map={artifacts.kallsyms}",
        f"--id={UPLOAD_ID}",
    ]
    start = time.monotonic()
    result = _invoke(
        ["source-package", str(new), f"--from={old}", *inputs, f"--maintainer={MAINTAINER}",
         f"-o{tmp_path / 'source'}"]
    )  # fmt: skip
    dsc = Path(result.output.strip().splitlines()[-1])
    written = time.monotonic() - start
    lintian = subprocess.run(
        ["lintian", "--fail-on", "error,warning", dsc], capture_output=True, text=True, check=False
    )
    assert lintian.returncode == 0, lintian.stdout + lintian.stderr

    extra = tmp_path / "extra"
    extra.mkdir()
    for deb in [*build_debs(tmp_path / "own"), debs["image"], debs["headers"], old]:
        shutil.copy(deb, extra / deb.name)
    chroot = bookworm_chroot(cache)
    start = time.monotonic()
    # The archive's linux-source is NEW's (or newer): apt's resolver takes only a package's
    # candidate, aptitude's the older version the relation names, from the extra packages.
    resolver = "--build-dep-resolver=aptitude"
    log = _sbuild(dsc, chroot, extra, tmp_path / "farm", resolver).read_text()
    farm = time.monotonic() - start
    assert "s  total" in log and f'"from": "{pair.old.version}"' in log, log[-4000:]
    (farm_deb,) = (tmp_path / "farm").glob("ksplice-update-*.deb")

    local = tmp_path / "local"
    start = time.monotonic()
    _invoke(
        ["build", str(new), f"--from={old}", *inputs, "--format=deb", f"-o{local}"],
        ok=(0, PARTIAL),
    )
    built = time.monotonic() - start
    print(f"source-package {written:.1f} s, sbuild {farm:.1f} s, local build {built:.1f} s")
    local_deb = local / farm_deb.name
    assert local_deb.is_file(), sorted(p.name for p in local.iterdir())
    assert _sha256(farm_deb) == _sha256(local_deb), "the farm's .deb differs from build's"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rpmbuild_rebuilds_the_source_rpm(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path
) -> None:
    srpm = _source_package(artifacts, kallsyms, "srpm", tmp_path / "source")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(f"rpm2cpio {srpm} | cpio -idm --quiet", shell=True, cwd=unpacked, check=True)
    (spec,) = unpacked.glob("*.spec")
    lint = subprocess.run(["rpmlint", spec], capture_output=True, text=True, check=False)
    assert lint.returncode == 0 and "0 errors, 0 warnings" in lint.stdout, lint.stdout

    # The kernel's files where this machine has them, not where its packages install them.
    defines = {
        "_topdir": tmp_path / "rpmbuild",
        "ksplice_source": _debs(artifacts)["source"],
        "ksplice_vmlinuz": artifacts.vmlinuz,
        "ksplice_config": artifacts.config,
        "ksplice_symvers": artifacts.symvers,
        "ksplice_modules": artifacts.modules_dir,
    }
    argv: list[str | Path] = ["rpmbuild", "--rebuild", "--nodeps"]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    # rpmbuild runs the tool as a farm's chroot would, from PATH: this tree's, in the venv.
    env = {
        "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
        "HOME": str(tmp_path),
        "SOURCE_DATE_EPOCH": str(EPOCH),
    }
    run([*argv, srpm], env=env, timeout=3600)
    (rpm,) = (tmp_path / "rpmbuild" / "RPMS").rglob("*.rpm")
    listed = run(["rpm", "-qlp", rpm]).stdout.decode().split()
    base = f"/usr/lib/ksplice-pkg/updates/{artifacts.release}/{UPDATE_ID}"
    assert f"{base}/ksplice_{UPDATE_ID}.ko" in listed and f"{base}/manifest.json" in listed
    scripts = run(["rpm", "-qp", "--scripts", rpm]).stdout.decode()
    assert f"ksplice-pkg apply {UPDATE_ID}" in scripts
    changelog = run(["rpm", "-qp", "--changelog", rpm]).stdout.decode()
    assert f"Fixes {CVE}" in changelog
