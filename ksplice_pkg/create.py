"""`ksplice-pkg create`: a patch against the target kernel's source becomes a livepatch update.

The pipeline, in order: prepare the pre tree -> patch a hard-link copy (post tree) -> compile the
affected objects on both sides -> diff them -> verify the pre code against the target binary
(run-pre) -> extract the changed code -> link the module -> write the klp relocations -> pack.
"""

from __future__ import annotations

import fcntl
import hashlib
import secrets
import shutil
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.build import (
    PREBUILT_STAMP,
    SECTION_FLAGS,
    build_pairs,
    clone_objdir,
    objects_for,
)
from ksplice_pkg.diff import (
    UnitDiff,
    diff_objects,
    functions,
    has_ftrace_entry,
    named_target,
    patch_through_callers,
    relocations_in,
)
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.writer import write_object
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.kbuild import PreparedTree, prepare_tree
from ksplice_pkg.log import logger, step
from ksplice_pkg.manifest import Manifest, PatchedEntry
from ksplice_pkg.module import klp
from ksplice_pkg.module.extract import PatchedFunction, extract
from ksplice_pkg.module.link import ObjectPatch, link_module, main_source
from ksplice_pkg.module.resolve import exported_symbols, make_resolver
from ksplice_pkg.module.special import entry_sizes
from ksplice_pkg.run import run
from ksplice_pkg.source import make_post_tree, stabilise_line_numbers
from ksplice_pkg.target.files import TargetFiles
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap
from ksplice_pkg.target.verify import Match, PreFunction, PreReloc, verify_function
from ksplice_pkg.target.vmlinux import Vmlinux
from ksplice_pkg.update import sha256_file, write_tarball

ID_ALPHABET = string.ascii_lowercase + string.digits


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


@dataclass(frozen=True)
class CreateConfig:
    source: Path
    target: TargetFiles
    patch: str  # unified diff text; "" with prebuild
    patch_opt: str
    id: str
    description: str
    jobs: int
    output_dir: Path
    work_dir: Path
    prebuild: bool = False


def work_dir_for(cache: Path, source: Path) -> Path:
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache / "work" / f"{source.resolve().name}-{key}"


def _prepare(cfg: CreateConfig) -> PreparedTree:
    return prepare_tree(
        cfg.source,
        cfg.work_dir / "pre",
        config=cfg.target.kconfig,
        symvers=cfg.target.symvers,
        release=cfg.target.release,
        jobs=cfg.jobs,
    )


def prebuild(cfg: CreateConfig) -> None:
    """Build the whole kernel once with the differ's flags: later creates then compile only what
    a patch needs, and header changes find their users in kbuild's dependency records."""
    tree = _prepare(cfg)
    with step(f"prebuilding vmlinux of {cfg.source} ({SECTION_FLAGS})"):
        run(
            [
                *tree.make_args(cfg.jobs),
                f"KCFLAGS={SECTION_FLAGS}",
                "vmlinux",
            ],
            timeout=6 * 3600,
        )
    (tree.objdir / PREBUILT_STAMP).write_text(cfg.target.release + "\n")


