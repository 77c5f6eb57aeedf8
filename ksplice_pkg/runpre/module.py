"""Run-pre for code of a loadable module: the pre object against the module's own .ko.

A distro .ko is a relocatable object, so unlike vmlinux it still carries its relocations: the
pre object's function bytes are compared with the .ko's with the relocation sites of both masked,
and the evidence of which symbol each site refers to is read from the .ko's relocation entries
(or, for a call the assembler resolved inside the .ko's single .text, from the displacement).

sympos of a module symbol is its position among the same-named symbols of that module.
kernel/livepatch/core.c of Linux 6.1 (klp_find_object_symbol -> klp_find_callback, through
module_kallsyms_on_each_symbol of kernel/module/kallsyms.c) counts the defined symbols of
`mod->kallsyms` in symtab order. That table is the whole .ko symtab while the module is coming
(add_kallsyms sets it up before klp_module_coming runs: the update was loaded first), and the
cut-down core table (is_core_symbol: named, in an allocated section that is not .init*) once the
module is live (the module was loaded first). A name whose position differs between the two is
refused: the same update must bind the same symbol in both load orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ksplice_pkg.elf.model import (
    RELOC_FORMS,
    SHF_ALLOC,
    SHN_UNDEF,
    STT_FILE,
    STT_FUNC,
    STT_SECTION,
    ElfObject,
    Relocation,
    Symbol,
)
from ksplice_pkg.elf.query import is_text, named_target, relocations_in, symbol_at
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, RefusedError, RunPreMismatchError
from ksplice_pkg.runpre.verify import PreFunction, PreReloc, masked

_MISMATCH_HINT = (
    "the source tree, its .config or the compiler differ from those that built the target's "
    "module: build the update from the target's exact source package and configuration, and "
    "give the modules of the same kernel image (--modules-dir)"
)


def module_ko(modules_dir: Path, module: str) -> Path:
    """The .ko of module in the target's lib/modules/<release>, by kbuild's modules.order.

    Module names use `_` where the file name may use `-` (kbuild's KBUILD_MODNAME does the same
    substitution), so both are compared in that form.
    """
    order = modules_dir / "modules.order"
    try:
        lines = order.read_text().splitlines()
    except OSError as e:
        raise KspliceError(
            f"cannot read {order}: {e.strerror}",
            hint="give the target's lib/modules/<release> from its image package (--modules-dir)",
        ) from e
    for line in lines:
        path = line.strip()
        if Path(path).name.split(".ko")[0].replace("-", "_") == module:
            ko = modules_dir / path
            if ko.suffix != ".ko":
                raise KspliceError(
                    f"module {module}: {ko} is compressed; run-pre reads the plain .ko",
                    hint="give a copy of the modules dir with the module decompressed "
                    "(xz -dk / zstd -d) and modules.order naming the .ko",
                )
            if not ko.is_file():
                raise RunPreMismatchError(
                    f"module {module}: {ko} is listed in {order} but missing",
                    hint="give the complete lib/modules/<release> of the target's image package",
                )
            return ko
    raise RunPreMismatchError(
        f"module {module} is not in the target's {order}",
        hint="the target kernel's image does not ship this module: is the source of the "
        "same kernel, and --modules-dir the target's?",
    )


def _core(obj: ElfObject, sym: Symbol) -> bool:
    """kernel/module/kallsyms.c is_core_symbol (6.1, CONFIG_KALLSYMS_ALL as in Debian's config)."""
    if sym.shndx == SHN_UNDEF or sym.shndx >= len(obj.sections) or not sym.name:
        return False
    sec = obj.sections[sym.shndx]
    # The .data..percpu symbols count too (KALLSYMS_ALL); that section is allocated as well.
    return bool(sec.flags & SHF_ALLOC) and not sec.name.startswith(".init")


@dataclass(frozen=True)
class ModuleMatch:
    index: int  # the function's symbol in the .ko's symtab
    sympos: int
    # pre reloc offset -> the .ko symbol (index) the module's code references at that site
    references: dict[int, int] = field(default_factory=dict)


class ModuleBinary:
    """A module's .ko of the target kernel: its symbols, sympos and code."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.obj = read_object(path)
        self._indexes = {id(s): i for i, s in enumerate(self.obj.symbols)}

    def depends(self) -> set[str]:
        """The modules this one needs loaded first (modpost's `depends=` in .modinfo)."""
        index = self.obj.section_index(".modinfo")
        info = self.obj.sections[index].data if index is not None else b""
        for entry in info.split(b"\0"):
            if entry.startswith(b"depends="):
                return {m for m in entry[8:].decode().split(",") if m}
        return set()

    def defined_named(self, name: str) -> list[int]:
        """Symtab indexes of the defined symbols called name (sections and files aside)."""
        return [
            i
            for i, s in enumerate(self.obj.symbols)
            if s.name == name and s.shndx != SHN_UNDEF and s.type not in (STT_SECTION, STT_FILE)
        ]

    def sympos(self, index: int) -> int:
        sym = self.obj.symbols[index]
        # Every defined symbol counts, whatever its type: klp_find_callback compares names only.
        full = [i for i, s in enumerate(self.obj.symbols) if s.name == sym.name and s.shndx]
        core = [i for i in full if _core(self.obj, self.obj.symbols[i])]

        def position(table: list[int]) -> int | None:
            if index not in table:
                return None
            return 0 if len(table) == 1 else table.index(index) + 1

        coming, live = position(full), position(core)
        if coming is None or coming != live:
            raise RefusedError(
                f"module {self.name}: {sym.name} cannot be named the same way whether the module "
                f"is loaded before or after the update (its position among the symbols of that "
                f"name: {coming} while loading, {live} once loaded)",
                hint="livepatch looks module symbols up by name and position; patch a caller "
                "that does not refer to it",
            )
        return coming

    def verify(self, fn: PreFunction) -> ModuleMatch:
        """The function of the .ko that fn's code matches, with what its relocation sites mean."""
        candidates = [
            i
            for i in self.defined_named(fn.name)
            if self.obj.symbols[i].type == STT_FUNC and is_text(self.obj, self.obj.symbols[i].shndx)
        ]
        if not candidates:
            raise RunPreMismatchError(
                f"module {self.name}: the target's {self.path.name} has no function {fn.name}",
                hint="it may be inlined into its callers there; otherwise " + _MISMATCH_HINT,
            )
        problems: list[str] = []
        matches: list[ModuleMatch] = []
        for index in candidates:
            problem, references = self._compare(fn, self.obj.symbols[index])
            if problem is None:
                matches.append(ModuleMatch(index, 0, references))
            else:
                problems.append(problem)
        if not matches:
            raise RunPreMismatchError(
                f"module {self.name}: {fn.name}: the pre-patch code does not match the target's "
                f"{self.path.name}: {'; '.join(problems)}",
                hint=_MISMATCH_HINT,
            )
        if len(matches) > 1:
            raise RunPreMismatchError(
                f"module {self.name}: {fn.name}: ambiguous, {len(matches)} functions of that name "
                f"in {self.path.name} match the pre-patch code",
                hint="patch the function through a caller or a uniquely named function instead",
            )
        (match,) = matches
        return ModuleMatch(match.index, self.sympos(match.index), match.references)

    def _compare(self, fn: PreFunction, sym: Symbol) -> tuple[str | None, dict[int, int]]:
        sec = self.obj.sections[sym.shndx]
        if sym.size != len(fn.code):
            return f"it is {sym.size} bytes long, the pre-patch code {len(fn.code)}", {}
        code = sec.data[sym.value : sym.value + sym.size]
        mask = masked(fn)
        ko_relocs = {
            r.offset - sym.value: r
            for r in relocations_in(self.obj, sym.shndx, sym.value, sym.size)
        }
        for offset, r in ko_relocs.items():
            size = RELOC_FORMS[r.type].size if r.type in RELOC_FORMS else 0
            mask[offset : offset + size] = b"\x01" * size
        for offset, (ours, theirs) in enumerate(zip(fn.code, code, strict=True)):
            if ours != theirs and not mask[offset]:
                return (
                    f"differs at +{offset:#x} (ours {ours:#04x}, the module's {theirs:#04x})",
                    {},
                )
        references: dict[int, int] = {}
        for reloc in fn.relocs:
            if not reloc.symbol:
                continue
            seen = self._referenced(reloc, ko_relocs.get(reloc.offset), sym, code)
            if seen is None:
                continue
            seen = self._alias(seen, reloc.symbol)
            name = self.obj.symbols[seen].name
            if name != reloc.symbol:
                return f"refers at +{reloc.offset:#x} to {name}, not to {reloc.symbol}", {}
            references[reloc.offset] = seen
        return None, references

    def _alias(self, index: int, wanted: str) -> int:
        """The symbol called wanted at the same place as symbol index, if there is one.

        A reference through a section symbol only gives a place, and several symbols may lie
        there: empty objects (lockdep's `__key.N` without CONFIG_LOCKDEP) share an address.
        """
        sym = self.obj.symbols[index]
        if sym.name == wanted or sym.shndx == SHN_UNDEF:
            return index
        for i, other in enumerate(self.obj.symbols):
            if other.name == wanted and other.shndx == sym.shndx and other.value == sym.value:
                return i
        return index

    def _index(self, sym: Symbol) -> int:
        return self._indexes[id(sym)]

    def _referenced(
        self, reloc: PreReloc, ko_reloc: Relocation | None, fn: Symbol, code: bytes
    ) -> int | None:
        """The .ko symbol a pre relocation site refers to in the module's code."""
        if ko_reloc is not None:
            named, _ = named_target(self.obj, ko_reloc)
            return None if named is None else self._index(named)
        form = RELOC_FORMS.get(reloc.type)
        if form is None or not form.pc_relative:
            return None
        # No relocation: the assembler resolved a PC-relative reference into the .ko's own
        # section (GCC put every function of the unit in one .text). S = value + P - A.
        site = code[reloc.offset : reloc.offset + form.size]
        value = int.from_bytes(site, "little", signed=form.signed)
        target = value + fn.value + reloc.offset - reloc.addend
        found = symbol_at(self.obj, fn.shndx, target)
        if found is None or found.value != target:
            return None
        return self._index(found)
