"""Judging two preprocessed texts of one unit (compile.preprocessed), checked against gcc: each
case is compiled on both sides and the objects' code and symbols compared, so a verdict of
"same code" is only accepted where gcc agrees, and a "differs" case is one gcc tells apart."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from ksplice_pkg.compile import preprocessed
from ksplice_pkg.compile.preprocessed import (
    code_difference,
    is_init,
    normalised,
    piece_of,
    pieces,
)

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
    assert why is None or not why.init_only, f"{what}: {why}"


# A module unit as the kernel's headers preprocess it: __init and __exit functions, module_init's
# alias and its addressable entry, and a built-in unit's initcall entry (a top-level asm).
INIT_BASE = """\
# 1 "thing.c"
extern int register_thing(int flags);
extern void unregister_thing(int flags);
static inline __attribute__((__unused__)) int thing_flags(void) { return 1; }
static inline __attribute__((__unused__)) int shared_flags(void) { return 4; }
static inline __attribute__((__unused__)) int exit_flags(void) { return 8; }
int runtime_op(int v) { return v + shared_flags(); }
static int __attribute__((__section__(".init.text"))) __attribute__((__cold__)) thing_init(void)
{ return register_thing(thing_flags() | shared_flags()); }
static void __attribute__((__section__(".exit.text"))) __attribute__((__cold__)) thing_exit(void)
{ unregister_thing(exit_flags()); }
static inline __attribute__((__unused__)) void *__inittest(void) { return thing_init; }
int init_module(void) __attribute__((__copy__(thing_init))) __attribute__((alias("thing_init")));
static void * __attribute__((__section__(".init.data"))) __attribute__((__used__)) \
__UNIQUE_ID___addressable_init_module12 = (void *)&init_module;
void cleanup_module(void) __attribute__((__copy__(thing_exit))) \
__attribute__((alias("thing_exit")));
static void * __attribute__((__section__(".exit.data"))) __attribute__((__used__)) \
__UNIQUE_ID___addressable_cleanup_module13 = (void *)&cleanup_module;
asm(".section	\\"" ".initcall6.init" "\\", \\"a\\"		\\n" \
"__initcall__kmod_thing__14_20_thing_init6" ":			\\n" ".long	" "thing_init" " - .	\\n" \
".previous					\\n");
"""

# (what changes, before -> after, what the verdict is: None, "init" or "code")
INIT_CASES = [
    ("an inline only init code uses changed", "return 1;", "return 3;", "init"),
    ("an inline only exit code uses changed", "return 8;", "return 9;", "init"),
    ("an inline init and runtime code use changed", "return 4;", "return 5;", "code"),
    ("the runtime function changed", "v + shared_flags()", "v - shared_flags()", "code"),
]  # fmt: skip


def _init_section(name: str) -> bool:
    return name.lstrip(".").removeprefix("rela.").startswith(("init", "exit"))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize(("what", "old", "new", "verdict"), INIT_CASES,
                         ids=[c[0] for c in INIT_CASES])  # fmt: skip
def test_init_only_verdict_agrees_with_gcc(
    tmp_path: Path, what: str, old: str, new: str, verdict: str
) -> None:
    assert INIT_BASE.count(old) == 1, what
    post = INIT_BASE.replace(old, new)
    (pre_sections, pre_symbols), (post_sections, post_symbols) = (
        _compile(tmp_path, "pre", INIT_BASE), _compile(tmp_path, "post", post)
    )  # fmt: skip
    runtime = [
        sorted((n, b) for n, b in sections if not _init_section(n))
        for sections in (pre_sections, post_sections)
    ]
    # The case means what it says: gcc's runtime sections differ exactly for "code", and the
    # init ones for "init".
    assert (runtime[0] != runtime[1]) == (verdict == "code"), what
    assert (pre_sections != post_sections) and pre_symbols == post_symbols, what
    why = code_difference(INIT_BASE, post)
    assert why is not None, what
    assert ("init" if why.init_only else "code") == verdict, f"{what}: {why}"


@pytest.mark.parametrize(
    ("text", "init"),
    [
        ('static int __attribute__((__section__(".init.text"))) f(void) { return 0; }', True),
        ('void __attribute__((__section__(".exit.text"))) f(void) { }', True),
        ('static int __attribute__((__section__(".meminit.text"))) f(void) { return 0; }', False),
        ('int f(void) { return strstarts(name, ".init."); }', False),
        ('static char *s __attribute__((__section__(".init.data"))) = "x";', True),
        ('static const char *s = "__section__(\\".init.data\\")";', False),
        ('asm(".section \\".initcall6.init\\", \\"a\\"\\n.long f - .\\n.previous\\n");', True),
        ('asm(".pushsection .text\\nnop\\n.popsection");', False),
        ('asm(".section .init.text\\n.text\\nnop");', False),
    ],
)
def test_what_is_init(text: str, init: bool) -> None:
    assert is_init(text) == init


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


def test_a_name_is_found_only_as_a_whole_identifier_in_text_order() -> None:
    text = "foo_bar(foo); xfoo = foo1 + foo;\nstruct foo *p = &foo"
    found = preprocessed._whole_words(text, {"foo", "foo_bar"})
    # The same as a regex alternation with word boundaries (what it replaced, for speed).
    assert found == [(m.start(), m[0]) for m in re.finditer(r"\b(?:foo_bar|foo)\b", text)]
    assert [w for _, w in found] == ["foo_bar", "foo", "foo", "foo", "foo"]