@contextmanager
def _locked(work_dir: Path) -> Iterator[None]:
    """One create at a time per work dir: they share the prepared pre tree and its objects."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with (work_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create(cfg: CreateConfig) -> Path:
    with _locked(cfg.work_dir):
        if cfg.prebuild:
            prebuild(cfg)
            return cfg.work_dir
        return _create(cfg)


def _create(cfg: CreateConfig) -> Path:
    symbols = SymbolMap.load(cfg.target.system_map)
    vmlinux = Vmlinux.open(cfg.target.binary, cfg.source) if cfg.target.binary else None
    tree = _prepare(cfg)
    with step("applying the patch to a copy of the tree"):
        post = make_post_tree(cfg.source, cfg.work_dir / "post-src", cfg.patch, cfg.patch_opt)
        for path in post.changed:
            if path.endswith((".c", ".h")) and (cfg.source / path).is_file():
                stabilise_line_numbers(cfg.source / path, post.post / path, path)
        units = objects_for(post.changed, tree)
        clone_objdir(tree, cfg.work_dir / "post", units)
    with step(f"compiling {len(units)} object(s) before and after: {', '.join(units)}"):
        pairs = build_pairs(tree, post.post, cfg.work_dir / "post", units, cfg.jobs)
    diffs: list[tuple[UnitDiff, ElfObject, ElfObject]] = []
    for pair in pairs:
        pre_obj, post_obj = read_object(pair.pre), read_object(pair.post)
        d = diff_objects(pair.unit, pre_obj, post_obj)
        patch_through_callers(pair.unit, pre_obj, post_obj, d)
        for name, why in d.changed.items():
            logger.debug("%s: %s changed: %s", pair.unit, name, why)
        for name in d.new_functions:
            logger.debug("%s: %s is new", pair.unit, name)
        if not d.empty:
            diffs.append((d, pre_obj, post_obj))
    if not diffs:
        raise KspliceError(
            "the patch changes no function's object code",
            hint="nothing to update: a comment, or code this config does not build?",
        )

    exported = exported_symbols(cfg.target.symvers)
    sizes = entry_sizes(tree, cfg.jobs)
    # All units of vmlinux make one klp_object: livepatch names its kobject after the object,
    # so a second "vmlinux" object would not register.
    vmlinux_funcs: list[tuple[PatchedFunction, int]] = []
    parts: list[Path] = []
    entries: list[PatchedEntry] = []
    new_functions: list[str] = []
    verification = "run-pre" if vmlinux else "skipped: no vmlinux or vmlinuz given"
    if vmlinux is None:
        logger.info("run-pre verification skipped: no vmlinux or vmlinuz of the target given")
    (cfg.work_dir / "parts").mkdir(parents=True, exist_ok=True)
    for n, (d, pre_obj, post_obj) in enumerate(diffs):
        evidence = Evidence(d.unit, pre_obj, symbols, vmlinux)
        matches = _verify(d, evidence)
        resolver = make_resolver(exported, symbols, evidence.lookup, d.unit, d.static_map)
        extracted = extract(post_obj, d, resolver, f"u{n}", sizes)
        part = cfg.work_dir / "parts" / f"part{n}.o"
        write_object(extracted.obj, part)
        parts.append(part)
        for fn in extracted.patched:
            sympos = matches[fn.old_name].sympos if fn.old_name in matches else 0
            vmlinux_funcs.append((fn, sympos))
            entries.append(PatchedEntry("vmlinux", fn.old_name, sympos))
        new_functions += d.new_functions
        logger.info(
            "%s: patching %s%s",
            d.unit,
            ", ".join(f.old_name for f in extracted.patched) or "nothing",
            f"; new: {', '.join(d.new_functions)}" if d.new_functions else "",
        )
    if not vmlinux_funcs:
        raise KspliceError(
            "the patch changes no function of the running kernel, it only adds new code "
            f"({', '.join(new_functions)}) that nothing running would call",
            hint="a livepatch takes effect by replacing existing functions",
        )
    module = f"ksplice_{cfg.id}"
    with step(f"linking {module}.ko"):
        main_c = main_source(module, cfg.description, [ObjectPatch(None, vmlinux_funcs)])
        ko = link_module(
            tree,
            workdir=cfg.work_dir / "module",
            module=module,
            main_c=main_c,
            objects=parts,
            jobs=cfg.jobs,
        )
        relocations = klp.convert(ko)
    manifest = Manifest(
        id=cfg.id,
        description=cfg.description,
        kernel_release=cfg.target.release,
        target_build_id=vmlinux.build_id() if vmlinux else None,
        module=ko.name,
        module_name=module,
        module_sha256=sha256_file(ko),
        patched=entries,
        verification=verification,
        new_functions=new_functions,
        klp_relocations=relocations,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    tarball = write_tarball(cfg.output_dir, manifest, ko, cfg.patch, cfg.description)
    shutil.rmtree(post.post, ignore_errors=True)
    return tarball


def _pre_function(obj: ElfObject, name: str) -> PreFunction:
    fn = functions(obj)[name]
    code = obj.sections[fn.section].data[fn.offset : fn.offset + fn.size]
    relocs = []
    for r in relocations_in(obj, fn.section, fn.offset, fn.size):
        named, addend = named_target(obj, r)
        relocs.append(PreReloc(r.offset - fn.offset, r.type, named.name if named else "", addend))
    return PreFunction(name=name, code=code, relocs=tuple(relocs))


class Evidence:
    """What the target binary says each pre-object symbol is, gathered by run-pre on demand.

    The changed functions are verified up front; a symbol the update references that none of
    them does is looked up by verifying another function of the unit that references it (or
    the symbol itself, when it is a function of the unit).
    """

    def __init__(self, unit: str, pre: ElfObject, symbols: SymbolMap, vmlinux: Vmlinux | None):
        self.unit, self.pre, self.symbols, self.vmlinux = unit, pre, symbols, vmlinux
        self.known: dict[str, KernelSymbol] = {}
        self.tried: set[str] = set()

    def verify(self, name: str) -> Match:
        assert self.vmlinux is not None
        pre_fn = _pre_function(self.pre, name)
        match = verify_function(pre_fn, self.symbols, self.vmlinux)
        self.tried.add(name)
        for reloc in pre_fn.relocs:
            seen = match.references.get(reloc.offset)
            if seen is not None and reloc.symbol:
                self.known.setdefault(reloc.symbol, seen)
        at = self.symbols.symbol_at(match.address)
        if at is not None:
            self.known.setdefault(name, at)
        return match

    def lookup(self, name: str) -> KernelSymbol | None:
        if name in self.known or self.vmlinux is None:
            return self.known.get(name)
        pre_funcs = functions(self.pre)
        referrers = [name] if name in pre_funcs else []
        referrers += [
            f.name
            for f in pre_funcs.values()
            if any(
                (target := named_target(self.pre, r)[0]) is not None and target.name == name
                for r in relocations_in(self.pre, f.section, f.offset, f.size)
            )
        ]
        for referrer in referrers[:4]:
            if referrer in self.tried:
                continue
            try:
                self.verify(referrer)
            except KspliceError as e:
                logger.debug("%s: no evidence from %s: %s", self.unit, referrer, e.message)
                self.tried.add(referrer)
            if name in self.known:
                break
        return self.known.get(name)


def _verify(d: UnitDiff, evidence: Evidence) -> dict[str, Match]:
    """Run-pre for each function the unit's update replaces (refusing what cannot be patched);
    returns the matches by name."""
    matches: dict[str, Match] = {}
    symbols = evidence.symbols
    for post_name in d.changed:
        name = d.pre_names[post_name]
        if name.endswith(".cold"):
            continue
        # patch_through_callers has handled file-local ones; what is left cannot be patched.
        if not has_ftrace_entry(evidence.pre, functions(evidence.pre)[name]):
            raise KspliceError(
                f"{d.unit}: {name} has no ftrace entry (__fentry__ call): livepatch cannot "
                "redirect it",
                hint="it is notrace or in a noinstr section; patch its callers instead",
            )
        found = symbols.vmlinux_symbols_named(name)
        if not found:
            owners = sorted({s.module for s in symbols.symbols if s.name == name and s.module})
            if owners:
                raise KspliceError(
                    f"{d.unit}: {name} belongs to module {', '.join(owners)}, not to vmlinux",
                    hint="updates to loadable modules are not supported yet",
                )
        if evidence.vmlinux is None:
            if not found:
                raise KspliceError(
                    f"{d.unit}: {name} is not in the target kernel's symbol map",
                    hint="it may be inlined everywhere in the target: patch its callers",
                )
            if len(found) > 1:
                raise KspliceError(
                    f"{d.unit}: {name} has {len(found)} definitions in the target kernel",
                    hint="give --vmlinux or a vmlinuz so run-pre verification can tell which",
                )
            continue
        match = evidence.verify(name)
        matches[name] = match
        logger.debug(
            "%s: %s matches the target at %#x (sympos %d)",
            d.unit,
            name,
            match.address,
            match.sympos,
        )
    return matches
