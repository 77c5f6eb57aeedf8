"""Extract the functions an update includes from a post object into an object of their own.

Every reference the extracted code makes is re-targeted:
- to other extracted code, or to constants copied along (strings, anonymous constant pools);
- to new data the patch adds, copied along;
- to a symbol vmlinux exports: an ordinary undefined symbol, resolved by the module loader;
- to anything else (static functions and variables, non-exported globals): a weak undefined
  symbol already named `.klp.sym.<object>.<name>,<sympos>`. Being weak keeps modpost quiet about
  it through the module link; klp.py then turns it and its relocations into livepatch form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ksplice_pkg.diff.compare import UnitDiff
from ksplice_pkg.elf.model import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_INFO_LINK,
    SHF_STRINGS,
    SHF_WRITE,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_RELA,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
    ElfObject,
    Relocation,
    Section,
    Symbol,
)
from ksplice_pkg.elf.query import (
    Function,
    functions,
    is_dyndbg,
    plain_constant,
    referenced_symbol,
    section_relative,
)
from ksplice_pkg.errors import InternalError, RefusedError
from ksplice_pkg.module.special import PARALLEL


@dataclass(frozen=True)
class ExternalRef:
    """How the module reaches a symbol the update does not carry."""

    name: str  # the symbol name for the linker: exported name or .klp.sym.* name
    exported: bool


# Resolves (post object, symbol index) of a symbol the update does not carry.
Resolver = Callable[[ElfObject, Symbol], ExternalRef]


@dataclass(frozen=True)
class PatchedFunction:
    old_name: str  # the function's name in the target kernel
    new_symbol: str  # the global symbol of the replacement in the extracted object


@dataclass
class Extracted:
    obj: ElfObject
    patched: list[PatchedFunction] = field(default_factory=list)
    # The patch author's callbacks (<ksplice/hooks.h>): (kind, global symbol of the pointer).
    hooks: list[tuple[str, str]] = field(default_factory=list)


HOOK_SECTION_PREFIX = ".ksplice.hook."
HOOK_KINDS = ("pre_patch", "post_patch", "pre_unpatch", "post_unpatch")


@dataclass(frozen=True)
class SymRef:
    """A symbol of the object being built, before its final index is known: locals come first
    in an ELF symbol table, so a global's index is only fixed once every local is added."""

    is_global: bool
    position: int  # in the builder's locals or globals list


