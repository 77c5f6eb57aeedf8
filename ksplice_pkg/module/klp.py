"""Write the livepatch form of a linked module: SHN_LIVEPATCH symbols and .klp.rela sections.

Through the module link the klp symbols travel as weak undefined symbols (see extract.py); here
each becomes SHN_LIVEPATCH, and every relocation against one moves from `.rela<sec>` into
`.klp.rela.<object>.<sec>`, flagged SHF_RELA_LIVEPATCH so the module loader leaves it to
livepatch (Documentation/livepatch/module-elf-format.rst). Runs before any module signing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from ksplice_pkg.elf.model import (
    SHF_ALLOC,
    SHF_INFO_LINK,
    SHF_RELA_LIVEPATCH,
    SHN_LIVEPATCH,
    SHN_UNDEF,
    SHT_RELA,
    STB_GLOBAL,
    Relocation,
    Section,
)
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.elf.writer import write_object
from ksplice_pkg.errors import InternalError, RefusedError

KLP_SYM_PREFIX = ".klp.sym."


def klp_symbol_name(objname: str, name: str, sympos: int) -> str:
    """`.klp.sym.<object>.<name>,<sympos>`: how a livepatch module names a symbol of another
    object (vmlinux or a module) that it cannot link against."""
    return f"{KLP_SYM_PREFIX}{objname}.{name},{sympos}"


def objname_of(symbol: str) -> str:
    return symbol[len(KLP_SYM_PREFIX) :].split(".", 1)[0]


def convert(
    ko: Path, owners: Mapping[str, str] | None = None, patched: Collection[str] | None = None
) -> int:
    """Rewrite ko in place; return how many klp relocations it carries.

    A relocation goes to the klp relocation section of its symbol's object, except that a
    module's code referring to a module it depends on keeps it in its own module's section:
    livepatch only writes the sections of the objects the patch patches, when that object
    comes (klp_apply_section_relocs), and allows them symbols of the module's dependencies
    (klp_resolve_symbols, 6.1). owners maps the section names of module code to their module.
    patched names the objects the update patches: a relocation for any other object would never
    be written.
    """
    owners = owners or {}
    obj = read_object(ko)
    klp: set[int] = set()
    for i, sym in enumerate(obj.symbols):
        if sym.name.startswith(KLP_SYM_PREFIX):
            if sym.shndx != SHN_UNDEF:
                raise InternalError(f"{sym.name} is defined in {ko.name}")
            sym.shndx = SHN_LIVEPATCH
            sym.bind = STB_GLOBAL
            klp.add(i)
    count = 0
    new_sections: list[Section] = []
    for sec in obj.sections:
        if sec.type != SHT_RELA or sec.flags & SHF_RELA_LIVEPATCH:
            continue
        moved = [r for r in sec.relocations if r.symbol in klp]
        if not moved:
            continue
        target = obj.sections[sec.info].name
        # The kernel reads the object name up to the next dot: `.klp.rela.vmlinux.text.f`,
        # and `.klp.rela.vmlinux.__jump_table` for a target without a leading dot.
        if not target.startswith("."):
            target = "." + target
        by_object: dict[str, list[Relocation]] = {}
        owner = owners.get(obj.sections[sec.info].name)
        for r in moved:
            objname = objname_of(obj.symbols[r.symbol].name)
            if owner is not None and objname not in ("vmlinux", owner):
                objname = owner
            if patched is not None and objname not in patched:
                raise RefusedError(
                    f"the update's {obj.sections[sec.info].name} refers to "
                    f"{obj.symbols[r.symbol].name}, a symbol of module {objname}, which the "
                    "update does not patch: livepatch would never resolve it",
                    hint="patch a function whose code is the only user of that symbol",
                )
            by_object.setdefault(objname, []).append(r)
        sec.relocations = [r for r in sec.relocations if r.symbol not in klp]
        for objname, relocs in by_object.items():
            new_sections.append(
                Section(
                    name=f".klp.rela.{objname}{target}",
                    type=SHT_RELA,
                    flags=SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH,
                    data=b"",
                    addralign=8,
                    info=sec.info,
                    relocations=relocs,  # in the order of `moved`, as the object had them
                )
            )
            count += len(relocs)
    if klp and not count:
        raise InternalError(f"{ko.name} has klp symbols but no klp relocations")
    # Appended after the existing sections, so no section index changes.
    obj.sections.extend(new_sections)
    # Globals must follow locals; klp symbols were weak (non-local) already, so order holds.
    write_object(obj, ko)
    return count
