"""`build NEW --from OLD`: the pipeline of an upload made into one cumulative update.

inputs (OLD is the target's source, checked against its packages; NEW unpacked beside it) ->
diff (the trees compared) -> classify (what the target builds of each change) -> compile and
verify (derive.py's rounds, run-pre per unit) -> link (create's back half, `replace` set) ->
report.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ksplice_pkg.compile.headers import IncludeIndex, kernel_build
from ksplice_pkg.config import CreateConfig, CreateOptions, check_description, create_config
from ksplice_pkg.create import UnitParts, finish_update, prepare, read_target, work_dir_held
from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.distro.srcpkg import SourceKind, identify, prepare_source
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.fsutil import atomic_write, ensure_writable_dir
from ksplice_pkg.inputs import unpack_inputs
from ksplice_pkg.log import Phases, logger
from ksplice_pkg.manifest import CveStatus, Upload
from ksplice_pkg.module.parts import Part
from ksplice_pkg.module.shared import SharedNew
from ksplice_pkg.upload.changelog import UploadLog, read_upload_log, tie_cves, with_function_context
from ksplice_pkg.upload.changes import FileChange, compare_trees
from ksplice_pkg.upload.derive import Derivation, Derived
from ksplice_pkg.upload.report import Report, Side
from ksplice_pkg.upload.scope import Scoped, scope_changes

# A source package's packaging, not the kernel's source: debian/ and quilt's record of the
# patches it applied (dpkg-source -x leaves .pc/ in a 3.0 (quilt) tree).
_PACKAGING = re.compile(r"(debian|\.pc)/")


@dataclass
class UploadResult:
    tarball: Path | None  # None: nothing live-patchable, or refused as incomplete
    report: Report


def build_from_upload(
    options: CreateOptions,
    new_source: Path,
    phases: Phases,
    *,
    report_file: Path | None = None,
    require_complete: bool = False,
) -> UploadResult:
    """`options.source` is OLD_SOURCE, the one the target kernel was built from."""
    with phases.phase("inputs: both sources and the target kernel"):
        new = identify(new_source)
        keyring = options.keyring if new.kind is SourceKind.DSC else None
        # The new source unpacks while the target's packages and old source do: each is half a
        # minute of decompressing and writing, mostly outside the GIL, on a machine of 2 cores.
        # If the old side fails, its error is the one reported, once the new side's unpack
        # has ended (whole, as an atomic cache entry, or not at all).
        with ThreadPoolExecutor(1) as pool:
            unpacking = pool.submit(prepare_source, new, options.cache, keyring)
            inputs = unpack_inputs(
                options.source, options.target, options.packages,
                cache=options.cache, keyring=options.keyring,
            )  # fmt: skip
            new_tree = unpacking.result().resolve()
        log = read_upload_log(options.source, inputs.tree, new_source, new_tree)
        old_side = Side(options.source, log.old_version or identify(options.source).version)
        new_side = Side(new_source, log.new_version or new.version)
        cfg = replace(
            create_config(options, inputs.tree, inputs.target, (), b""),
            replace=True,
            description=options.description
            or check_description(upload_description(old_side, new_side, inputs.target.release)),
        )
    ensure_writable_dir(cfg.work_dir, "the work directory (under the cache)")
    ensure_writable_dir(cfg.output_dir, "the output directory")
    with work_dir_held(cfg):
        return _build(cfg, new_tree, old_side, new_side, log, phases, report_file, require_complete)


def _compare(cfg: CreateConfig, new_tree: Path) -> list[FileChange]:
    """The trees compared; which paths differ is kept beside the old tree's objects when both
    trees are unpacked source packages, whose cache entries are named by their content and
    never change."""
    sources = (cfg.cache / "sources").resolve()
    if not (cfg.source.is_relative_to(sources) and new_tree.is_relative_to(sources)):
        return compare_trees(cfg.source, new_tree)
    key = hashlib.sha256(str(new_tree).encode()).hexdigest()[:16]
    record = cfg.work_dir / f"upload-diff-{key}.json"
    known = json.loads(record.read_text()) if record.is_file() else None
    changes = compare_trees(cfg.source, new_tree, known)
    if known is None:
        atomic_write(record, json.dumps([c.path for c in changes]))
    return changes


def cve_status(log: UploadLog, scoped: list[Scoped], derived: Derived) -> dict[str, str]:
    """Each CVE the upload names: included when every file the changelog ties it to went into
    the update whole (or is not built for this kernel), left out when one of them had a change
    left out, unknown when neither the changelog nor the upload (one changed file) ties it to
    a file."""
    diffs = {}
    for s in scoped:
        c = s.change
        if c.old is not None and c.new is not None and c.hunks:
            whole = c.unified({h.index for h in c.hunks}).decode(errors="replace")
            diffs[s.path] = with_function_context(whole, c.old.decode(errors="replace"))
    tied = tie_cves(log, diffs)
    # The packaging changes with every upload of a source package (its changelog at least):
    # what counts is how many of the kernel's own files changed.
    kernel_files = [s.path for s in scoped if not _PACKAGING.match(s.path)]
    if len(kernel_files) == 1:
        # An upload that changes one file fixes whatever it fixes in that file: no guess.
        tied = {cve: frozenset(kernel_files) for cve in log.cves}
    left = {item.path for item in derived.left_out}
    status = {}
    for cve in log.cves:
        paths = tied.get(cve)
        if not paths:
            status[cve] = CveStatus.UNKNOWN.value
        elif paths & left:
            status[cve] = CveStatus.LEFT_OUT.value
        else:
            status[cve] = CveStatus.INCLUDED.value
    return status


def upload_description(old: Side, new: Side, release: str) -> str:
    """The update's description when none is given: what source-package writes into its
    control file and changelog too, so that both say what the manifest says."""
    if old.version and new.version:
        return f"kernel source {old.version} -> {new.version}, live for {release}"
    return f"kernel source {old.source.name} -> {new.source.name}, live for {release}"


def _build(
    cfg: CreateConfig,
    new_tree: Path,
    old: Side,
    new: Side,
    log: UploadLog,
    phases: Phases,
    report_file: Path | None,
    require_complete: bool,
) -> UploadResult:
    with phases.phase("prepare: the target's files read, the old tree configured like it"):
        target = read_target(cfg)
        tree = prepare(cfg)
    with phases.phase("diff: the two trees compared"):
        changes = _compare(cfg, new_tree)
        logger.info("%d file(s) differ", len(changes))
    if not changes:
        raise RefusedError(
            "the two sources are the same: nothing to update",
            hint="give the newer upload as NEW_SOURCE and the target's as --from",
        )
    with phases.phase("classify: what the target's configuration builds of each change"):
        # The include index (Python reading the tree's files) is built while kbuild's dry run
        # (a make process) lists the units: ten seconds each, cold.
        with ThreadPoolExecutor(1) as pool:
            indexing = pool.submit(IncludeIndex.of, tree)
            build = kernel_build(tree)
            index = indexing.result()
        scoped = scope_changes(changes, build, index)
    units = UnitParts(cfg, tree, target)
    verify = [0.0]

    def make_part(change: UnitChange, n: int, shared: SharedNew) -> Part:
        start = time.monotonic()
        try:
            return units.part(change, n, shared)
        finally:
            verify[0] += time.monotonic() - start

    derivation = Derivation(tree, scoped, build, index, make_part, cfg.work_dir, cfg.jobs)
    with phases.phase("compile and verify: the after tree, in rounds"):
        derived = derivation.run()
    phases.add("  of which run-pre and parts", verify[0])
    cves = cve_status(log, scoped, derived)
    report = Report(old, new, cfg.target.release, scoped, derived, index, cves, len(log.entries))
    upload = Upload(old.version, new.version, [e.line for e in log.entries], cves)
    included = [cve for cve, status in cves.items() if status == CveStatus.INCLUDED.value]
    result = UploadResult(None, report)
    try:
        if not derived.parts:
            raise RefusedError(
                "no change of the upload is live-patchable for this kernel"
                + (f" ({len(derived.left_out)} left out)" if derived.left_out else ""),
                hint="see the report's left_out entries; a reboot is needed for them",
            )
        if require_complete and derived.left_out:
            raise RefusedError(
                f"{len(derived.left_out)} change(s) of the upload cannot be live-patched, and "
                "--require-complete was given: no update made",
                hint="see the report for each change and its reason; drop --require-complete "
                "for a partial update",
            )
        patch = b"".join(
            s.change.unified(derived.accepted[s.path])
            for s in scoped
            if derived.accepted.get(s.path)
        )
        with phases.phase(f"link: {len(derived.parts)} part(s) into the livepatch module"):
            result.tarball = finish_update(
                replace(cfg, patch=patch, cves=tuple(sorted({*cfg.cves, *included}))),
                tree,
                target,
                derived.parts,
                [item.line() for item in derived.left_out],
                upload,
            )
        report.update = {"id": cfg.id, "tarball": str(result.tarball), "packages": []}
    finally:
        report.timings = phases.timings
        if report_file is not None:
            report.write(report_file)
    return result
