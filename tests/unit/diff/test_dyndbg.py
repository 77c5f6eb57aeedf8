"""Dynamic debug descriptors in the differ and the extractor, on objects gcc builds here: a
pr_debug site is a `static struct _ddebug` in section __dyndbg named by GCC's counter
(__UNIQUE_ID_ddebug<N>), referenced by the code of its call site."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.module.extract import ExternalRef
from tests.unit.tools import diff, extract_unit, readelf_relocations, readelf_symbols

# What DEFINE_DYNAMIC_DEBUG_METADATA leaves in an object, reduced to its shape.
DDEBUG = """
struct _ddebug { const char *function; const char *format; unsigned int lineno; };
extern void __dynamic_pr_debug(struct _ddebug *d, const char *fmt, ...);
#define _CAT(a, b) a##b
#define CAT(a, b) _CAT(a, b)
#define _site(id, fmt, ...) do { \\
	static struct _ddebug __attribute__((section("__dyndbg"), aligned(8), used)) \\
	id = { __func__, fmt, __LINE__ }; \\
	__dynamic_pr_debug(&id, fmt, ##__VA_ARGS__); \\
} while (0)
#define pr_debug(fmt, ...) _site(CAT(__UNIQUE_ID_ddebug, __COUNTER__), fmt, ##__VA_ARGS__)
"""


def _source(first: str, second: str) -> str:
    return DDEBUG + (
        f"int one(int x) {{ {first} return x + 1; }}\nint two(int x) {{ {second} return x + 2; }}\n"
    )


PRE = _source('pr_debug("one %d\\n", x);', 'pr_debug("two %d\\n", x);')


def test_renumbered_descriptors_are_no_change(tmp_path: Path) -> None:
    # A new site on the same line (lines stay put, as #line keeps them in create): every later
    # descriptor's number moves.
    new_site = 'int zero(int x) { pr_debug("zero\\n"); return x; } '
    post = PRE.replace("int one(int x) {", new_site + "int one(int x) {")
    d = diff(tmp_path, PRE, post)
    # one()'s and two()'s descriptors have new numbers: no change, and no data of their own
    # (the only new data is zero()'s own name, its __func__).
    assert d.changed == {}
    assert [n.split(".")[0] for n in d.new_data] == ["__func__"]
    assert d.new_functions == ["zero"]


def test_changed_format_changes_the_site(tmp_path: Path) -> None:
    post = PRE.replace('"two %d\\n"', '"two: %d\\n"')
    d = diff(tmp_path, PRE, post)
    assert list(d.changed) == ["two"] and d.new_data == []


def _unresolved(obj: ElfObject, sym: Symbol) -> ExternalRef:
    return ExternalRef(sym.name, exported=True)


def test_descriptor_travels_with_its_site(tmp_path: Path) -> None:
    post = PRE.replace('"two %d\\n"', '"two: %d\\n"')
    _, part, extracted = extract_unit(tmp_path, PRE, post, _unresolved)
    assert [p.old_name for p in extracted.patched] == ["two"]
    ddebug = [s for s in readelf_symbols(part) if s.name.startswith("__UNIQUE_ID_ddebug")]
    # Carried as the module's own descriptor, in its own __dyndbg, not reached in the kernel.
    assert len(ddebug) == 1 and ddebug[0].ndx != "UND"
    relocations = readelf_relocations(part)
    assert any(r.section == ".rela__dyndbg" for r in relocations)
