"""Judging two preprocessed texts of one unit (compile.preprocessed), checked against gcc: each
case is compiled on both sides and the objects' code and symbols compared, so a verdict of
"same code" is only accepted where gcc agrees, and a "differs" case is one gcc tells apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from ksplice_pkg.compile.preprocessed import code_difference, normalised, piece_of, pieces

BASE = """\
# 1 "unit.c"
struct counter { int n; long total; };
struct unused_cfg { int a; };
enum mode { MODE_A, MODE_B, MODE_C };
typedef int (filter_fn)(int);
typedef struct { int x; } pair_t;
extern int remote(int a);
extern long helper_count(struct counter *c);
static inline __attribute__((__unused__)) int get_n(struct counter *c) { return c->n; }
static inline __attribute__((__unused__)) int twice(struct counter *c) { return get_n(c) * 2; }
static inline __attribute__((__unused__)) int spare(int v) { return v + 1; }
static inline __attribute__((__unused__)) int spare_user(int v) { return spare(v) * 3; }
static const char *tag = "{x;}";
int exported(struct counter *c)
{
\tint __UNIQUE_ID_x12 = twice(c);
\treturn __UNIQUE_ID_x12 + remote(MODE_B) + (tag[0] == '{');
}
"""

# (what changes, before -> after, whether the unit's code changes)
CASES = [
    ("an unused inline added", "static const char *tag", "static inline int added(int v) "
     "{ return v * 7; }\nstatic const char *tag", False),
    ("an unused inline changed", "return v + 1;", "return v + 2;", False),
    ("an unused inline calling a changed unused one", "return spare(v) * 3;",
     "return spare(v) * 4;", False),
    ("a used inline changed", "return c->n; }", "return c->n + 1; }", True),
    ("an inline used through another changed", "get_n(c) * 2", "get_n(c) * 5", True),
    ("a prototype nothing calls changed", "extern long helper_count(struct counter *c);",
     "extern long helper_count(struct counter *c, int flags);", False),
    ("a called prototype changed", "extern int remote(int a);",
     "extern int remote(int a, ...);", True),
    ("a struct nothing uses changed", "struct unused_cfg { int a; };",
     "struct unused_cfg { int a; long b; };", False),
    ("a used struct changed", "struct counter { int n; long total; };",
     "struct counter { long total; int n; };", True),
    ("an enum constant renumbered", "enum mode { MODE_A, MODE_B, MODE_C };",
     "enum mode { MODE_A, MODE_NEW, MODE_B, MODE_C };", True),
    ("a forward declaration added", "extern int remote", "struct later;\nextern int remote",
     False),
    ("a __COUNTER__ name renumbered", "__UNIQUE_ID_x12 = twice(c);\n\treturn __UNIQUE_ID_x12",
     "__UNIQUE_ID_x13 = twice(c);\n\treturn __UNIQUE_ID_x13", False),
    ("a used string changed", '"{x;}"', '"[x;}"', True),
    ("an unused typedef changed", "typedef int (filter_fn)(int);",
     "typedef long (filter_fn)(int);", False),
    ("top-level asm added", "static const char *tag",
     'asm(".pushsection .data.x,\\"aw\\"\\n.long 1\\n.popsection");\nstatic const char *tag',
     True),
]  # fmt: skip


def _code(path: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The object's allocated sections' bytes and its symbols: what a livepatch could see."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        sections = sorted(
            (s.name, s.data())
            for s in elf.iter_sections()
            if s["sh_flags"] & 0x2 and s["sh_type"] != "SHT_NOBITS"
        )
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = sorted(
            s.name
            for s in symtab.iter_symbols()
            if s["st_info"]["type"] not in ("STT_FILE", "STT_SECTION") and s.name
        )
    return sections, symbols


def _compile(tmp_path: Path, name: str, text: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    src = tmp_path / f"{name}.i"
    src.write_text(text)
    obj = tmp_path / f"{name}.o"
    subprocess.run(
        ["gcc", "-O2", "-ffunction-sections", "-fdata-sections", "-c", "-x", "cpp-output",
         "-o", obj, src],
        check=True,
    )  # fmt: skip
    return _code(obj)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize(("what", "old", "new", "changes"), CASES, ids=[c[0] for c in CASES])
def test_verdict_agrees_with_gcc(
    tmp_path: Path, what: str, old: str, new: str, changes: bool
) -> None:
    assert old in BASE, what
    post = BASE.replace(old, new, 1)
    why = code_difference(BASE, post)
    objects_differ = _compile(tmp_path, "pre", BASE) != _compile(tmp_path, "post", post)
    # The case means what it says: gcc itself tells the two apart exactly when it should.
    assert objects_differ == changes, what
    assert (why is not None) == changes, f"{what}: {why}"


def test_pieces_end_functions_at_their_brace_and_data_at_the_semicolon() -> None:
    text = normalised(BASE)
    cut = [" ".join(text[a:b].split()) for a, b in pieces(text)]
    assert "struct counter { int n; long total; };" in cut
    assert 'static const char *tag = "{x;}";' in cut
    assert any(c.startswith("int exported(struct counter *c) {") and c.endswith("}") for c in cut)
    # Nothing is lost between pieces but blank space.
    assert "".join(cut).replace(" ", "") == text.replace(" ", "").replace("\n", "").replace(
        "\t", ""
    )


@pytest.mark.parametrize(
    ("text", "names", "droppable"),
    [
        ("static inline int f(int a) { return a; }", {"f"}, True),
        ("int g(int a) { return a; }", {"g"}, False),
        ("static __attribute__((__used__)) int h(void) { return 0; }", {"h"}, False),
        ("int dev_each(void *d, int (*fn)(void *));", {"dev_each"}, True),
        ("void (*hook)(int);", set(), False),
        ("extern void (*hook)(int);", {"hook"}, True),
        ("typedef int (get_block_t)(int);", {"get_block_t"}, True),
        ("typedef int handler_t(int);", {"handler_t"}, True),
        ("typedef struct tag { int a; } tag_t;", {"tag_t", "struct tag"}, True),
        ("enum { X_A, X_B = 3, };", {"X_A", "X_B"}, True),
        ("int counter;", set(), False),
        ('asm(".long 1");', set(), False),
    ],
)
def test_what_a_piece_declares(text: str, names: set[str], droppable: bool) -> None:
    piece = piece_of(text)
    assert (set(piece.names), piece.droppable) == (names, droppable)


def test_counter_numbers_are_no_code_but_other_numbers_are() -> None:
    pre = 'asm(".long 1\\n__initcall__kmod_keys__331_1040_init_keys7:");\nint x__UNIQUE_ID_y12;'
    pre += "\nvoid *__UNIQUE_ID___addressable_quirk_7_7_fix373 = &f;"
    post = pre.replace("__331_", "__332_").replace("_y12", "_y13").replace("fix373", "fix374")
    assert normalised(pre) == normalised(post)
    # The line number in an initcall's name, and any other number, stay.
    assert normalised(pre) != normalised(pre.replace("_1040_", "_1041_"))
    assert normalised(pre) != normalised(pre.replace("quirk_7_7", "quirk_7_8"))
    assert code_difference("int a = 1;", "int a = 2;") is not None
