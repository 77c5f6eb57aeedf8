"""Reproducible from the patch on: the same kernel, patch, id and SOURCE_DATE_EPOCH give
byte-identical update tarballs (module, `created` stamp and all) and byte-identical .deb and
.rpm packages, built twice by the real pipeline in different directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.package import PackageFormat, build_packages
from tests.lab.test_runtime import A_PATCH
from tests.lab.updates import build_update

EPOCH = 1767225600  # 2026-01-01T00:00:00Z


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpm is installed by scripts/setup")
def test_same_inputs_and_epoch_give_the_same_bytes(
    artifacts: KernelArtifacts, kallsyms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    built: list[dict[str, bytes]] = []
    for run in ("first", "second"):
        out = tmp_path / run
        update = build_update(artifacts, kallsyms, A_PATCH, out / "update", "repro")
        assert update.manifest["created"] == "2026-01-01T00:00:00Z"
        files = {"update": update.tarball.read_bytes()}
        for fmt in PackageFormat:
            (package,) = build_packages([update.tarball], fmt, out / fmt.value)
            files[fmt.value] = package.read_bytes()
        built.append(files)
    first, second = built
    for name in first:
        assert first[name] == second[name], f"the {name} differs between two builds"
