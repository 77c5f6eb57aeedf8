"""The "after" side of the update: the old tree plus the hunks a livepatch can carry.

Every hunk of a built file starts accepted, except those that can never be (a struct layout, a
Makefile, assembly, a new or removed unit). Then, in rounds: the after tree is written, the
units it changes are compiled on both sides, diffed, verified against the target and made into
module parts. A unit that fails anywhere takes its hunks out (its own file's, or, when it only
changed through headers, the header hunks that reach it), and the next round recompiles what
that changed, until a round leaves nothing out. So no unit the update carries is compiled
against a change left out.

The after tree and its object directory persist beside the pre tree in the work dir: a file is
rewritten only when its content changes, so make recompiles only what a round changed, and a
second run of the same upload compiles nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ksplice_pkg.compile.headers import (
    IncludeIndex,
    KernelBuild,
    changed_names,
    header_users,
    judge_units,
    read_source,
    units_mentioning,
)
from ksplice_pkg.compile.kbuild import PreparedTree, check_make_path
from ksplice_pkg.compile.objects import clone_objdir, compile_command, headers_read, module_of
from ksplice_pkg.compile.preprocessed import Difference
from ksplice_pkg.diff.callers import patch_through_callers
from ksplice_pkg.diff.layout import LayoutError, check_layouts
from ksplice_pkg.diff.unit import UnitChange, diff_objects
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, RefusedError, UnknownSymbolError
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.log import logger, step
from ksplice_pkg.module.parts import Part
from ksplice_pkg.module.shared import SharedNew, shared_new
from ksplice_pkg.run import run
from ksplice_pkg.source.lines import stabilise_line_numbers
from ksplice_pkg.upload.changes import Change
from ksplice_pkg.upload.reasons import LeftOut, Reason, reason_of
from ksplice_pkg.upload.resume import RoundState, load, save, state_key
from ksplice_pkg.upload.scope import Scope, Scoped

MAX_ROUNDS = 8
_WRITTEN = ".ksplice-upload-written.json"
_ROUNDS = ".ksplice-upload-rounds.json"
# kbuild's report of a target that failed: make[4]: *** [scripts/Makefile.build:250: fs/x.o] Error 1
_FAILED = re.compile(r"\*\*\* \[[^\]]*?:\d+: (\S+\.o)\] Error")
_MISSING_INCLUDE = re.compile(r"^(\S+?):\d+:\d+: fatal error: .*No such file or directory", re.M)
_ERROR_LINE = re.compile(r"^(\S+?):\d+:\d+: error: (.*)$", re.MULTILINE)


@dataclass
class Derived:
    changes: list[UnitChange]
    parts: list[Part]
    accepted: dict[str, set[int]]  # path -> the indexes of the hunks the update carries
    left_out: list[LeftOut]
    units: dict[str, str]  # each unit compiled in the last round -> its source file
    compiled: int = 0  # units compiled on the post side, over all rounds
    rounds: int = 0


PartMaker = Callable[[UnitChange, int, SharedNew], Part]


@dataclass
class Derivation:
    tree: PreparedTree  # the old tree, prepared like the target; its objects are the pre side
    scoped: list[Scoped]
    build: KernelBuild
    index: IncludeIndex
    make_part: PartMaker
    work: Path  # where the after tree and its objects live
    jobs: int
    timings: list[tuple[str, float]] = field(default_factory=list)
    # unit -> the files declaring the struct or union layouts its change would need
    layouts: dict[str, set[str]] = field(default_factory=dict)
    # unit -> the files, its own or headers reaching it, the compiler found errors in when the
    # after side did not compile it
    erring: dict[str, set[str]] = field(default_factory=dict)
    # unit -> what changes in it, for the units the accepted header hunks change in init code
    # only (compile/preprocessed.py): not compiled, and left out as init changes
    init_only: dict[str, str] = field(default_factory=dict)
    # unit -> the symbol neither the target nor the round's parts define that it refers to,
    # for the units refused so in the current round
    unknown: dict[str, str] = field(default_factory=dict)
    # The header texts of the after tree when its header users were last judged, and the
    # verdicts then (see _header_verdicts); None before the first judgement of this run.
    judged: dict[str, str] | None = None
    verdicts: dict[str, Difference] = field(default_factory=dict)

    def run(self) -> Derived:
        accepted, left = self._initial()
        by_path = {s.path: s for s in self.scoped}
        compiled = 0
        split: set[str] = set()  # files whose hunks were tried one by one
        record, key = self.work / _ROUNDS, state_key(self.scoped, self.tree.release)
        if resumed := load(record, key, accepted):
            logger.info(
                "resuming where an earlier run of this upload stood: %d change(s) left out",
                len(resumed.left),
            )
            accepted, left, split = resumed.accepted, resumed.left, resumed.split
        for rounds in range(1, MAX_ROUNDS + 1):
            self.work.mkdir(parents=True, exist_ok=True)
            save(record, key, RoundState(accepted, left, split))
            self._write_after(accepted)
            units = self._units(accepted, by_path)
            if not units:
                return Derived([], [], accepted, left + self._init_only(), {}, compiled, rounds)
            with step(f"round {rounds}: compiling {len(units)} unit(s) before and after"):
                failed = self._compile(sorted(units), left)
            compiled += len(units)
            refused: dict[str, tuple[Reason, str]] = dict(failed)
            self.unknown.clear()
            changes, parts, init = self._diff_and_verify(
                [u for u in sorted(units) if u not in failed], refused
            )
            awaiting = self._awaiting(refused)
            if len(awaiting) < len(refused):
                for unit, definer in sorted(awaiting.items()):
                    logger.info(
                        "%s waits a round: %s, which it calls, is in %s, left out this round",
                        unit, self.unknown[unit], definer,
                    )  # fmt: skip
                    del refused[unit]
            if not refused:
                left += init + self._init_only()
                return Derived(changes, parts, accepted, left, units, compiled, rounds)
            before = {path: sorted(hunks) for path, hunks in accepted.items()}
            taken = self._take_out(refused, units, accepted, by_path)
            # A file with one unsafe hunk and a safe one keeps the safe one, when it passes
            # alone; the next round then tries the hunks that passed together.
            alone = {
                path: before[path]
                for path in sorted({i.path for i in taken})
                if path not in split
                and len(before.get(path, ())) > 1
                and by_path[path].scope in (Scope.BUILT_IN, Scope.MODULE)
            }
            if alone:
                kept, failing = self._try_alone(alone, by_path, left + taken, changes)
                compiled += sum(len(h) for h in alone.values())
                split |= set(alone)
                taken = [i for i in taken if i.path not in alone] + failing
                accepted.update({path: hunks for path, hunks in kept.items() if hunks})
            left += taken
        raise KspliceError(
            f"the update did not settle in {MAX_ROUNDS} rounds: every round left out more",
            hint="report this with the --report of a run with -v",
        )

    # The first verdicts, before anything is compiled.
    def _initial(self) -> tuple[dict[str, set[int]], list[LeftOut]]:
        accepted: dict[str, set[int]] = {}
        left: list[LeftOut] = []
        for s in self.scoped:
            change = s.change
            if s.scope is Scope.BUILD_SYSTEM:
                left.append(LeftOut(s.path, None, Reason.BUILD_SYSTEM, "changes what is built"))
            elif s.scope is Scope.OTHER:
                left.append(_unbuildable(s))
            elif s.scope in (Scope.BUILT_IN, Scope.MODULE, Scope.HEADER):
                if not change.hunks:
                    left.append(LeftOut(s.path, None, Reason.OTHER, "not a text file"))
                    continue
                if change.change is not Change.MODIFIED:
                    # A header both trees' builds see, removed by the new upload: its users
                    # stop including it, judged on their own; the after tree keeps it.
                    left.append(LeftOut(s.path, None, Reason.REMOVED_FILE, "removed"))
                    continue
                hunks = {h.index for h in change.hunks}
                if s.scope is Scope.HEADER:
                    for hunk, why in _layout_changes(s):
                        hunks.discard(hunk)
                        left.append(LeftOut(s.path, s.change.hunks[hunk].header,
                                            Reason.LAYOUT, why))  # fmt: skip
                if hunks:
                    accepted[s.path] = hunks
        return accepted, left

    def _units(self, accepted: dict[str, set[int]], by_path: dict[str, Scoped]) -> dict[str, str]:
        """The units the accepted hunks change: each changed .c file's, and the users of each
        changed header whose code really differs (compile/headers.py)."""
        units: dict[str, str] = {}
        headers = []
        for path, hunks in accepted.items():
            if not hunks:
                continue
            s = by_path[path]
            if s.scope is Scope.HEADER:
                headers.append(path)
            else:
                units.update({u: path for u in s.units})
        self.init_only = {}
        if headers:
            for unit, why in self._header_verdicts(headers).items():
                if not why.init_only:
                    units.setdefault(unit, self._source(unit))
                elif unit not in units:
                    self.init_only[unit] = why.what
        return units

    def _header_verdicts(self, headers: list[str]) -> dict[str, Difference]:
        """The units whose code the accepted header hunks change, and how.

        The first round judges every unit that uses a name the hunks touch. A later round only
        takes hunks out, so it judges again only the units using a name that taking them out
        touches, from the text each header had when last judged to the one it has now: a
        header hunk used by thousands of units (mm_types.h, sched.h) would otherwise have
        every round preprocess them all again, an hour each for a stable update."""
        now = {
            s.path: read_source(self.post_src / s.path)
            for s in self.scoped
            if s.scope is Scope.HEADER
        }
        if self.judged is None:
            verdicts = header_users(
                self.tree, self.post_src, self.post_obj, headers, self.jobs, fresh=False
            )
        else:
            since = self.judged
            changed = sorted(path for path, text in now.items() if text != since.get(path))
            asked = (
                units_mentioning(self.tree, self.post_src, changed, since=since)
                if changed
                else set()
            )
            verdicts = {u: why for u, why in self.verdicts.items() if u not in asked}
            verdicts |= judge_units(self.tree, self.post_src, self.post_obj, asked, self.jobs)
        self.judged, self.verdicts = now, verdicts
        return verdicts

    def _source(self, unit: str) -> str:
        return self.build.units.get(unit, unit.removesuffix(".o") + ".c")

    def _init_only(self) -> list[LeftOut]:
        """The last round's units whose init code alone the accepted headers change: what
        their diff would leave out, without compiling them."""
        return [
            LeftOut(self._source(unit), None, Reason.INIT, f"{unit}: {what} (it ran at boot or "
                    "module load; the update cannot change it)")
            for unit, what in sorted(self.init_only.items())
        ]  # fmt: skip

    @property
    def post_src(self) -> Path:
        return self.work / "upload-src"

    @property
    def post_obj(self) -> Path:
        return self.work / "upload-obj"

    def _write_after(self, accepted: dict[str, set[int]]) -> None:
        """Bring the after tree to the old tree plus the accepted hunks, rewriting only the files
        whose content differs from what they hold."""
        old = self.tree.source
        if not self.post_src.is_dir():
            with step("linking the after tree to the old one"):
                tmp = self.post_src.with_name(self.post_src.name + ".tmp")
                if tmp.exists():
                    run(["rm", "-rf", tmp])
                run(["cp", "-al", old, tmp])
                tmp.rename(self.post_src)
        check_make_path(self.post_src, "the after tree (under the cache)")
        clone_objdir(self.tree, self.post_obj, [])
        record = self.post_src / _WRITTEN
        written: set[str] = set(json.loads(record.read_text())) if record.is_file() else set()
        wanted: dict[str, bytes] = {}
        for s in self.scoped:
            if accepted.get(s.path):
                wanted[s.path] = s.change.text(accepted[s.path])
            elif s.change.new is not None and s.change.change is Change.ADDED:
                # New headers (only the accepted changes that use them see them); a new .c
                # file is no unit of the old Makefiles.
                wanted[s.path] = s.change.new
        # Written before the files: a run cut in between still knows what to restore.
        atomic_write(record, json.dumps(sorted(written | set(wanted))))
        for path in sorted(written | set(wanted)):
            if path in wanted:
                self._put(path, wanted[path])
            elif (old / path).is_file():
                self._put(path, (old / path).read_bytes())
            else:
                (self.post_src / path).unlink(missing_ok=True)
        atomic_write(record, json.dumps(sorted(wanted)))

    def _put(self, path: str, data: bytes) -> None:
        target = self.post_src / path
        pristine = self.tree.source / path
        restoring = pristine.is_file() and data == pristine.read_bytes()
        if (
            restoring
            and target.is_file()
            and (_same_file(target, pristine) or target.read_bytes() == data)
        ):
            return
        tmp = target.with_name(f".{target.name}.ksplice-new")
        target.parent.mkdir(parents=True, exist_ok=True)
        # A new inode, never the hard link the after tree shares with the old tree. Restored
        # bytes are written anew too: their fresh time tells make to rebuild what used them.
        tmp.write_bytes(data)
        if not restoring and path.endswith((".c", ".h")) and pristine.is_file():
            # #line directives: code the upload only moved keeps its line numbers (__LINE__).
            stabilise_line_numbers(pristine, tmp, path)
        if target.is_file() and target.read_bytes() == tmp.read_bytes():
            tmp.unlink()
            return
        os.replace(tmp, target)

    def _compile(self, units: list[str], left: list[LeftOut]) -> dict[str, tuple[Reason, str]]:
        """Both sides with make -k; the units the after side cannot compile, with the first
        error the compiler gave and the left-out header changes they include (what they most
        likely need: the old tree never fails to build)."""
        failed: dict[str, tuple[Reason, str]] = {}
        for side, source, objdir in (
            ("before", self.tree.source, self.tree.objdir),
            ("after", self.post_src, self.post_obj),
        ):
            output = self._make(source, objdir, units, side)
            broken = set(_FAILED.findall(output))
            # kbuild builds one object of a directory only the top Makefile lists (arch/x86/lib,
            # a libs-y directory under arch/x86) from the parent directory, without that
            # directory's include path and flags: `make arch/x86/lib/inat.o` misses a generated
            # include that `make arch/x86/lib/` finds. Such units are built by their directory.
            lost = [
                unit
                for unit in units
                if (unit in broken or not (objdir / unit).is_file())
                and any(
                    m[1].endswith(unit.removesuffix(".o") + ".c")
                    for m in _MISSING_INCLUDE.finditer(output)
                )
            ]
            if lost:
                dirs = sorted({os.path.dirname(unit) + "/" for unit in lost})
                again = self._make(source, objdir, dirs, side)
                broken = (broken - set(lost)) | set(_FAILED.findall(again))
                output += again
            # (file relative to the tree or None, message): read once, for the first failure
            errors_in: list[tuple[str | None, str, str]] | None = None
            for unit in units:
                if unit not in broken and (objdir / unit).is_file():
                    continue
                if side == "before":
                    raise KspliceError(
                        f"{unit} of the old source does not build with the target's config",
                        hint="is OLD_SOURCE the source the target kernel was built from?",
                    )
                src = unit.removesuffix(".o") + ".c"
                own = self.build.units.get(unit, src)
                if errors_in is None:
                    errors_in = compiler_errors(output, source)
                self.erring[unit] = {
                    f
                    for f, _, _ in errors_in
                    if f is not None
                    and (f == own or (f.endswith(".h") and own in self.index.reach(f)))
                }
                errors = [said for _, printed, said in errors_in if printed.endswith(src)]
                # make -k's output mixes all units: an error in a header is this unit's when
                # it is in a header the unit includes.
                errors += [
                    f"{f}: {said}"
                    for f, _, said in errors_in
                    if f in self.erring[unit] and f != own
                ]
                first = errors[0] if errors else "see the build log with -v"
                failed[unit] = (Reason.COMPILE, self._compile_failure(unit, src, first, left))
                logger.info("left out: %s: %s", unit, failed[unit][1])
        return failed

    def _make(self, source: Path, objdir: Path, targets: list[str], side: str) -> str:
        """make -k of targets on one side; its output."""
        proc = run(
            [*compile_command(source, objdir, self.tree.release, self.jobs), "-k", *targets],
            check=False,
            timeout=6 * 3600,
        )
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        if "No space left on device" in output:
            raise KspliceError(
                f"the disk holding {objdir} is full: the {side} side did not compile",
                hint="free space there (or give --cache-dir on a larger disk) and run "
                "again: what compiled is kept",
            )
        return output

    def _compile_failure(self, unit: str, src: str, error: str, left: list[LeftOut]) -> str:
        source = self.build.units.get(unit, src)
        headers = {i.path for i in left if i.path.endswith(".h")}
        needed = sorted(h for h in headers if source in self.index.reach(h))
        if not needed:
            return f"{unit} does not compile, though no change it includes was left out: {error}"
        return (
            f"{unit} does not compile without the left-out change(s) of "
            f"{', '.join(needed)}: {error}"
        )

    def _try_alone(
        self,
        files: dict[str, list[int]],
        by_path: dict[str, Scoped],
        left: list[LeftOut],
        round_parts: list[UnitChange],
    ) -> tuple[dict[str, set[int]], list[LeftOut]]:
        """Each hunk of `files` tried alone in its unit(s), the rest of the after tree as it is:
        the hunks that compile, diff, verify and resolve, and the others with their reasons.
        The i-th hunks of all files are tried together, one make for them all; they may call
        the new globals of round_parts, the units the round made parts of."""
        kept: dict[str, set[int]] = {path: set() for path in files}
        failing: list[LeftOut] = []
        for i in range(max(len(hunks) for hunks in files.values())):
            trial = {path: hunks[i] for path, hunks in files.items() if i < len(hunks)}
            for path, hunk in trial.items():
                self._put(path, by_path[path].change.text({hunk}))
            unit_of = {unit: path for path in trial for unit in by_path[path].units}
            with step(f"trying hunk {i + 1} of {len(trial)} file(s) alone"):
                refused = self._compile(sorted(unit_of), left)
                self._diff_and_verify(
                    [u for u in sorted(unit_of) if u not in refused], refused, round_parts
                )
            for path, hunk in trial.items():
                why = [refused[u] for u in sorted(unit_of) if unit_of[u] == path and u in refused]
                if why:
                    header = by_path[path].change.hunks[hunk].header
                    failing.append(LeftOut(path, header, why[0][0], why[0][1]))
                else:
                    kept[path].add(hunk)
        return kept, failing

    def _diff_and_verify(
        self,
        units: list[str],
        refused: dict[str, tuple[Reason, str]],
        others: Sequence[UnitChange] = (),
    ) -> tuple[list[UnitChange], list[Part], list[LeftOut]]:
        """The units diffed, verified and made into parts; what fails goes to refused. others:
        parts made already, whose new globals the units may call (a hunk tried alone calling
        a helper another file of the round adds)."""
        diffed: list[UnitChange] = []
        for unit in units:
            try:
                pre = read_object(self.tree.objdir / unit)
                post = read_object(self.post_obj / unit)
                d = diff_objects(unit, pre, post, runtime_only=True)
                patch_through_callers(unit, pre, post, d)
                if d.empty:
                    continue
                check_layouts(unit, self.tree.objdir / unit, self.post_obj / unit)
                diffed.append(UnitChange(d, pre, post, module_of(self.tree.objdir, unit)))
            except KspliceError as e:
                self._refuse(unit, e, refused)
        # A unit may call a new global another unit of the round adds: both are in the update
        # only if both pass; when the definer is refused, the caller waits a round
        # (_awaiting), and if the definer is left out it is refused in turn. A trial borrows
        # the round's parts: the next round compiles the trial's hunk with them, or without.
        mine = set(units)
        shared = shared_new([*(c for c in others if c.unit not in mine), *diffed])
        changes: list[UnitChange] = []
        parts: list[Part] = []
        init: list[LeftOut] = []
        for change in diffed:
            try:
                parts.append(self.make_part(change, len(parts), shared))
            except KspliceError as e:
                self._refuse(change.unit, e, refused)
                continue
            changes.append(change)
            source = self.build.units.get(change.unit, change.unit)
            init += [LeftOut(source, None, Reason.INIT, w) for w in change.diff.init_changes]
        return changes, parts, init

    def _refuse(self, unit: str, e: KspliceError, refused: dict[str, tuple[Reason, str]]) -> None:
        if isinstance(e, LayoutError):
            self.layouts[unit] = {c.file for c in e.changes}
        if isinstance(e, UnknownSymbolError):
            self.unknown[unit] = e.name
        refused[unit] = (reason_of(e), e.message)
        logger.info("left out: %s: %s", unit, e.message)

    def _awaiting(self, refused: dict[str, tuple[Reason, str]]) -> dict[str, str]:
        """The refused units that only call a new global of the upload whose defining unit
        was refused in the same round (so it made no part and shared nothing), each with that
        unit. They wait for the next round instead of taking their hunks out: when a header's
        inline calls the new helper, taking out for the caller would take the header hunks
        that reach it, and with them every unit that needs those (the stable upload lost 45
        header hunks so, for one module unit calling __skb_get_hash_net of flow_dissector.c,
        which compiled a round later). If the definer is left out for good, the caller fails
        again with nothing left to wait for. The definer is told by its after source naming
        the symbol; units that themselves wait are not definers, so a round that defers
        always takes something else out."""
        waiting: dict[str, str] = {}
        texts: dict[str, str] = {}
        for unit, name in sorted(self.unknown.items()):
            if unit not in refused:
                continue
            word = re.compile(rf"\b{re.escape(name)}\b")
            for other in sorted(refused):
                if other == unit or other in self.unknown:
                    continue
                if other not in texts:
                    texts[other] = read_source(self.post_src / self._source(other))
                if word.search(texts[other]):
                    waiting[unit] = other
                    break
        return waiting

    def _take_out(
        self,
        refused: dict[str, tuple[Reason, str]],
        units: dict[str, str],
        accepted: dict[str, set[int]],
        by_path: dict[str, Scoped],
    ) -> list[LeftOut]:
        """The hunks behind each refused unit: its own file's, else the header hunks that
        reach it."""
        left: list[LeftOut] = []
        # Culprits are judged on what this round compiled: a header an earlier refused unit
        # already took out still counts for the others it reached, nothing more to take.
        compiled = {path: set(hunks) for path, hunks in accepted.items() if hunks}
        for unit, (why, said) in sorted(refused.items()):
            own, reason, detail = units[unit], why, said
            # A layout is taken back where it is declared: the header whose enum, macro or
            # body the upload changed, not every change that reaches the unit.
            declaring = [p for p in sorted(self.layouts.get(unit, ())) if p in compiled]
            # A unit that does not compile: the changed files the errors are in, when the
            # compiler named them (a header's inline using a field whose hunk was left out),
            # rather than every changed header that reaches the unit.
            erring = [p for p in sorted(self.erring.get(unit, ())) if p in compiled]
            if declaring:
                culprits = declaring
            elif erring and erring != [own]:
                culprits = erring
                reason = Reason.NEEDS_LEFT_OUT
                detail = f"{unit} cannot be patched: {detail}"
            elif own in compiled:
                culprits = [own]
            else:
                culprits = [p for p in compiled
                            if by_path[p].scope is Scope.HEADER
                            and own in self.index.reach(p)]  # fmt: skip
                reason = reason if reason is not Reason.COMPILE else Reason.NEEDS_LEFT_OUT
                detail = f"{unit} cannot be patched: {detail}"
            if not culprits:
                # A header the include index does not connect to the unit (an include
                # found through a -I it cannot see): the headers the compiler read for it.
                read = headers_read(self.post_obj, self.post_src, unit)
                culprits = [p for p in compiled if by_path[p].scope is Scope.HEADER and p in read]
            if not culprits:
                raise RefusedError(
                    f"{unit} cannot be patched ({detail}) and no change of the upload was found "
                    "to leave out for it",
                    hint="report this with the --report of a run with -v",
                )
            for path in culprits:
                if path not in accepted:
                    continue  # taken out for an earlier unit of this round
                hunks = by_path[path].change.hunks
                for i in sorted(accepted.pop(path)):
                    left.append(LeftOut(path, hunks[i].header, reason, detail))
        return left


def erring_files(output: str, source: Path) -> set[str]:
    """The files, relative to source, that the compiler reported errors in (kbuild with O=
    names them by absolute path, or relative to the source tree)."""
    return {path for path, _, _ in compiler_errors(output, source) if path is not None}


def compiler_errors(output: str, source: Path) -> list[tuple[str | None, str, str]]:
    """The compiler's errors in output: the file relative to source (None outside the tree),
    the file as printed, and the message."""
    return [(in_tree(m[1], source), m[1], m[2]) for m in _ERROR_LINE.finditer(output)]


def in_tree(path: str, source: Path) -> str | None:
    """A path the compiler printed, relative to source; None for a file outside the tree (a
    system header)."""
    for root in (str(source).rstrip("/") + "/", os.path.realpath(source) + "/"):
        if path.startswith(root):
            return os.path.normpath(path[len(root) :])
    return None if path.startswith("/") else os.path.normpath(path)


def _layout_changes(s: Scoped) -> Iterator[tuple[int, str]]:
    """The hunks of a header that change a struct or union body, each with what it changes."""
    change = s.change
    assert change.old is not None and change.new is not None
    old = change.old.decode(errors="replace")
    for h in change.hunks:
        try:
            # The old file against itself with this hunk alone: a hunk is refused for what
            # it changes, not for what another hunk of the same struct does.
            changed_names(s.path, old, change.text({h.index}).decode(errors="replace"))
        except RefusedError as e:
            yield h.index, e.message


def _unbuildable(s: Scoped) -> LeftOut:
    if s.change.change is Change.ADDED:
        return LeftOut(s.path, None, Reason.NEW_FILE, "a new unit needs the kernel's Makefiles")
    if s.change.change is Change.REMOVED:
        return LeftOut(s.path, None, Reason.REMOVED_FILE, "the running kernel still has it")
    if s.path.endswith(".S"):
        return LeftOut(s.path, None, Reason.ASSEMBLY, "assembly has no ftrace entries")
    return LeftOut(s.path, None, Reason.OTHER, "built, but not as C code")


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
