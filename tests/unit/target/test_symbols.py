"""Reading System.map and /proc/kallsyms copies: order, modules, KASLR, sympos."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap
from tests.unit.tools import unshifted

LINK_TEXT = 0xFFFFFFFF81000000
SHIFT = 0x2C800000

# A System.map as `nm -n vmlinux` writes it: link-time addresses, per-cpu symbols from 0.
SYSTEM_MAP = """\
0000000000000000 D __per_cpu_start
0000000000000000 D fixed_percpu_data
000000000000b000 D current_task
ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff81001000 t show_stat
ffffffff81001080 T seq_puts
ffffffff81001100 t show_stat
ffffffff81001180 t helper.isra.0
ffffffff810011c0 W arch_hook
ffffffff81001200 t show_stat
ffffffff82000000 D jiffies_64
ffffffff82000000 D jiffies
ffffffff82000010 d show_stat
ffffffff82000100 B __bss_stop
"""


def _kallsyms(shift: int) -> str:
    """The same kernel's /proc/kallsyms: shifted by KASLR, per-cpu absolute, modules last."""
    lines = []
    for line in SYSTEM_MAP.splitlines():
        address, type_, name = line.split()
        if int(address, 16) < LINK_TEXT:
            lines.append(f"{address} A {name}")
        else:
            lines.append(f"{int(address, 16) + shift:016x} {type_} {name}")
    lines += [
        "ffffffffc0400000 t show_stat\t[virtio_blk]",
        "ffffffffc0400100 T virtblk_probe\t[virtio_blk]",
        "ffffffffc0401000 b major\t[virtio_blk]",
    ]
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, text: str, name: str = "map") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def system_map(tmp_path: Path) -> SymbolMap:
    return SymbolMap.load(_write(tmp_path, SYSTEM_MAP, "System.map"))


@pytest.fixture
def kallsyms(tmp_path: Path) -> SymbolMap:
    return SymbolMap.load(_write(tmp_path, _kallsyms(SHIFT), "kallsyms"))


def test_system_map_entries(system_map: SymbolMap) -> None:
    assert len(system_map) == SYSTEM_MAP.count("\n")
    assert system_map.symbols[3] == KernelSymbol(LINK_TEXT, "T", "_text", None)
    assert system_map.kaslr_shift(LINK_TEXT) == 0


def test_kallsyms_modules_and_order(kallsyms: SymbolMap) -> None:
    assert kallsyms.symbols[-2] == KernelSymbol(
        0xFFFFFFFFC0400100, "T", "virtblk_probe", "virtio_blk"
    )
    # The module's show_stat is not one of vmlinux's: sympos counts vmlinux symbols only.
    named = kallsyms.vmlinux_symbols_named("show_stat")
    assert [s.type for s in named] == ["t", "t", "t", "d"]
    assert [s.address for s in named] == sorted(s.address for s in named)
    assert all(s.module is None for s in named)
    assert kallsyms.vmlinux_symbols_named("virtblk_probe") == []


def test_kaslr_shift_and_unshifted(kallsyms: SymbolMap, system_map: SymbolMap) -> None:
    assert kallsyms.kaslr_shift(LINK_TEXT) == SHIFT
    plain = unshifted(kallsyms, SHIFT)
    assert plain.kaslr_shift(LINK_TEXT) == 0
    vmlinux = [s for s in plain.symbols if s.module is None]
    assert [(s.address, s.name) for s in vmlinux] == [
        (s.address, s.name) for s in system_map.symbols
    ]
    # Per-cpu offsets are absolute and modules are placed on their own: neither moves.
    (current,) = plain.vmlinux_symbols_named("current_task")
    assert current.address == 0xB000
    assert plain.symbols[-1].address == 0xFFFFFFFFC0401000


