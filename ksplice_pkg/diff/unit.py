"""The differ's entry point: what changed between the pre and post object of one unit."""

from __future__ import annotations

from dataclasses import dataclass

from ksplice_pkg.compile.objects import ObjectPair
from ksplice_pkg.diff.callers import patch_through_callers
from ksplice_pkg.diff.compare import UnitDiff, explain, is_init_section, pair_functions, signature
from ksplice_pkg.diff.data import changed_init_data, check_data, correlate_statics
from ksplice_pkg.diff.layout import check_layouts
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import functions
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.log import logger


def diff_objects(
    unit: str, pre: ElfObject, post: ElfObject, runtime_only: bool = False
) -> UnitDiff:
    """What changed in one unit. Changes to __init code and init-only data are refused, since
    they ran at boot and are gone; with runtime_only they are listed and left out instead."""
    result = UnitDiff(unit=unit)

    def init_change(what: str, hint: str) -> None:
        if not runtime_only:
            raise RefusedError(f"{unit}: {what}", hint=hint + _RUNTIME_ONLY_HINT)
        result.init_changes.append(f"{unit}: {what}")

    pre_funcs, post_funcs = functions(pre), functions(post)
    pairs = pair_functions(pre, post)
    for name, fn in post_funcs.items():
        section_name = post.sections[fn.section].name
        pre_name = pairs[name]
        if pre_name is None:
            if is_init_section(section_name):
                init_change(
                    f"the patch adds __init function {name}",
                    "init code has already run; do the work in a livepatch callback",
                )
            else:
                result.new_functions.append(name)
            continue
        old = pre_funcs[pre_name]
        if is_init_section(pre.sections[old.section].name) and not is_init_section(section_name):
            # The running kernel freed its copy after boot: the update must carry this one.
            result.new_functions.append(name)
            continue
        a = signature(pre, old.section, old.offset, old.size)
        b = signature(post, fn.section, fn.offset, fn.size)
        if a != b:
            if is_init_section(section_name):
                init_change(
                    f"the patch changes __init function {name} ({explain(a, b)})",
                    "init code ran at boot and is gone; a livepatch cannot change it",
                )
                continue
            result.changed[name] = explain(a, b)
            result.pre_names[name] = pre_name
    # A change in a .cold part is a change of its parent: only the parent has the ftrace entry
    # livepatch redirects, and it carries its .cold part along.
    for name in [n for n in result.changed if n.endswith(".cold")]:
        parent = name.removesuffix(".cold")
        parent_pre = pairs.get(parent)
        if parent in post_funcs and parent not in result.changed and parent_pre is not None:
            result.changed[parent] = f"its .cold part changed ({result.changed[name]})"
            result.pre_names[parent] = parent_pre
    for name, fn in post_funcs.items():
        pre_name = pairs[name]
        if pre_name is not None:
            correlate_statics(pre, pre_funcs[pre_name], post, fn, result.static_map)
    check_data(unit, pre, post, result)
    for name in changed_init_data(pre, post):
        init_change(
            f"the patch changes init-only data {name}",
            "init data was used at boot and freed; a livepatch cannot change it",
        )
    return result


_RUNTIME_ONLY_HINT = (
    "; if the fix works without it on a running system, --runtime-only builds the update "
    "from the runtime part alone and lists what it left out"
)


@dataclass(frozen=True)
class UnitChange:
    """A unit the patch changes: the differ's verdict and both objects it compared."""

    diff: UnitDiff
    pre: ElfObject
    post: ElfObject
    module: str | None = None  # the loadable module the unit belongs to; None: vmlinux

    @property
    def unit(self) -> str:
        return self.diff.unit


def diff_pairs(pairs: list[ObjectPair], runtime_only: bool = False) -> list[UnitChange]:
    """Diff every compiled pair; refuse a patch that changes no function's object code."""
    changes: list[UnitChange] = []
    for pair in pairs:
        pre, post = read_object(pair.pre), read_object(pair.post)
        d = diff_objects(pair.unit, pre, post, runtime_only)
        for what in d.init_changes:
            logger.warning("left out (--runtime-only): %s", what)
        patch_through_callers(pair.unit, pre, post, d)
        for name, why in d.changed.items():
            logger.debug("%s: %s changed: %s", pair.unit, name, why)
        for name in d.new_functions:
            logger.debug("%s: %s is new", pair.unit, name)
        if not d.empty:
            check_layouts(pair.unit, pair.pre, pair.post)
            changes.append(UnitChange(d, pre, post, pair.module))
    if not changes:
        raise RefusedError(
            "the patch changes no function's object code",
            hint="nothing to update: a comment, or code this config does not build?",
        )
    return changes
