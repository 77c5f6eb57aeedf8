"""How the module reaches each symbol it references but does not carry (module.resolve): an
export by name, anything else by its klp name and sympos, from run-pre's evidence or from a
name unique in the target's symbol map; a symbol the target lacks, or cannot tell apart, is the
user's error, named."""

from __future__ import annotations

import pytest

from ksplice_pkg.elf.model import (
    SHN_UNDEF,
    STB_GLOBAL,
    STB_LOCAL,
    STT_FUNC,
    STT_OBJECT,
    ElfObject,
    Symbol,
)
from ksplice_pkg.errors import KspliceError, UnknownSymbolError
from ksplice_pkg.module.extract import ExternalRef
from ksplice_pkg.module.resolve import make_resolver
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap

# Module.symvers: CRC, name, module, export type, namespace; tab separated.
SYMVERS = (
    "0x1b2c3d4e\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x00000000\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x5a5a5a5a\tusb_stor_probe\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\tUSB_STORAGE\n"
    "0x12121212\tcxl_bus_type\tvmlinux\tEXPORT_SYMBOL_GPL\tCXL\n"
)

A = 0xFFFFFFFF81001000
SYMBOLS = SymbolMap(
    [
        KernelSymbol(A, "T", "printk", None),
        KernelSymbol(A + 0x100, "t", "show_stat", None),
        KernelSymbol(A + 0x200, "t", "show_stat", None),
        KernelSymbol(A + 0x300, "d", "pid_max", None),
        KernelSymbol(A + 0x400, "b", "count.0", None),
        KernelSymbol(A + 0x500, "t", "seq_puts", None),  # a static of the same name as an export
        KernelSymbol(0xFFFFFFFFC0000000, "t", "show_stat", "virtio_blk"),
    ]
)


# The post object the symbols come from: the resolver decides by the symbol alone.
OBJ = ElfObject(sections=[], symbols=[])


def global_(name: str) -> Symbol:
    return Symbol(name, 0, 0, STT_FUNC, STB_GLOBAL, SHN_UNDEF)


def local(name: str) -> Symbol:
    return Symbol(name, 0, 4, STT_OBJECT, STB_LOCAL, 3)


def no_evidence(name: str) -> KernelSymbol | None:
    return None


def test_export_is_an_ordinary_reference() -> None:
    resolve = make_resolver({"printk"}, SYMBOLS, no_evidence, "t.o", {})
    assert resolve(OBJ, global_("printk")) == ExternalRef("printk", exported=True)


def test_local_of_an_exported_name_is_not_the_export() -> None:
    resolve = make_resolver({"seq_puts"}, SYMBOLS, no_evidence, "t.o", {})
    ref = resolve(OBJ, local("seq_puts"))
    assert ref == ExternalRef(".klp.sym.vmlinux.seq_puts,0", exported=False)


def test_unique_name_has_sympos_0() -> None:
    resolve = make_resolver(set(), SYMBOLS, no_evidence, "t.o", {})
    ref = resolve(OBJ, global_("pid_max"))
    assert ref == ExternalRef(".klp.sym.vmlinux.pid_max,0", exported=False)


@pytest.mark.parametrize(("address", "sympos"), [(A + 0x100, 1), (A + 0x200, 2)])
def test_evidence_decides_the_sympos(address: int, sympos: int) -> None:
    """Run-pre read the target binary: the reference is to the show_stat at that address."""
    seen = {"show_stat": KernelSymbol(address, "t", "show_stat", None)}
    resolve = make_resolver(set(), SYMBOLS, seen.get, "t.o", {})
    ref = resolve(OBJ, local("show_stat"))
    assert ref == ExternalRef(f".klp.sym.vmlinux.show_stat,{sympos}", exported=False)


def test_renumbered_static_is_looked_up_by_its_pre_name() -> None:
    asked: list[str] = []

    def evidence(name: str) -> KernelSymbol | None:
        asked.append(name)
        return None

    resolve = make_resolver(set(), SYMBOLS, evidence, "t.o", {"count.1": "count.0"})
    ref = resolve(OBJ, local("count.1"))
    assert asked == ["count.0"]
    assert ref == ExternalRef(".klp.sym.vmlinux.count.0,0", exported=False)


def test_symbol_missing_from_the_target_is_refused() -> None:
    resolve = make_resolver(set(), SYMBOLS, no_evidence, "fs/proc/t.o", {})
    with pytest.raises(UnknownSymbolError) as e:
        resolve(OBJ, global_("nosuch"))
    assert "nosuch" in e.value.message and "fs/proc/t.o" in e.value.message
    # The name itself, for the upload's derivation to tell whose change defines it.
    assert e.value.name == "nosuch"


def test_ambiguous_symbol_without_evidence_is_refused() -> None:
    """Two vmlinux show_stat (the module's does not count) and nothing says which one."""
    resolve = make_resolver(set(), SYMBOLS, no_evidence, "fs/proc/t.o", {})
    with pytest.raises(KspliceError) as e:
        resolve(OBJ, local("show_stat"))
    assert "show_stat" in e.value.message and "fs/proc/t.o" in e.value.message
    assert e.value.hint is not None
