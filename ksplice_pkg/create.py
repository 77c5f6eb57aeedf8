"""`ksplice-pkg create`: a patch against the target kernel's source becomes a livepatch update.

The pipeline, in order: inputs (source and kernel packages unpacked, the patch read; then the
configuration) -> source (the patched tree) -> build (pre and post objects) -> diff -> runpre
(the pre code is the target's) -> module (extract, link, klp relocations) -> update (manifest
and tarball). `--prebuild` stops after build, with the whole tree built.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.cache import WORK_INPUTS, WORK_LOCK, held, mark_used
from ksplice_pkg.compile.kbuild import PreparedTree, prepare_tree
from ksplice_pkg.compile.objects import compile_pairs, derived_tree
from ksplice_pkg.compile.prebuild import prebuild
from ksplice_pkg.config import (
    CreateConfig,
    CreateOptions,
    Mode,
    PrebuildConfig,
    create_config,
    prebuild_config,
)
from ksplice_pkg.diff.unit import UnitChange, diff_pairs
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import InternalError
from ksplice_pkg.fsutil import atomic_write, ensure_writable_dir
from ksplice_pkg.inputs import Inputs, unpack_inputs
from ksplice_pkg.log import logger, step
from ksplice_pkg.manifest import Upload, Verification
from ksplice_pkg.module.link import link_update
from ksplice_pkg.module.parts import Part, write_part
from ksplice_pkg.module.resolve import unit_resolver
from ksplice_pkg.module.shared import NO_SHARED, SharedNew, shared_new
from ksplice_pkg.module.special import entry_sizes
from ksplice_pkg.runpre.unit import UnitRunPre
from ksplice_pkg.source.patch import read_patch
from ksplice_pkg.source.tree import patched_tree
from ksplice_pkg.tarball import write_tarball
from ksplice_pkg.target.consistency import CheckedTarget, check_target
from ksplice_pkg.target.modules import TargetModules
from ksplice_pkg.target.symbols import SymbolMap
from ksplice_pkg.target.vmlinuz import open_vmlinux
from ksplice_pkg.update.assemble import assemble_manifest
from ksplice_pkg.update.sign import sign_module


def gather(options: CreateOptions) -> CreateConfig:
    """The first stage: the inputs unpacked and the patch read, then the configuration."""
    if options.patch is None or options.mode is not Mode.UPDATE:
        raise InternalError("an update needs a patch: --prebuild is gather_prebuild's")
    inputs = _inputs(options)
    patch = read_patch(inputs.tree, options.patch)
    return create_config(options, inputs.tree, inputs.target, inputs.series, patch)


def gather_prebuild(options: CreateOptions) -> PrebuildConfig:
    """The first stage of `create --prebuild`: the inputs unpacked; no patch."""
    if options.mode is not Mode.PREBUILD:
        raise InternalError("gather_prebuild is for --prebuild; an update is gather's")
    inputs = _inputs(options)
    return prebuild_config(options, inputs.tree, inputs.target)


def _inputs(options: CreateOptions) -> Inputs:
    return unpack_inputs(
        options.source,
        options.target,
        options.packages,
        cache=options.cache,
        keyring=options.keyring,
        series=options.series,
    )


def create(cfg: CreateConfig) -> Path:
    """Run the pipeline; returns the update tarball."""
    ensure_writable_dir(cfg.work_dir, "the work directory (under the cache)")
    ensure_writable_dir(cfg.output_dir, "the output directory")
    with work_dir_held(cfg):
        return _create(cfg)


def prebuild_tree(cfg: PrebuildConfig) -> Path:
    """Build the whole tree once with the differ's flags; returns the work dir."""
    ensure_writable_dir(cfg.work_dir, "the work directory (under the cache)")
    with work_dir_held(cfg):
        prebuild(prepare(cfg), cfg.jobs)
    return cfg.work_dir


@dataclass(frozen=True)
class Target:
    """The target kernel as the back half of the pipeline reads it: its symbol map, its binary
    (None: run-pre skipped) and the checks of its files against each other."""

    symbols: SymbolMap
    vmlinux: Vmlinux | None
    checked: CheckedTarget


def read_target(cfg: CreateConfig) -> Target:
    """The target's own files, read first: a bad input fails before minutes of building."""
    symbols = SymbolMap.load(cfg.target.system_map)
    vmlinux = open_vmlinux(cfg.target.binary, cfg.source, cfg.cache) if cfg.target.binary else None
    if vmlinux is None:
        logger.info("run-pre verification skipped: no vmlinux or vmlinuz of the target given")
    return Target(symbols, vmlinux, check_target(cfg.target, symbols, vmlinux))


