"""The manifest of an update (update.assemble), from what the stages before it found."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ksplice_pkg.manifest import Manifest, PatchedEntry, Upload, Verification
from ksplice_pkg.module.extract import PatchedFunction
from ksplice_pkg.module.link import LinkedModule
from ksplice_pkg.module.parts import Part
from ksplice_pkg.update.assemble import assemble_manifest


def test_manifest_says_what_each_part_patches(tmp_path: Path) -> None:
    ko = tmp_path / "ksplice_fix1.ko"
    ko.write_bytes(b"\x7fELF module")
    parts = [
        Part(
            "fs/proc/cmdline.o",
            tmp_path / "part0.o",
            [(PatchedFunction("a", "__k0"), 0)],
            [],
            frozenset(),
        ),
        Part(
            "crypto/proc.o",
            tmp_path / "part1.o",
            [(PatchedFunction("c_start", "__k1"), 3), (PatchedFunction("c_next", "__k2"), 0)],
            ["c_helper"],
            frozenset({"printk"}),
        ),
    ]
    manifest = assemble_manifest(
        update_id="fix1",
        description="a fix",
        release="6.1.0-56-cloud-amd64",
        build_id="ab" * 20,
        module=LinkedModule("ksplice_fix1", ko, 4),
        parts=parts,
        verification=Verification.RUN_PRE,
        depends_on=["base1"],
        replace=False,
        left_out=["fs/proc/cmdline.o: the patch changes __init function f"],
        created=1767225600,
    )
    assert manifest.patched == [
        PatchedEntry("vmlinux", "a", 0),
        PatchedEntry("vmlinux", "c_start", 3),
        PatchedEntry("vmlinux", "c_next", 0),
    ]
    assert manifest.new_functions == ["c_helper"]
    assert (manifest.module, manifest.module_name) == ("ksplice_fix1.ko", "ksplice_fix1")
    assert manifest.module_sha256 == hashlib.sha256(b"\x7fELF module").hexdigest()
    assert (manifest.klp_relocations, manifest.verification) == (4, "run-pre")
    assert (manifest.depends_on, manifest.replace) == (["base1"], False)
    assert manifest.left_out == ["fs/proc/cmdline.o: the patch changes __init function f"]
    assert manifest.created == "2026-01-01T00:00:00Z"
    # What the build side writes, the runtime side reads back.
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_manifest_carries_the_upload_it_is_given(tmp_path: Path) -> None:
    ko = tmp_path / "ksplice_up1.ko"
    ko.write_bytes(b"\x7fELF module")

    def assemble(upload: Upload | None = None) -> Manifest:
        return assemble_manifest(
            update_id="up1",
            description="kernel source 6.1.192-2 -> 6.1.192-3",
            release="6.1.0-56-cloud-amd64",
            build_id=None,
            module=LinkedModule("ksplice_up1", ko, 0),
            parts=[],
            verification=Verification.RUN_PRE,
            depends_on=[],
            replace=True,
            left_out=[],
            created=1767225600,
            upload=upload,
        )

    upload = Upload(
        "6.1.192-2", "6.1.192-3", ["nfsd: a fix (CVE-2026-99362)"], {"CVE-2026-99362": "unknown"}
    )
    assert assemble(upload).upload == upload
    assert Manifest.from_json(assemble(upload).to_json()).upload == upload
    assert assemble().upload is None
