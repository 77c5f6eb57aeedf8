"""The target kernel's symbol map: a System.map, or a copy of /proc/kallsyms.

Both list `address type name`; kallsyms adds `[module]` for module symbols and, under KASLR,
shows vmlinux addresses shifted by one constant from the link-time ones (which `_text` reveals).
Order is kept as read: for kallsyms it is the order in which the kernel itself walks its symbols,
and that order defines a symbol's sympos.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError

__all__ = ["KernelSymbol", "SymbolMap"]

TEXT_TYPES = frozenset("tT")
# nm's letters for symbols in text, data, read-only data and bss: what code refers to.
_SECTION_TYPES = frozenset("tTdDrRbB")
# Weak symbols are real definitions too, just ranked after the plain ones at the same address.
_WEAK_TYPES = frozenset("wWvV")

_ROOT_HINT = (
    "copy /proc/kallsyms as root: with kernel.kptr_restrict other users see only zero addresses"
)


@dataclass(frozen=True)
class KernelSymbol:
    address: int
    type: str  # nm's letter: t/T text, d/D data, r/R read-only, b/B bss, A absolute, W weak...
    name: str
    module: str | None  # None for vmlinux

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    def __str__(self) -> str:
        where = f" [{self.module}]" if self.module else ""
        return f"{self.name} ({self.type} {self.address:#x}{where})"


def _rank(symbol: KernelSymbol) -> int:
    """Lower is a better name for an address: a function or variable over an alias or marker."""
    if symbol.type in _SECTION_TYPES:
        return 0
    if symbol.type in _WEAK_TYPES:
        return 1
    return 2


def _parse_line(line: str, path: Path, lineno: int) -> KernelSymbol:
    fields = line.split()
    module: str | None = None
    if len(fields) == 4 and fields[3].startswith("[") and fields[3].endswith("]"):
        module = fields[3][1:-1]
    elif len(fields) != 3:
        if "System.map" in line:
            # Debian's image package ships this one-line stub instead of the real map.
            raise KspliceError(
                f"{path} is a placeholder, not a symbol map: {line.strip()!r}",
                hint="use the System.map of the linux-image-<release>-dbg package, or a copy of "
                "/proc/kallsyms taken as root on the target kernel",
            )
        raise KspliceError(
            f"{path}:{lineno}: not a System.map or /proc/kallsyms line: {line.strip()!r}"
        )
    address, type_, name = fields[:3]
    if len(type_) != 1:
        raise KspliceError(f"{path}:{lineno}: {type_!r} is not a symbol type letter")
    try:
        value = int(address, 16)
    except ValueError:
        raise KspliceError(f"{path}:{lineno}: {address!r} is not a hexadecimal address") from None
    return KernelSymbol(address=value, type=type_, name=name, module=module)


class SymbolMap:
    """The symbols of a kernel (vmlinux and, for kallsyms, its loaded modules) in map order."""

    def __init__(self, symbols: Iterable[KernelSymbol], source: str = "symbol map") -> None:
        self.symbols: tuple[KernelSymbol, ...] = tuple(symbols)
        self.source = source
        self._vmlinux_by_name: dict[str, list[KernelSymbol]] = {}
        for symbol in self.symbols:
            if symbol.module is None:
                self._vmlinux_by_name.setdefault(symbol.name, []).append(symbol)
        # Every symbol sorted by address, map order kept among equal addresses.
        self._by_address = sorted(self.symbols, key=lambda s: s.address)
        self._addresses = [s.address for s in self._by_address]

    @classmethod
    def load(cls, path: Path) -> SymbolMap:
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            raise KspliceError(f"cannot read the symbol map {path}: {e.strerror}") from e
        symbols = [
            _parse_line(line, path, lineno)
            for lineno, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
        if not symbols:
            raise KspliceError(f"{path} lists no symbols")
        # Without CAP_SYSLOG /proc/kallsyms reads fine but every address is 0. Per-cpu symbols
        # are legitimately at 0 and up, but no function ever is.
        if all(s.address == 0 for s in symbols) or any(
            s.address == 0 for s in symbols if s.is_text
        ):
            raise KspliceError(
                f"{path} has zero addresses: it was read without root", hint=_ROOT_HINT
            )
        return cls(symbols, source=str(path))

    def __len__(self) -> int:
        return len(self.symbols)

    def vmlinux_symbols_named(self, name: str) -> list[KernelSymbol]:
        """The vmlinux symbols called name, in map order."""
        return list(self._vmlinux_by_name.get(name, ()))

    def sympos(self, name: str, address: int) -> int:
        """The livepatch position of the vmlinux symbol name at address: 0 if the name is unique.

        kernel/livepatch/core.c (6.1: klp_find_callback, called through kallsyms_on_each_symbol by
        klp_find_object_symbol; later kernels split it into klp_match_callback) counts, in
        kallsyms order, every vmlinux symbol whose name equals name, whatever its type, and stops
        at the sympos-th one; sympos 0 is accepted only when the count is 1.
        """
        same = self._vmlinux_by_name.get(name, [])
        for position, symbol in enumerate(same, 1):
            if symbol.address == address:
                return 0 if len(same) == 1 else position
        where = ", ".join(f"{s.address:#x}" for s in same) or "none"
        raise KspliceError(
            f"no vmlinux symbol {name} at {address:#x} in {self.source} "
            f"(symbols of that name: {where})"
        )

    def symbols_at(self, address: int) -> list[KernelSymbol]:
        """Every symbol starting exactly at address, in map order."""
        lo = bisect.bisect_left(self._addresses, address)
        hi = bisect.bisect_right(self._addresses, address)
        return self._by_address[lo:hi]

    def symbol_at(self, address: int) -> KernelSymbol | None:
        """The symbol starting exactly at address; a function or variable over aliases."""
        here = self.symbols_at(address)
        return min(here, key=_rank) if here else None

    def kaslr_shift(self, link_text_address: int) -> int:
        """How far KASLR moved this kernel: `_text` here minus its link-time address."""
        text = [s for s in self._vmlinux_by_name.get("_text", []) if s.is_text]
        if not text:
            raise KspliceError(
                f"{self.source} has no _text symbol: it is not a kernel's symbol map",
                hint="give a System.map or a copy of /proc/kallsyms of the target kernel",
            )
        return text[0].address - link_text_address
