"""Extraction (module.extract) on pre/post objects gcc builds here, checked with GNU readelf,
objcopy and ld: the extracted object holds exactly the changed and new code, a global
replacement symbol per changed function, klp-named weak undefined symbols for what vmlinux does
not export and plain undefined ones for what it does, the constants the code uses, and
relocations that point where the post object's did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.elf.model import ElfObject, Symbol
from ksplice_pkg.module.extract import ExternalRef, Extracted
from ksplice_pkg.module.klp import klp_symbol_name
from tests.unit.tools import (
    PRINTK,
    ReadelfReloc,
    ReadelfSymbol,
    extract_unit,
    readelf_relocations,
    readelf_sections,
    readelf_symbols,
    section_bytes,
    tool,
)

PRE = (
    PRINTK
    + r"""
extern int exported_counter;
extern int hidden_counter;
static int calls;
static const int table[4] = {3, 1, 4, 1};
static int __attribute__((noinline)) local_helper(int x) { return x * 3 + calls++; }
int unchanged(int x) { return local_helper(x) + 1; }
int __attribute__((noinline)) scale(int x) { return x * 5; }
int target(int x)
{
	printk("value %d\n", x);
	return exported_counter + scale(x);
}
"""
)
# target changes and reaches more: a new function, a new string, a non-exported global, a static
# function and a static variable the update does not carry, a constant table; scale changes too.
POST = (
    PRE.replace("x * 5", "x * 6")
    .replace(
        '\tprintk("value %d\\n", x);\n\treturn exported_counter + scale(x);',
        '\tprintk("value %d\\n", x);\n'
        '\tprintk("patched %d\\n", added(x));\n'
        "\treturn exported_counter + hidden_counter + local_helper(x) + table[x & 3] + calls"
        " + scale(x);",
    )
    .replace(
        "int target", "int __attribute__((noinline)) added(int x) { return x ^ 0x5a; }\nint target"
    )
)

EXPORTED = {"__fentry__", "printk", "exported_counter"}
# The sympos the test's symbol map would give: `calls` has same-named statics elsewhere.
SYMPOS = {"hidden_counter": 0, "local_helper": 0, "calls": 2, "report": 0}
PC_RELATIVE = {"R_X86_64_PC32", "R_X86_64_PLT32"}


def klp(name: str) -> str:
    return f".klp.sym.vmlinux.{name},{SYMPOS[name]}"


@dataclass
class Result:
    post: Path
    part: Path
    extracted: Extracted
    asked: list[str]


def _extract(tmp_path: Path, pre: str, post: str) -> Result:
    asked: list[str] = []

    def resolver(obj: ElfObject, sym: Symbol) -> ExternalRef:
        asked.append(sym.name)
        if sym.name in EXPORTED:
            return ExternalRef(sym.name, exported=True)
        return ExternalRef(klp_symbol_name("vmlinux", sym.name, SYMPOS[sym.name]), exported=False)

    post_path, part, extracted = extract_unit(tmp_path, pre, post, resolver)
    return Result(post_path, part, extracted, asked)


@dataclass(frozen=True)
class Pointee:
    """What a relocation reaches, independent of symbol indices and names: an undefined
    symbol by name, or the bytes of the defined function, object or string it lands in."""

    kind: str  # "undefined", or readelf's symbol type (FUNC, OBJECT), or "string"
    name: str  # for undefined symbols only
    offset: int  # from the start of the symbol or string
    content: bytes


def pointee(path: Path, reloc: ReadelfReloc) -> Pointee:
    symbols = readelf_symbols(path)
    sym = symbols[reloc.symbol]
    # A PC-relative field is 4 bytes before the end of its instruction in the code used here.
    bias = 4 if reloc.type_name in PC_RELATIVE else 0
    if sym.ndx == "UND":
        return Pointee("undefined", sym.name, reloc.addend + bias, b"")
    section = readelf_sections(path)[int(sym.ndx)]
    data = section_bytes(path, section.name)
    offset = sym.value + reloc.addend + bias
    if "S" in section.flags:
        start = data.rindex(b"\0", 0, offset) + 1 if offset else 0
        assert start == offset, "a reference into the middle of a string"
        return Pointee("string", "", 0, data[offset : data.index(b"\0", offset)])
    (named,) = [
        s
        for s in symbols
        if s.ndx == sym.ndx
        and s.type in ("FUNC", "OBJECT")
        and s.value <= offset < s.value + s.size
    ]
    return Pointee(named.type, named.name, offset - named.value, data[named.value :][: named.size])


def relocations(path: Path, section: str) -> list[tuple[int, str, Pointee]]:
    """Each relocation of section as (offset, type, what it reaches)."""
    return [
        (r.offset, r.type_name, pointee(path, r))
        for r in readelf_relocations(path)
        if r.section == f".rela{section}"
    ]


def anonymous(relocs: list[tuple[int, str, Pointee]]) -> list[tuple[int, str, Pointee]]:
    """Names of defined targets left out: the extracted object renames what it carries."""
    return [
        (o, t, p if p.kind == "undefined" else Pointee(p.kind, "", p.offset, p.content))
        for o, t, p in relocs
    ]


def symbols_by_name(path: Path) -> dict[str, ReadelfSymbol]:
    return {s.name: s for s in readelf_symbols(path) if s.name}


def test_extracted_object_holds_exactly_the_changed_and_new_code(tmp_path: Path) -> None:
    r = _extract(tmp_path, PRE, POST)
    post, part = symbols_by_name(r.post), symbols_by_name(r.part)
    defined = {n: (s.type, s.bind) for n, s in part.items() if s.ndx != "UND"}
    funcs = {n: bind for n, (type_, bind) in defined.items() if type_ == "FUNC"}
    # The changed functions under global replacement names, the new one as itself; neither the
    # unchanged functions nor their old names.
    replacements = {n for n in funcs if n.startswith("__ksplice_")}
    assert len(replacements) == 2
    assert funcs == {**dict.fromkeys(replacements, "GLOBAL"), "added": "LOCAL"}
    assert {p.new_symbol for p in r.extracted.patched} == replacements
    assert {p.old_name for p in r.extracted.patched} == {"target", "scale"}
    # Each replacement is the post function's code, byte for byte, and of its size.
    for p in r.extracted.patched:
        new = part[p.new_symbol]
        section = readelf_sections(r.part)[int(new.ndx)].name
        assert section_bytes(r.part, section) == section_bytes(r.post, f".text.{p.old_name}")
        assert new.size == post[p.old_name].size
    assert section_bytes(r.part, ".text.added") == section_bytes(r.post, ".text.added")
    # No other code: neither unchanged() nor local_helper(), whose running copy it calls.
    code = {s.name for s in readelf_sections(r.part) if "X" in s.flags}
    assert code == {".text.target", ".text.scale", ".text.added"}


def test_references_the_update_does_not_carry_are_undefined(tmp_path: Path) -> None:
    r = _extract(tmp_path, PRE, POST)
    undefined = {s.name: s.bind for s in readelf_symbols(r.part) if s.ndx == "UND" and s.name}
    # Exported: plain undefined symbols for the module loader. The rest: weak undefined symbols
    # already named for livepatch, with their sympos.
    assert undefined == {
        **dict.fromkeys(EXPORTED, "GLOBAL"),
        **{klp(n): "WEAK" for n in ("hidden_counter", "local_helper", "calls")},
    }
    assert sorted(
        s.name for s in r.extracted.obj.symbols if s.name.startswith(".klp.sym.")
    ) == sorted(klp(n) for n in ("hidden_counter", "local_helper", "calls"))
    # Only what the update does not carry is resolved: not the new function, not the table.
    assert set(r.asked) == EXPORTED | {"hidden_counter", "local_helper", "calls"}


def as_carried(p: Pointee) -> Pointee:
    """What a post reference becomes in the update: a symbol vmlinux does not export, or a
    static the update does not carry, is reached through its klp name; the rest is unchanged."""
    outside = p.name not in EXPORTED if p.kind == "undefined" else p.name in SYMPOS
    return Pointee("undefined", klp(p.name), p.offset, b"") if outside else p


def test_relocations_point_where_the_post_objects_did(tmp_path: Path) -> None:
    r = _extract(tmp_path, PRE, POST)
    for section in (".text.target", ".text.scale", ".text.added"):
        expected = [(o, t, as_carried(p)) for o, t, p in relocations(r.post, section)]
        assert anonymous(relocations(r.part, section)) == anonymous(expected), section
    # The situation under test: target reaches strings, the constant table, the new function
    # and the other replacement through its relocations.
    kinds = {(p.kind, p.content) for _, _, p in relocations(r.part, ".text.target")}
    assert {("string", b"value %d\n"), ("string", b"patched %d\n")} <= kinds
    assert ("OBJECT", section_bytes(r.post, ".rodata.table")) in kinds
    assert ("FUNC", section_bytes(r.post, ".text.added")) in kinds
    assert ("FUNC", section_bytes(r.post, ".text.scale")) in kinds


def test_extracted_object_is_accepted_by_readelf_and_ld(tmp_path: Path) -> None:
    r = _extract(tmp_path, PRE, POST)
    tool("readelf", "-aW", r.part)  # no warnings about offsets, indices or links
    linked = tmp_path / "linked.o"
    tool("ld", "-r", "-o", linked, r.part)
    names = {s.name for s in readelf_symbols(linked)}
    assert {p.new_symbol for p in r.extracted.patched} | {klp("calls")} <= names


COLD = (
    PRINTK
    + r"""
