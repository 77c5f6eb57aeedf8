"""The loadable modules of the target kernel: each one's .ko in its lib/modules/<release>, read
for its symbols, their sympos and the modules it depends on.

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

from pathlib import Path

from ksplice_pkg.elf.model import SHF_ALLOC, SHN_UNDEF, STT_FILE, STT_SECTION, ElfObject, Symbol
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError, RefusedError, RunPreMismatchError


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
        if Path(path).name.split(".ko")[0].replace("-", "_") == module.replace("-", "_"):
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


class ModuleBinary:
    """A module's .ko of the target kernel: its symbols, sympos and code."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.obj = read_object(path)
        self._indexes = {id(s): i for i, s in enumerate(self.obj.symbols)}

    def depends(self) -> set[str]:
        """The modules this one needs loaded first (modpost's `depends=` in .modinfo), by the
        name the kernel knows them by: modinfo spells them as their files (`dm-bufio`), the
        kernel's module name, which klp relocations must name, has `_` (`dm_bufio`)."""
        index = self.obj.section_index(".modinfo")
        info = self.obj.sections[index].data if index is not None else b""
        for entry in info.split(b"\0"):
            if entry.startswith(b"depends="):
                return {m.replace("-", "_") for m in entry[8:].decode().split(",") if m}
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

    def index(self, sym: Symbol) -> int:
        """The symtab index of sym, one of this .ko's own symbols."""
        return self._indexes[id(sym)]


class TargetModules:
    """The target's modules an update touches, each .ko read once."""

    def __init__(self, modules_dir: Path | None) -> None:
        self.modules_dir = modules_dir
        self.read: dict[str, ModuleBinary] = {}

    def binary(self, module: str, unit: str) -> ModuleBinary:
        """The .ko of module, which unit of the update is part of."""
        if self.modules_dir is None:
            raise KspliceError(
                f"{unit} is part of the loadable module {module}: patching it needs the "
                f"target's {module}.ko",
                hint="give --modules-dir with the target's lib/modules/<release> (from its "
                "image package), or a `modules` link to it in the --config dir (`ksplice-pkg "
                "fetch` lays one out)",
            )
        if ":" in module:
            # kbuild's KBUILD_MODNAME of an object linked into several modules joins their names.
            raise RefusedError(
                f"{unit} is linked into several modules ({module.replace(':', ', ')}): "
                "patching code shared between modules is not supported",
                hint="patch the callers in each module instead",
            )
        if module not in self.read:
            self.read[module] = ModuleBinary(module, module_ko(self.modules_dir, module))
        return self.read[module]