def test_sympos_follows_the_kernel(kallsyms: SymbolMap) -> None:
    addresses = [s.address for s in kallsyms.vmlinux_symbols_named("show_stat")]
    # Every vmlinux symbol of the name counts, data too, in kallsyms order, from 1.
    assert [kallsyms.sympos("show_stat", a) for a in addresses] == [1, 2, 3, 4]
    (seq_puts,) = kallsyms.vmlinux_symbols_named("seq_puts")
    assert kallsyms.sympos("seq_puts", seq_puts.address) == 0
    (clone,) = kallsyms.vmlinux_symbols_named("helper.isra.0")
    assert kallsyms.sympos("helper.isra.0", clone.address) == 0


def test_sympos_of_an_absent_address(kallsyms: SymbolMap) -> None:
    with pytest.raises(KspliceError, match=r"\bshow_stat\b.*\b0x1234\b"):
        kallsyms.sympos("show_stat", 0x1234)
    with pytest.raises(KspliceError, match=r"\bnosuch\b"):
        kallsyms.sympos("nosuch", LINK_TEXT + SHIFT)
    # A module's symbol has no vmlinux sympos.
    with pytest.raises(KspliceError):
        kallsyms.sympos("show_stat", 0xFFFFFFFFC0400000)


def test_symbol_at_prefers_real_symbols(system_map: SymbolMap) -> None:
    at = system_map.symbol_at
    assert at(LINK_TEXT) == KernelSymbol(LINK_TEXT, "T", "_text", None)
    assert at(0xFFFFFFFF81001080) == KernelSymbol(0xFFFFFFFF81001080, "T", "seq_puts", None)
    assert at(0xFFFFFFFF81001081) is None
    jiffies = system_map.symbols_at(0xFFFFFFFF82000000)
    assert [s.name for s in jiffies] == ["jiffies_64", "jiffies"]


def test_symbol_at_ranks_types(tmp_path: Path) -> None:
    text = (
        "ffffffff81000000 T _text\n"
        "ffffffff81000100 A marker\n"
        "ffffffff81000100 W weak_fn\n"
        "ffffffff81000100 t real_fn\n"
        "ffffffff81000200 A only_marker\n"
    )
    symbols = SymbolMap.load(_write(tmp_path, text))
    found = symbols.symbol_at(0xFFFFFFFF81000100)
    assert found is not None and found.name == "real_fn"
    found = symbols.symbol_at(0xFFFFFFFF81000200)
    assert found is not None and found.name == "only_marker"


def test_zero_addresses_are_refused(tmp_path: Path) -> None:
    """/proc/kallsyms read without root: the right names, every address zero."""
    hidden = "".join(f"{0:016x} {line[17:]}\n" for line in SYSTEM_MAP.splitlines())
    path = _write(tmp_path, hidden)
    with pytest.raises(KspliceError) as e:
        SymbolMap.load(path)
    assert str(path) in e.value.message
    # The hint names what hides the addresses.
    assert e.value.hint is not None and "kptr_restrict" in e.value.hint


def test_debian_stub_system_map_is_refused(tmp_path: Path) -> None:
    stub = "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
    path = _write(tmp_path, stub)
    with pytest.raises(KspliceError) as e:
        SymbolMap.load(path)
    assert str(path) in e.value.message
    # The hint names where a real map comes from.
    assert e.value.hint is not None and "/proc/kallsyms" in e.value.hint


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("", "map", id="empty"),  # the file
        pytest.param("ffffffff81000000 T\n", "map:1", id="no-name"),  # the file and line
        pytest.param("xyz T _text\n", "map:1: 'xyz'", id="bad-address"),  # and what is wrong
        pytest.param("ffffffff81000000 TT _text\n", "map:1: 'TT'", id="bad-type"),
    ],
)
def test_malformed_maps(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(KspliceError, match=re.escape(f"{tmp_path}/{named}")):
        SymbolMap.load(path)


def test_map_without_text(tmp_path: Path) -> None:
    symbols = SymbolMap.load(_write(tmp_path, "ffffffff81000100 t real_fn\n"))
    with pytest.raises(KspliceError, match=r"\b_text\b"):
        symbols.kaslr_shift(LINK_TEXT)
