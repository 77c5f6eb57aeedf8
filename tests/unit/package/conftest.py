"""Update tarballs for the packaging tests, made the way `create` lays them out: a module built
by gcc from C written here (an x86-64 relocatable object, as a .ko is), a real manifest, the patch
and the description under ksplice-<id>/."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ksplice_pkg.manifest import Manifest, PatchedEntry
from ksplice_pkg.package import PackageFormat, build_packages
from tests.unit.tools import KERNEL_CFLAGS

RELEASE = "6.1.0-56-cloud-amd64"
MODULE_C = """
int cmdline_proc_show(void *m, void *v) { return 42; }
"""

MakeUpdate = Callable[..., Path]


@pytest.fixture(scope="session")
def module_ko(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("ko")
    (work / "m.c").write_text(MODULE_C)
    subprocess.run(
        ["gcc", *KERNEL_CFLAGS, "-c", "-o", work / "m.ko", work / "m.c"],
        check=True,
    )
    return (work / "m.ko").read_bytes()


def manifest_for(update_id: str, module: bytes, **changes: object) -> Manifest:
    base = Manifest(
        id=update_id,
        description=f"Fix /proc/cmdline ({update_id})",
        kernel_release=RELEASE,
        target_build_id=None,
        module=f"ksplice_{update_id}.ko",
        module_name=f"ksplice_{update_id}",
        module_sha256=hashlib.sha256(module).hexdigest(),
        patched=[PatchedEntry("vmlinux", "cmdline_proc_show", 0)],
        verification="run-pre",
        created="2026-11-20T10:11:12Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def write_update_tarball(out: Path, manifest: Manifest, module: bytes) -> Path:
    top = f"ksplice-{manifest.id}"
    path = out / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, data in (
            (manifest.module, module),
            ("manifest.json", manifest.to_json().encode()),
            ("description", (manifest.description + "\n").encode()),
            ("patch", b"--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n"),
        ):
            member = tarfile.TarInfo(f"{top}/{name}")
            member.size = len(data)
            member.mode = 0o600  # as a careless umask leaves it: packages must not care
            member.uid = 1234
            member.mtime = 1_700_000_000
            tar.addfile(member, io.BytesIO(data))
    return path


@pytest.fixture
def make_update(tmp_path: Path, module_ko: bytes) -> MakeUpdate:
    """make_update(id, **manifest changes) -> the tarball."""

    def make(update_id: str, **changes: object) -> Path:
        out = tmp_path / "updates" / update_id
        out.mkdir(parents=True, exist_ok=True)
        return write_update_tarball(out, manifest_for(update_id, module_ko, **changes), module_ko)

    return make


MAINTAINER = "Test Packager <packager@example.org>"
# A fixed SOURCE_DATE_EPOCH for the packages the tests build (2027-01-15).
EPOCH = 1_800_000_000


def build(
    tarballs: list[Path], fmt: PackageFormat, out: Path, epoch: int | None = EPOCH
) -> list[Path]:
    return build_packages(tarballs, fmt, out, source_date_epoch=epoch, maintainer=MAINTAINER)
