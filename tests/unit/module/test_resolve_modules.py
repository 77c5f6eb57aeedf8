"""How a module unit's code reaches each symbol, on .ko-like objects gcc builds here: vmlinux
exports stay ordinary relocations, everything of the module itself (its exports too) and of the
modules it depends on becomes a klp symbol of that module, other modules are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.elf.model import SHN_UNDEF, STB_GLOBAL, STT_NOTYPE, ElfObject, Symbol
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.module.extract import Resolver
from ksplice_pkg.module.resolve import make_module_resolver
from ksplice_pkg.target.modules import ModuleBinary
from ksplice_pkg.target.symbols import KernelSymbol, SymbolMap

MODULE = """
static const char depends[] __attribute__((section(".modinfo"), used)) = "depends=dep";
static int counter;
int own_export(void) { return ++counter; }
"""
DEPENDENCY = "int dep_helper(int x) { return x + 1; }\nint other_helper(void) { return 0; }\n"


def _binary(tmp_path: Path, name: str, source: str) -> ModuleBinary:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    subprocess.run(
        ["gcc", "-c", "-O2", "-o", tmp_path / f"{name}.o", src], check=True, capture_output=True
    )
    return ModuleBinary(name, tmp_path / f"{name}.o")


def _resolver(tmp_path: Path) -> Resolver:
    ko = _binary(tmp_path, "mymod", MODULE)
    others = {"dep": _binary(tmp_path, "dep", DEPENDENCY)}
    symbols = SymbolMap([KernelSymbol(0xFFFFFFFF81000000, "T", "_text", None)])
    return make_module_resolver(
        {"printk"},
        {"own_export": "mymod", "dep_helper": "dep", "far_helper": "far"},
        symbols,
        ko,
        lambda name: None,
        "drivers/x/unit.o",
        {},
        others.__getitem__,
    )


def _ref(resolver: Resolver, name: str, local: bool = False) -> tuple[str, bool]:
    sym = Symbol(name, 0, 0, STT_NOTYPE, 0 if local else STB_GLOBAL, SHN_UNDEF)
    ext = resolver(ElfObject([], []), sym)
    return ext.name, ext.exported


def test_each_symbol_is_reached_from_its_own_object(tmp_path: Path) -> None:
    resolve = _resolver(tmp_path)
    assert _ref(resolve, "printk") == ("printk", True)
    # The module's own export: a klp symbol, so the update loads without the module.
    assert _ref(resolve, "own_export") == (".klp.sym.mymod.own_export,0", False)
    assert _ref(resolve, "counter", local=True) == (".klp.sym.mymod.counter,0", False)
    # A module it depends on, exported or not.
    assert _ref(resolve, "dep_helper") == (".klp.sym.dep.dep_helper,0", False)
    assert _ref(resolve, "other_helper") == (".klp.sym.dep.other_helper,0", False)


def test_export_of_a_module_it_does_not_depend_on_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RefusedError) as e:
        _ref(_resolver(tmp_path), "far_helper")
    assert "far_helper" in e.value.message and "far" in e.value.message
    assert "mymod" in e.value.message


def test_a_dependency_is_named_as_the_kernel_names_it(tmp_path: Path) -> None:
    # modinfo spells dm-snapshot's dependency as its file, `dm-bufio`; the kernel's module
    # is `dm_bufio`, and a klp relocation naming `dm-bufio` would never be written.
    ko = _binary(tmp_path, "dm_snapshot", MODULE.replace("depends=dep", "depends=dm-bufio"))
    assert ko.depends() == {"dm_bufio"}
    others = {"dm_bufio": _binary(tmp_path, "dm_bufio", DEPENDENCY)}
    symbols = SymbolMap([KernelSymbol(0xFFFFFFFF81000000, "T", "_text", None)])
    resolve = make_module_resolver(
        set(), {}, symbols, ko, lambda name: None, "drivers/md/dm-snap.o", {}, others.__getitem__
    )
    assert _ref(resolve, "dep_helper") == (".klp.sym.dm_bufio.dep_helper,0", False)
