"""Helpers of the create tests: build an update with the real pipeline, try it in the VM."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ksplice_pkg.config import create_options
from ksplice_pkg.create import create, gather
from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.run import run, run_text
from ksplice_pkg.target.files import TargetSpec
from ksplice_pkg.vm import trial as vm_trial
from ksplice_pkg.vm.guest import GuestResult


@dataclass(frozen=True)
class Update:
    tarball: Path
    manifest: dict[str, object]
    ko: Path
    work_dir: Path  # the create work dir: pre/ and post/ hold the objects it compared

    @property
    def name(self) -> str:
        return str(self.manifest["module_name"])

    @property
    def patched_names(self) -> list[str]:
        patched = self.manifest["patched"]
        assert isinstance(patched, list)
        return sorted(str(p["name"]) for p in patched)

    def pre_object(self, unit: str) -> Path:
        """The object compiled from the pristine source (e.g. unit fs/proc/array.o)."""
        return self.work_dir / "pre" / unit

    def post_object(self, unit: str) -> Path:
        """The object compiled from the patched source; valid until the next build_update."""
        return self.work_dir / "post" / unit


def build_update(
    artifacts: KernelArtifacts,
    kallsyms: Path,
    patch: str,
    out: Path,
    update_id: str,
    *,
    with_binary: bool = True,
    description: str | None = None,
    **options: Any,
) -> Update:
    """An update made by the real pipeline for the fetched kernel (its modules included);
    `options` are create_options' (series, replace, runtime_only...)."""
    given = create_options(
        artifacts.source_tree,
        TargetSpec(
            artifacts.target_dir,
            system_map=kallsyms,
            # Without a binary given, the target dir's vmlinuz would be found: name none.
            binary=artifacts.vmlinuz if with_binary else None,
            release=artifacts.release,
            modules_dir=artifacts.modules_dir,
        ),
        cache=cache_dir(),
        patch=patch.encode(),
        update_id=update_id,
        description=description or f"test update {update_id}",
        output_dir=out,
        **options,
    )
    cfg = gather(given)
    if not with_binary:
        cfg = replace(cfg, target=replace(cfg.target, binary=None))
    tarball = create(cfg)
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    top = out / f"ksplice-{update_id}"
    manifest = json.loads((top / "manifest.json").read_text())
    return Update(
        tarball=tarball,
        manifest=manifest,
        ko=top / str(manifest["module"]),
        work_dir=cfg.work_dir,
    )


def try_update(
    artifacts: KernelArtifacts,
    update: Update,
    check: str,
    files: dict[str, Path] | None = None,
) -> tuple[str, str, str, GuestResult]:
    """Run `check` (shell) before loading, after the transition, and after disable + rmmod
    (vm.trial, as the demo does). Returns what it printed each time."""
    trial = vm_trial.try_update(
        artifacts.vmlinuz, artifacts.modules_dir, update.ko, update.name, check, files
    )
    return trial.before, trial.patched, trial.restored, trial.result


def static_program(directory: Path, name: str, source: str) -> Path:
    """A static binary for the busybox guest, compiled from C source written in the test."""
    c_file = directory / f"{name}.c"
    c_file.write_text(source)
    binary = directory / name
    run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", binary, c_file])
    return binary


def _readelf_symbols(obj: Path) -> list[list[str]]:
    """readelf -sW rows: Num, Value, Size, Type, Bind, Vis, Ndx, Name. Ndx may be two words
    (`OS [0xff20]` for SHN_LIVEPATCH); the name is the last field."""
    rows = [line.split() for line in run_text(["readelf", "-sW", obj]).splitlines()]
    return [r for r in rows if len(r) in (8, 9) and r[0].endswith(":")]


def object_functions(obj: Path) -> set[str]:
    """The functions an object defines, as GNU readelf lists them."""
    return {r[-1] for r in _readelf_symbols(obj) if r[3] == "FUNC" and r[6] != "UND"}


def object_symbol_names(obj: Path) -> set[str]:
    """Every named symbol of an object (a .ko included), as GNU readelf lists them."""
    return {r[-1] for r in _readelf_symbols(obj)}


def relocation_targets(obj: Path, section: str) -> list[str]:
    """The symbol each relocation of `section` (e.g. __ex_table) is against, as GNU readelf
    names it: with -ffunction-sections, a reference into a function is against the section
    symbol `.text.<function>`."""
    targets: list[str] = []
    inside = False
    for line in run_text(["readelf", "-rW", obj]).splitlines():
        if line.startswith("Relocation section"):
            inside = line.split("'")[1] == f".rela{section}"
            continue
        fields = line.split()
        if inside and len(fields) >= 5 and fields[2].startswith("R_X86_64_"):
            targets.append(fields[4])
    return targets


@dataclass(frozen=True)
class KallsymsEntry:
    address: int
    type: str
    name: str


def vmlinux_kallsyms(kallsyms: Path) -> list[KallsymsEntry]:
    """vmlinux's symbols in /proc/kallsyms order: the order the kernel counts sympos in."""
    entries = []
    for line in kallsyms.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            entries.append(KallsymsEntry(int(fields[0], 16), fields[1], fields[2]))
    return entries