class _Builder:
    def __init__(
        self,
        post: ElfObject,
        resolver: Resolver,
        included: Mapping[tuple[int, int], Function],
        new_data: set[str],
    ) -> None:
        self.post = post
        self.resolver = resolver
        # (post section, offset) -> each function the update carries
        self.included_funcs = dict(included)
        self.new_data = new_data
        # post symbol index -> the symbol that stands for it in the built object
        self.own_symbols: dict[int, SymRef] = {}
        self.sections: list[Section] = [Section("", 0, 0, b"")]
        self.locals: list[Symbol] = [Symbol("", 0, 0, 0, 0, 0)]
        self.globals: list[Symbol] = []
        # (post section, start of the piece) -> the out section it was copied into
        self.copied: dict[tuple[int, int], int] = {}
        self.section_sym: dict[int, int] = {}  # out section -> local symbol position
        self.external: dict[str, int] = {}  # global name -> position in globals
        self.pending: list[tuple[int, int, int, int]] = []  # out sec, post sec, start, size
        self.relocs: dict[int, list[tuple[int, int, SymRef, int]]] = {}
        self.symbol_index = {id(s): i for i, s in enumerate(post.symbols)}

    def add_local(self, sym: Symbol) -> SymRef:
        self.locals.append(sym)
        return SymRef(is_global=False, position=len(self.locals) - 1)

    def add_global(self, sym: Symbol) -> SymRef:
        if sym.name not in self.external:
            self.globals.append(sym)
            self.external[sym.name] = len(self.globals) - 1
        return SymRef(is_global=True, position=self.external[sym.name])

    def copy_range(self, post_sec: int, start: int, size: int, name: str) -> int:
        key = (post_sec, start)
        if key in self.copied:
            return self.copied[key]
        src = self.post.sections[post_sec]
        data = b"" if src.type == SHT_NOBITS else src.data[start : start + size]
        out = Section(
            name=name,
            type=src.type,
            flags=src.flags,
            data=data,
            addralign=src.addralign,
            entsize=src.entsize,
            size_override=size if src.type == SHT_NOBITS else None,
        )
        self.sections.append(out)
        index = len(self.sections) - 1
        self.copied[key] = index
        ref = self.add_local(Symbol("", 0, 0, STT_SECTION, STB_LOCAL, index))
        self.section_sym[index] = ref.position
        self.pending.append((index, post_sec, start, size))
        return index

    def copy_section(self, post_sec: int) -> int:
        src = self.post.sections[post_sec]
        return self.copy_range(post_sec, 0, src.size, src.name)

    def target(self, reloc: Relocation, in_code: bool) -> tuple[SymRef, int]:
        """The out symbol and addend a post relocation must use."""
        post = self.post
        sym = post.symbols[reloc.symbol]
        addend = reloc.addend
        relative = section_relative(sym, addend)
        if relative is not None:
            addend = relative
            sec = post.sections[sym.shndx]
            named = referenced_symbol(post, sym.shndx, addend, reloc.type, in_code)
            if named is not None and named.type == STT_FUNC:
                included = self.function_at(sym.shndx, named.value)
                if included is not None:
                    out, fn = included
                    return SymRef(False, self.section_sym[out]), addend - fn.offset
            if named is None or sec.flags & SHF_STRINGS:
                if sec.flags & SHF_WRITE or not sec.flags & SHF_ALLOC:
                    raise RefusedError(
                        f"cannot carry a reference into {sec.name}+{addend:#x}: "
                        "writable data without a symbol"
                    )
                out = self.copy_section(sym.shndx)
                return SymRef(False, self.section_sym[out]), addend
            sym = named
            addend -= named.value
        return self.symbol_ref(sym), addend

    def function_at(self, shndx: int, offset: int) -> tuple[int, Function] | None:
        for (sec, start), out in self.copied.items():
            fn = self.included_funcs.get((sec, start))
            if sec == shndx and fn is not None and start <= offset < start + max(fn.size, 1):
                return out, fn
        return None

    def symbol_ref(self, sym: Symbol) -> SymRef:
        index = self.symbol_index[id(sym)]
        if index in self.own_symbols:
            return self.own_symbols[index]
        carried = sym.name in self.new_data or plain_constant(self.post, sym)
        # A pr_debug descriptor travels with its call site: the module registers its own copy
        # (with its static key) when it loads, as it does for any module's __dyndbg.
        if sym.is_defined and (carried or is_dyndbg(self.post, sym)):
            out = self.copy_range(
                sym.shndx, sym.value, sym.size, self.post.sections[sym.shndx].name
            )
            ref = self.add_local(
                Symbol(sym.name, 0, sym.size, STT_OBJECT, STB_LOCAL, out, sym.other)
            )
            self.own_symbols[index] = ref
            return ref
        ext = self.resolver(self.post, sym)
        bind = STB_GLOBAL if ext.exported else STB_WEAK
        return self.add_global(Symbol(ext.name, 0, 0, STT_NOTYPE, bind, SHN_UNDEF))

    def flush(self) -> None:
        while self.pending:
            out, post_sec, start, size = self.pending.pop()
            rela = self.post.rela_for(post_sec)
            if rela is None:
                continue
            in_code = bool(self.post.sections[post_sec].flags & SHF_EXECINSTR)
            for r in rela.relocations:
                if start <= r.offset < start + size:
                    ref, addend = self.target(r, in_code)
                    self.relocs.setdefault(out, []).append((r.offset - start, r.type, ref, addend))

    def owner(self, reloc: Relocation) -> int | None:
        """The out section of included code that a special-section entry's relocation names."""
        sym = self.post.symbols[reloc.symbol]
        if sym.type == STT_SECTION:
            offset = reloc.addend
        elif sym.type == STT_FUNC and sym.is_defined:
            offset = sym.value + reloc.addend
        else:
            return None
        found = self.function_at(sym.shndx, offset)
        return found[0] if found else None

    def carry_special_sections(self, sizes: Mapping[str, int]) -> None:
        kept_by_section: dict[str, list[int]] = {}
        for index, sec in enumerate(self.post.sections):
            if sec.name not in sizes or sec.name in PARALLEL or sec.type == SHT_RELA:
                continue
            rela = self.post.rela_for(index)
            if rela is None:
                continue
            size = sizes[sec.name]
            if size <= 0 or len(sec.data) % size:
                # A probed size that does not divide the table would carve wrong entries.
                raise InternalError(
                    f"{sec.name} holds {len(sec.data)} bytes, not a whole number of "
                    f"{size}-byte entries"
                )
            entries: dict[int, list[Relocation]] = {}
            for r in rela.relocations:
                entries.setdefault(r.offset // size, []).append(r)
            kept = [
                n
                for n, relocs in sorted(entries.items())
                if self.owner(min(relocs, key=lambda r: r.offset)) is not None
            ]
            if not kept:
                continue
            kept_by_section[sec.name] = kept
            out = self._new_section(
                sec, b"".join(sec.data[n * size : (n + 1) * size] for n in kept)
            )
            for position, n in enumerate(kept):
                for r in sorted(entries[n], key=lambda r: r.offset):
                    ref, addend = self.target(r, in_code=False)
                    offset = position * size + r.offset - n * size
                    self.relocs.setdefault(out, []).append((offset, r.type, ref, addend))
        for name, leader in PARALLEL.items():
            found = self.post.section_index(name)
            if found is None or leader not in kept_by_section or name not in sizes:
                continue
            sec, size = self.post.sections[found], sizes[name]
            self._new_section(
                sec, b"".join(sec.data[n * size : (n + 1) * size] for n in kept_by_section[leader])
            )
        self.flush()

    def _new_section(self, like: Section, data: bytes) -> int:
        self.sections.append(
            Section(
                name=like.name,
                type=like.type,
                flags=like.flags,
                data=data,
                addralign=like.addralign,
                entsize=like.entsize,
            )
        )
        index = len(self.sections) - 1
        ref = self.add_local(Symbol("", 0, 0, STT_SECTION, STB_LOCAL, index))
        self.section_sym[index] = ref.position
        return index

    def finish(self) -> ElfObject:
        self.flush()
        symbols = self.locals + self.globals
        first_global = len(self.locals)

        def index(ref: SymRef) -> int:
            return first_global + ref.position if ref.is_global else ref.position

        sections = list(self.sections)
        for out, relocs in sorted(self.relocs.items()):
            sections.append(
                Section(
                    name=".rela" + sections[out].name,
                    type=SHT_RELA,
                    flags=SHF_INFO_LINK,
                    data=b"",
                    addralign=8,
                    info=out,
                    relocations=[
                        Relocation(off, typ, index(ref), add) for off, typ, ref, add in relocs
                    ],
                )
            )
        sections.append(Section(".note.GNU-stack", SHT_PROGBITS, 0, b""))
        symtab = len(sections)
        sections.append(Section(".symtab", SHT_SYMTAB, 0, b"", addralign=8, link=symtab + 1))
        sections.append(Section(".strtab", SHT_STRTAB, 0, b""))
        sections.append(Section(".shstrtab", SHT_STRTAB, 0, b""))
        return ElfObject(sections=sections, symbols=symbols, flags=self.post.flags)


def extract(
    post: ElfObject,
    diff: UnitDiff,
    resolver: Resolver,
    unit_tag: str,
    entry_sizes: Mapping[str, int],
    shared: frozenset[str] = frozenset(),
) -> Extracted:
    """Build the object holding the changed and new functions of one compilation unit. The new
    functions named in shared stay global under their names: other units' parts call them."""
    funcs = functions(post)
    wanted = set(diff.changed) | set(diff.new_functions)
    # A .cold part belongs to its parent: it is carried whenever the parent is, and a change in
    # it alone is a change of the parent.
    for name in list(wanted):
        if name.endswith(".cold"):
            parent = name.removesuffix(".cold")
            if parent in funcs:
                wanted.add(parent)
    for name in list(wanted):
        if f"{name}.cold" in funcs:
            wanted.add(f"{name}.cold")
    ordered = sorted(wanted, key=lambda n: (funcs[n].section, funcs[n].offset))
    included = {(funcs[n].section, funcs[n].offset): funcs[n] for n in ordered}
    b = _Builder(post, resolver, included, set(diff.new_data))
    result_patched: list[PatchedFunction] = []
    for name in ordered:
        fn = funcs[name]
        out = b.copy_range(fn.section, fn.offset, fn.size, f".text.{name}")
        b.sections[out].flags |= SHF_ALLOC | SHF_EXECINSTR
        patched = name in diff.changed and not name.endswith(".cold")
        if patched:
            new_symbol = f"__ksplice_{unit_tag}_{len(result_patched)}"
            ref = b.add_global(Symbol(new_symbol, 0, fn.size, STT_FUNC, STB_GLOBAL, out))
            result_patched.append(
                PatchedFunction(old_name=diff.pre_names.get(name, name), new_symbol=new_symbol)
            )
        elif name in shared and name in diff.new_functions:
            ref = b.add_global(Symbol(name, 0, fn.size, STT_FUNC, STB_GLOBAL, out))
        else:
            ref = b.add_local(Symbol(name, 0, fn.size, STT_FUNC, STB_LOCAL, out))
        b.own_symbols[fn.symbol] = ref
    hooks = _carry_hooks(b, unit_tag)
    b.flush()
    b.carry_special_sections(entry_sizes)
    return Extracted(obj=b.finish(), patched=result_patched, hooks=hooks)


def _carry_hooks(b: _Builder, unit_tag: str) -> list[tuple[str, str]]:
    """Carry each hook pointer of <ksplice/hooks.h> as a global the generated klp_patch calls
    through; the functions they point at are new code of the patch, carried like any other."""
    hooks: list[tuple[str, str]] = []
    for index, sym in enumerate(b.post.symbols):
        if not sym.is_defined or sym.type != STT_OBJECT:
            continue
        section = b.post.sections[sym.shndx].name
        if not section.startswith(HOOK_SECTION_PREFIX):
            continue
        kind = section.removeprefix(HOOK_SECTION_PREFIX)
        if kind not in HOOK_KINDS:
            raise RefusedError(
                f"{sym.name} is in {section}: not a hook of <ksplice/hooks.h>",
                hint=f"use one of KSPLICE_{', KSPLICE_'.join(k.upper() for k in HOOK_KINDS)}",
            )
        out = b.copy_range(sym.shndx, sym.value, sym.size, section)
        name = f"__ksplice_hook_{kind}_{unit_tag}_{len(hooks)}"
        b.own_symbols[index] = b.add_global(
            Symbol(name, 0, sym.size, STT_OBJECT, STB_GLOBAL, out, sym.other)
        )
        hooks.append((kind, name))
    return hooks