class UnitParts:
    """Each changed unit made into its part of the livepatch module: run-pre against the
    target (its image, or its module's .ko), then the references of the new code resolved."""

    def __init__(self, cfg: CreateConfig, tree: PreparedTree, target: Target) -> None:
        self.target = target
        self.sizes = entry_sizes(tree, cfg.jobs)
        self.modules = TargetModules(cfg.target.modules_dir)
        self.runpre = UnitRunPre(target.symbols, target.vmlinux, self.modules, cfg.series)
        self.dest = cfg.work_dir / "parts"

    def part(self, change: UnitChange, n: int, shared: SharedNew = NO_SHARED) -> Part:
        """shared: the new globals the update's units define, which other units may call."""
        proof = self.runpre.verify(change)
        t = self.target
        resolver = unit_resolver(
            change, proof.evidence, t.symbols, t.checked.symvers, self.modules, shared
        )
        return write_part(change, resolver, n, self.sizes, proof.sympos, self.dest, shared.names)


def _create(cfg: CreateConfig) -> Path:
    target = read_target(cfg)
    tree = prepare(cfg)
    earlier = [p.patch for p in cfg.series]
    with step("applying the patch to a copy of the tree"):
        post = patched_tree(
            cfg.source, cfg.work_dir / "post-src", cfg.patch, cfg.patch_opt, earlier
        )
    pre = _series_base(cfg, tree, post.changed) if cfg.series else tree
    pairs = compile_pairs(pre, post, cfg.work_dir / "post", cfg.jobs)
    changes = diff_pairs(pairs, cfg.runtime_only)
    units = UnitParts(cfg, tree, target)
    shared = shared_new(changes)
    parts = [units.part(change, n, shared) for n, change in enumerate(changes)]
    left_out = [what for change in changes for what in change.diff.init_changes]
    tarball = finish_update(cfg, tree, target, parts, left_out)
    shutil.rmtree(post.post, ignore_errors=True)
    return tarball


def finish_update(
    cfg: CreateConfig,
    tree: PreparedTree,
    target: Target,
    parts: list[Part],
    left_out: list[str],
    upload: Upload | None = None,
) -> Path:
    """The parts linked into the livepatch module, signed, described by its manifest and
    written with it into the update tarball."""
    module = link_update(
        tree,
        cfg.work_dir / "module",
        cfg.id,
        cfg.description,
        parts,
        cfg.jobs,
        exports=target.checked.symvers.vmlinux_exports(),
        replace=cfg.replace,
    )
    if cfg.signing is not None:
        # After the klp relocations are written (link_update), before the manifest takes the
        # module's sha256: the signature covers the module as the kernel loads it.
        with step(f"signing {module.ko.name} with {cfg.signing.cert.name}"):
            data = sign_module(module.ko.read_bytes(), cfg.signing.key, cfg.signing.cert)
            atomic_write(module.ko, data)
    vmlinux = target.vmlinux
    manifest = assemble_manifest(
        update_id=cfg.id,
        description=cfg.description,
        release=cfg.target.release,
        build_id=vmlinux.build_id() if vmlinux else None,
        module=module,
        parts=parts,
        verification=Verification.RUN_PRE if vmlinux else Verification.SKIPPED,
        depends_on=series_ids(cfg),
        replace=cfg.replace,
        left_out=left_out,
        created=cfg.created,
        cves=list(cfg.cves),
        upload=upload,
    )
    return write_tarball(
        cfg.output_dir, manifest, module.ko, cfg.patch, cfg.description, cfg.created
    )


def _series_base(cfg: CreateConfig, tree: PreparedTree, units: tuple[str, ...]) -> PreparedTree:
    """The pre side of a --series update: the tree with the earlier updates' patches applied,
    prepared like `tree`."""
    earlier = [p.patch for p in cfg.series]
    with step(f"applying the series below this update: {', '.join(series_ids(cfg))}"):
        base = patched_tree(cfg.source, cfg.work_dir / "series-src", b"", cfg.patch_opt, earlier)
    return derived_tree(tree, base.post, cfg.work_dir / "series-pre", units)


def series_ids(cfg: CreateConfig) -> list[str]:
    return [p.manifest.id for p in cfg.series]


def prepare(cfg: CreateConfig | PrebuildConfig) -> PreparedTree:
    return prepare_tree(
        cfg.source,
        cfg.work_dir / "pre",
        config=cfg.target.kconfig,
        symvers=cfg.target.symvers,
        release=cfg.target.release,
        jobs=cfg.jobs,
    )


@contextmanager
def work_dir_held(cfg: CreateConfig | PrebuildConfig) -> Iterator[None]:
    """One create at a time per work dir: they share the prepared pre tree and its objects.
    The cache entries it reads are marked used and listed beside the lock, for `ksplice-pkg
    cache --clean`, which leaves them alone while the lock is held."""
    with held(cfg.work_dir / WORK_LOCK):
        target = cfg.target
        used = mark_used(
            cfg.cache,
            [cfg.source, cfg.work_dir, target.system_map, target.kconfig, target.symvers,
             target.binary, target.modules_dir],
        )  # fmt: skip
        atomic_write(cfg.work_dir / WORK_INPUTS, "".join(f"{entry}\n" for entry in used))
        yield
