"""Fixtures of the runtime's unit tests: a store in a temporary directory, real manifests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ksplice_pkg.manifest import Manifest, PatchedEntry
from ksplice_pkg.runtime.store import Store


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    for var, sub in (
        ("KSPLICE_PKG_UPDATES_DIR", "updates"),
        ("KSPLICE_PKG_STATE_DIR", "state"),
        ("KSPLICE_PKG_RUN_DIR", "run"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return Store.default()


def manifest(
    update_id: str,
    *,
    depends_on: list[str] | None = None,
    replace: bool = False,
    created: str = "2026-01-01T00:00:00Z",
    release: str = "6.1.0-test-amd64",
    build_id: str | None = None,
    module_data: bytes = b"",
) -> Manifest:
    return Manifest(
        id=update_id,
        description=f"update {update_id}",
        kernel_release=release,
        target_build_id=build_id,
        module=f"ksplice_{update_id}.ko",
        module_name=f"ksplice_{update_id}",
        module_sha256=hashlib.sha256(module_data).hexdigest(),
        patched=[PatchedEntry("vmlinux", "cmdline_proc_show", 0)],
        verification="run-pre",
        depends_on=depends_on or [],
        replace=replace,
        created=created,
    )


def update_dir(parent: Path, m: Manifest, module_data: bytes) -> Path:
    """A ksplice-<id>/ directory as create writes it."""
    d = parent / f"ksplice-{m.id}"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(m.to_json())
    (d / m.module).write_bytes(module_data)
    (d / "description").write_text(m.description + "\n")
    (d / "patch").write_text("--- a/x\n+++ b/x\n")
    return d
