"""The manifest of an update, from what the stages before found."""

from __future__ import annotations

from ksplice_pkg.fsutil import sha256_file
from ksplice_pkg.manifest import Manifest, PatchedEntry, Upload, Verification
from ksplice_pkg.module.link import LinkedModule
from ksplice_pkg.module.parts import Part
from ksplice_pkg.timestamp import format_created


def assemble_manifest(
    *,
    update_id: str,
    description: str,
    release: str,
    build_id: str | None,
    module: LinkedModule,
    parts: list[Part],
    verification: Verification,
    depends_on: list[str],
    replace: bool,
    left_out: list[str],
    created: int,
    cves: list[str] | None = None,
    upload: Upload | None = None,
) -> Manifest:
    return Manifest(
        id=update_id,
        description=description,
        kernel_release=release,
        target_build_id=build_id,
        module=module.ko.name,
        module_name=module.name,
        module_sha256=sha256_file(module.ko),
        patched=[
            PatchedEntry(part.objname or "vmlinux", fn.old_name, sympos)
            for part in parts
            for fn, sympos in part.functions
        ],
        verification=verification.value,
        new_functions=[name for part in parts for name in part.new_functions],
        klp_relocations=module.klp_relocations,
        depends_on=depends_on,
        replace=replace,
        left_out=left_out,
        cves=sorted(set(cves or [])),
        created=format_created(created),
        upload=upload,
    )
