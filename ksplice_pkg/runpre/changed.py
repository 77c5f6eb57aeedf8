"""Run-pre for the functions an update replaces, refusing those livepatch cannot redirect."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ksplice_pkg.diff.compare import UnitDiff
from ksplice_pkg.elf.model import ElfObject
from ksplice_pkg.elf.query import functions, has_ftrace_entry
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.log import logger
from ksplice_pkg.runpre.evidence import Evidence, ModuleEvidence


def verify_changed(
    d: UnitDiff, evidence: Evidence, earlier: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Run-pre for each function the unit's update replaces (refusing what cannot be patched);
    returns the sympos of each by name.

    `earlier` holds the functions that earlier updates of a --series replaced, with their
    sympos: their pre code is those updates' code, not the binary's, so it is not compared.
    """
    sympos: dict[str, int] = {}
    symbols = evidence.symbols
    for name in _to_verify(d, evidence.pre, earlier, sympos):
        found = symbols.vmlinux_symbols_named(name)
        if not found:
            owners = sorted({s.module for s in symbols.symbols if s.name == name and s.module})
            if owners:
                raise RefusedError(
                    f"{d.unit}: {name} belongs to module {', '.join(owners)}, not to vmlinux",
                    hint="this .config builds the unit into vmlinux while the target has it in "
                    "a module: give the target's own .config",
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
        sympos[name] = match.sympos
        logger.debug(
            "%s: %s matches the target at %#x (sympos %d)",
            d.unit,
            name,
            match.address,
            match.sympos,
        )
    return sympos


def verify_changed_in_module(
    d: UnitDiff, evidence: ModuleEvidence, earlier: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Run-pre for each function a module unit's update replaces, against the module's .ko;
    returns the sympos of each, counted among that module's symbols."""
    sympos: dict[str, int] = {}
    for name in _to_verify(d, evidence.pre, earlier, sympos):
        match = evidence.verify(name)
        sympos[name] = match.sympos
        logger.debug(
            "%s: %s matches %s in module %s (sympos %d)",
            d.unit,
            name,
            evidence.ko.path,
            evidence.ko.name,
            match.sympos,
        )
    return sympos


def _to_verify(
    d: UnitDiff, pre: ElfObject, earlier: Mapping[str, int] | None, sympos: dict[str, int]
) -> Iterator[str]:
    """The pre names of the functions d replaces that run-pre must find in the target; those
    an earlier update of the series replaced get their sympos from it."""
    for post_name in d.changed:
        name = d.pre_names[post_name]
        if name.endswith(".cold"):
            continue
        if earlier is not None and name in earlier:
            logger.debug("%s: %s was replaced by an earlier update of the series", d.unit, name)
            sympos[name] = earlier[name]
            continue
        # patch_through_callers has handled file-local ones; what is left cannot be patched.
        if not has_ftrace_entry(pre, functions(pre)[name]):
            raise RefusedError(
                f"{d.unit}: {name} has no ftrace entry (__fentry__ call): livepatch cannot "
                "redirect it",
                hint="it is notrace or in a noinstr section; patch its callers instead",
            )
        yield name