__attribute__((cold, noinline)) void report(int x) { printk("cold %d\n", x); }
int maybe(int x)
{
	if (__builtin_expect(x < 0, 0)) {
		report(x);
		printk("neg %d\n", x);
	}
	return x + 1;
}
"""
)


def test_cold_part_travels_with_its_parent(tmp_path: Path) -> None:
    r = _extract(tmp_path, COLD, COLD.replace("x + 1", "x + 2"))
    post = symbols_by_name(r.post)
    assert "maybe.cold" in post  # the situation under test
    part = symbols_by_name(r.part)
    assert [p.old_name for p in r.extracted.patched] == ["maybe"]
    # The .cold part is carried, as a local: livepatch redirects only the parent.
    assert (part["maybe.cold"].type, part["maybe.cold"].bind) == ("FUNC", "LOCAL")
    cold_section = readelf_sections(r.post)[int(post["maybe.cold"].ndx)].name
    carried = readelf_sections(r.part)[int(part["maybe.cold"].ndx)].name
    code = section_bytes(r.post, cold_section)
    assert (
        section_bytes(r.part, carried)
        == code[post["maybe.cold"].value :][: post["maybe.cold"].size]
    )
    assert "report" not in part or part["report"].ndx == "UND"


def test_new_data_is_carried_not_resolved(tmp_path: Path) -> None:
    """A variable the patch adds has no home in the running kernel: the update carries it."""
    pre = "int get(int x) { return x; }\n"
    post = "static int hits;\nstatic int seen = 5;\n"
    post += "int get(int x) { hits++; seen += x; return seen; }\n"
    r = _extract(tmp_path, pre, post)
    assert r.asked == ["__fentry__"]
    part = symbols_by_name(r.part)
    sections = readelf_sections(r.part)
    for name, kind, flags in (("hits", "NOBITS", "WA"), ("seen", "PROGBITS", "WA")):
        sym = part[name]
        assert (sym.type, sym.bind, sym.size) == ("OBJECT", "LOCAL", 4)
        section = sections[int(sym.ndx)]
        assert (section.type, section.flags) == (kind, flags), name
    # The initial value travels with it.
    seen = sections[int(part["seen"].ndx)].name
    assert section_bytes(r.part, seen) == (5).to_bytes(4, "little")


def test_change_only_in_the_cold_part_replaces_its_parent(tmp_path: Path) -> None:
    r = _extract(tmp_path, COLD, COLD.replace("neg %d", "negative %d"))
    assert [p.old_name for p in r.extracted.patched] == ["maybe"]
