"""Run-pre: prove that the pre-patch object code is the code of the target kernel.

ksplice's idea: a function compiled from the source we are about to patch must equal, byte for
byte, the function in the running kernel once the bytes that the linker fills in (relocation
sites) are set aside. The candidates are the kernel's functions of that name; exactly one must
match, and its position among the same-named symbols is the sympos the livepatch will use.

The linker-filled bytes are not wasted: in the target binary they hold the final value of each
relocation, which decodes to the address the kernel really references there. That is evidence of
which same-named symbol a relocation means, and a cross-check of the relocation's symbol name.

Addresses: the binary is read at link-time addresses, the symbol map may be KASLR-shifted (a copy
of /proc/kallsyms); `_text` in both gives the shift. Match.address and the references are in the
symbol map's own addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ksplice_pkg.elf.model import RELOC_FORMS, RelocForm
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError, RunPreMismatchError
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap

_MISMATCH_HINT = (
    "the source tree, its .config or the compiler differ from those that built the target "
    "kernel: build the update from the target's exact source package and configuration"
)


@dataclass(frozen=True)
class PreReloc:
    offset: int  # within the function
    type: int  # x86-64 ELF relocation type number (R_X86_64_*)
    # The referenced symbol in the pre object; "" for a section symbol that the caller could not
    # rewrite to symbol+offset (its site is still masked, but names nothing to check).
    symbol: str
    addend: int


@dataclass(frozen=True)
class PreFunction:
    name: str  # as in the pre object and in kallsyms, GCC clone suffixes included (foo.isra.0)
    code: bytes  # its .text.<name> section
    relocs: tuple[PreReloc, ...]


@dataclass(frozen=True)
class Match:
    """Where the function lies in the target kernel and what its relocations resolve to there."""

    address: int  # in the symbol map's addresses (KASLR-shifted when the map is)
    sympos: int  # 0 when the name is unique in vmlinux
    # reloc offset -> the symbol the target binary references at that site, where known
    references: dict[int, KernelSymbol] = field(default_factory=dict)


def _form(fn: PreFunction, reloc: PreReloc) -> RelocForm:
    form = RELOC_FORMS.get(reloc.type)
    if form is None:
        raise KspliceError(
            f"{fn.name}: relocation type {reloc.type} at +{reloc.offset:#x} is not one that "
            "kernel code uses on x86-64",
            hint="ksplice-pkg handles R_X86_64_64, PC32, PLT32, 32, 32S and PC64",
        )
    size = form.size
    if reloc.offset < 0 or reloc.offset + size > len(fn.code):
        raise KspliceError(
            f"{fn.name}: relocation at +{reloc.offset:#x} runs past the function's "
            f"{len(fn.code)} bytes"
        )
    return form


def masked(fn: PreFunction) -> bytearray:
    """Which bytes of fn the linker fills in: 1 for a relocation site, 0 for compiled code."""
    mask = bytearray(len(fn.code))
    for reloc in fn.relocs:
        size = _form(fn, reloc).size
        mask[reloc.offset : reloc.offset + size] = b"\x01" * size
    return mask


def first_difference(code: bytes, target: bytes, mask: bytearray) -> int | None:
    """The first offset where code and target differ outside the masked relocation sites."""
    for offset, (ours, theirs) in enumerate(zip(code, target, strict=True)):
        if ours != theirs and not mask[offset]:
            return offset
    return None


def _decode(reloc: PreReloc, target: bytes, link_address: int) -> int:
    """The link-time address S of the symbol the site refers to, from the value stored there.

    The linker stored S + A (absolute types) or S + A - P (PC-relative, P the site's address).
    """
    form = RELOC_FORMS[reloc.type]
    site = target[reloc.offset : reloc.offset + form.size]
    value = int.from_bytes(site, "little", signed=form.signed)
    if form.pc_relative:
        value += link_address + reloc.offset
    return (value - reloc.addend) & 0xFFFF_FFFF_FFFF_FFFF


class _Resolver:
    """Maps link-time addresses the binary references to symbols of the (shifted) map."""

    def __init__(self, symbols: SymbolMap, vmlinux: Vmlinux, shift: int) -> None:
        self.symbols = symbols
        self.vmlinux = vmlinux
        self.shift = shift

    def resolve(self, link_address: int, wanted: str) -> tuple[KernelSymbol | None, bool]:
        """The symbol at link_address and whether that contradicts the name wanted.

        A contradiction needs proof: the map has vmlinux symbols named wanted and none lies
        where the binary points. A name the map lacks (a static the kernel's kallsyms leaves
        out) or an unnamed reference proves nothing.
        """
        # Per-cpu variables are offsets from the per-cpu base: KASLR does not move them.
        per_cpu = self.vmlinux.section_name(link_address) == ".data..percpu"
        address = link_address if per_cpu else link_address + self.shift
        here = self.symbols.symbols_at(address)
        named = [s for s in here if s.name == wanted and s.module is None]
        if named:
            return named[0], False
        found = self.symbols.symbol_at(address)
        contradicts = bool(wanted) and bool(self.symbols.vmlinux_symbols_named(wanted))
        return found, contradicts


@dataclass
class _Attempt:
    candidate: KernelSymbol
    references: dict[int, KernelSymbol]
    problem: str | None  # None when the candidate matches


def _try_candidate(
    fn: PreFunction, mask: bytearray, candidate: KernelSymbol, resolver: _Resolver
) -> _Attempt:
    link_address = candidate.address - resolver.shift
    try:
        target = resolver.vmlinux.read(link_address, len(fn.code))
    except KspliceError as e:
        return _Attempt(candidate, {}, e.message)
    difference = first_difference(fn.code, target, mask)
    if difference is not None:
        return _Attempt(
            candidate,
            {},
            f"differs at +{difference:#x} (ours {fn.code[difference]:#04x}, "
            f"target's {target[difference]:#04x})",
        )
    references: dict[int, KernelSymbol] = {}
    for reloc in fn.relocs:
        referenced = _decode(reloc, target, link_address)
        symbol, contradicts = resolver.resolve(referenced, reloc.symbol)
        if contradicts:
            seen = str(symbol) if symbol else f"{referenced + resolver.shift:#x}"
            return _Attempt(
                candidate,
                {},
                f"refers at +{reloc.offset:#x} to {seen}, not to {reloc.symbol}",
            )
        if symbol is not None and reloc.symbol:
            references[reloc.offset] = symbol
    return _Attempt(candidate, references, None)


def _candidates(
    fn: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux, shift: int
) -> list[KernelSymbol]:
    # Weak definitions (W) are functions too when they lie in executable code.
    return [
        s
        for s in symbols.vmlinux_symbols_named(fn.name)
        if s.is_text or (s.type in "wW" and vmlinux.is_executable(s.address - shift))
    ]


def verify_function(fn: PreFunction, symbols: SymbolMap, vmlinux: Vmlinux) -> Match:
    """The one function of the target kernel that fn's code matches, with its sympos."""
    shift = symbols.kaslr_shift(vmlinux.text_address)
    candidates = _candidates(fn, symbols, vmlinux, shift)
    if not candidates:
        raise RunPreMismatchError(
            f"{fn.name}: the target kernel has no function of that name",
            hint="it may be inlined into its callers or named differently (a GCC clone suffix) "
            "in the target; otherwise " + _MISMATCH_HINT,
        )
    mask = masked(fn)
    resolver = _Resolver(symbols, vmlinux, shift)
    attempts = [_try_candidate(fn, mask, c, resolver) for c in candidates]
    matches = [a for a in attempts if a.problem is None]
    if not matches:
        detail = "; ".join(f"at {a.candidate.address:#x} it {a.problem}" for a in attempts)
        raise RunPreMismatchError(
            f"{fn.name}: the pre-patch code does not match the target kernel: {detail}",
            hint=_MISMATCH_HINT,
        )
    if len(matches) > 1:
        where = ", ".join(f"{a.candidate.address:#x}" for a in matches)
        raise RunPreMismatchError(
            f"{fn.name}: ambiguous: {len(matches)} functions of that name in the target kernel "
            f"match the pre-patch code ({where}), so nothing shows which one the source means",
            hint="patch the function through a caller or a uniquely named function instead",
        )
    (match,) = matches
    address = match.candidate.address
    return Match(
        address=address,
        sympos=symbols.sympos(fn.name, address),
        references=match.references,
    )
