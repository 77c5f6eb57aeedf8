"""Header changes without a full build (build.headers): the definitions a header change touches,
who includes and who uses them, and which preprocessed differences matter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksplice_pkg import fsutil
from ksplice_pkg.compile import headers
from ksplice_pkg.compile.headers import (
    IncludeIndex,
    Mentions,
    changed_names,
    definitions,
    preprocessed_differs,
    units_mentioning,
)
from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.errors import RefusedError

HEADER = """\
#ifndef _FOO_H
#define _FOO_H
#include <linux/types.h>

#define FOO_MAX(a, b) \\
	((a) > (b) ? (a) : (b))

struct foo {
	int a;
	long b;
};

static inline int foo_get(struct foo *f)
{
	return f->a;
}

static inline int foo_twice(struct foo *f) { return 2 * foo_get(f); }

extern int foo_register(struct foo *f);
#endif
"""


def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def test_definitions_with_their_lines() -> None:
    found = {(d.kind, d.name): (d.first, d.last) for d in definitions(HEADER)}
    assert found[("macro", "FOO_MAX")] == (_line(HEADER, "define FOO_MAX"), _line(HEADER, "? (a)"))
    assert found[("struct", "foo")] == (_line(HEADER, "struct foo {"), _line(HEADER, "};"))
    get = found[("function", "foo_get")]
    assert get[0] <= _line(HEADER, "int foo_get") and get[1] == _line(HEADER, "return f->a;") + 1
    twice = _line(HEADER, "foo_twice")
    assert found[("function", "foo_twice")] == (twice, twice)


def _change(old: str, new: str) -> str:
    return HEADER.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("return f->a;", "return f->a + 1;", {"foo_get"}),
        ("((a) > (b) ?", "((a) >= (b) ?", {"FOO_MAX"}),
        ("extern int foo_register(struct foo *f);", "extern long foo_register(struct foo *f);",
         {"foo_register"}),
    ],
    ids=["inline", "macro", "declaration"],
)  # fmt: skip
def test_changed_definitions_by_name(old: str, new: str, names: set[str]) -> None:
    assert changed_names("include/foo.h", HEADER, _change(old, new)) == names


GUARDED = """\
#ifndef _BAR_H
#define _BAR_H
#ifdef CONFIG_BAR_FAST
#define bar_delay() 0
extern int bar_poll(int n);
#else
static inline int bar_poll(int n) { return n; }
#endif
extern int bar_register(void);
#endif
"""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("#ifdef CONFIG_BAR_FAST", "#if defined(CONFIG_BAR_FAST) && !defined(CONFIG_BAR_SLOW)"),
        ("#else", "#elif defined(CONFIG_BAR_NONE)"),
    ],
    ids=["if", "else"],
)
def test_a_changed_condition_changes_what_its_groups_declare(old: str, new: str) -> None:
    # The definitions under a changed condition change with it; the option it tests is no
    # name a unit uses through this header (a unit testing CONFIG_BAR_FAST itself is not
    # affected). An #else turned #elif changes the else group only: bar_delay is defined
    # exactly when it was.
    names = changed_names("include/bar.h", GUARDED, GUARDED.replace(old, new))
    assert names == ({"bar_delay", "bar_poll"} if old.startswith("#if") else {"bar_poll"})


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("\tlong b;\n", "\tlong b;\t/* in jiffies; see foo_get() */\n", set()),
        ("extern int", "/*\n * the order is then reversed;\n */\nextern int", set()),
        ("extern int foo_register(struct foo *f);",
         "extern int foo_register(struct foo *f,\n\t\t\tint flags);", {"foo_register"}),
        ("#endif\n", "#ifndef foo_hint\n#define foo_hint(f) 0\n#endif\n\n#endif\n",
         {"foo_hint"}),
        ("extern int", '#line 20 "include/foo.h"\nextern int', set()),
        ("extern int", "struct foo_ops;\nextern int", set()),
    ],
    ids=["comment-in-struct", "comment-lines", "prototype-lines", "before-guard-end", "line",
         "forward-declaration"],
)  # fmt: skip
def test_only_what_really_changes_is_named(old: str, new: str, names: set[str]) -> None:
    # A comment is no change, even one whose words look like a declaration; a new group
    # added before the include guard's #endif (which diff pairs with the new group's) names
    # what it defines, not all the file does; the after tree's #line directives are nothing.
    assert changed_names("include/foo.h", HEADER, _change(old, new)) == names


def test_a_declaration_that_moves_changes_only_when_its_conditions_do() -> None:
    register = "extern int foo_register(struct foo *f);\n"
    moved = HEADER.replace(register, "").replace(
        "static inline int foo_get", register + "\nstatic inline int foo_get"
    )
    assert changed_names("include/foo.h", HEADER, moved) == set()
    guarded = HEADER.replace(register, "#ifdef CONFIG_FOO\n" + register + "#endif\n")
    assert changed_names("include/foo.h", HEADER, guarded) == {"foo_register"}


def test_changed_struct_layout_is_refused_naming_it() -> None:
    with pytest.raises(RefusedError) as e:
        changed_names("include/foo.h", HEADER, _change("long b;", "long b, c;"))
    assert "struct foo" in e.value.message and "include/foo.h" in e.value.message


def _tree(tmp_path: Path, files: dict[str, str]) -> PreparedTree:
    source, objdir = tmp_path / "src", tmp_path / "obj"
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    objdir.mkdir()
    return PreparedTree(source=source, objdir=objdir, release="6.1.0-1-amd64")


def test_include_closure_follows_headers_and_quoted_includes(tmp_path: Path) -> None:
    tree = _tree(
        tmp_path,
        {
            "include/linux/foo.h": "int x;\n",
            "include/linux/bar.h": "#include <linux/foo.h>\n",
            "arch/x86/include/asm/baz.h": "#include <linux/bar.h>\n",
            "fs/a.c": "#include <asm/baz.h>\n",
            "fs/local.h": "struct l;\n",
            "fs/b.c": '#include "local.h"\n',
            "mm/local.h": "#include <linux/foo.h>\n",
            "mm/c.c": '  #  include "local.h"\n',
            "kernel/d.c": "#include <linux/other.h>\n",
        },
    )
    index = IncludeIndex.of(tree)
    assert index.closure(["include/linux/foo.h"]) == {
        "include/linux/bar.h",
        "arch/x86/include/asm/baz.h",
        "fs/a.c",
        "mm/local.h",
        "mm/c.c",
    }
    # fs/b.c includes its own local.h, not mm's.
    assert "fs/b.c" not in index.closure(["mm/local.h"])
    # Cached: a second index reads the same answer back.
    assert IncludeIndex.of(tree).closure(["fs/local.h"]) == {"fs/b.c"}


def test_users_are_found_through_other_headers_definitions(tmp_path: Path) -> None:
    files = {
        "include/foo.h": HEADER,
        "include/wrap.h": (
            "#define WRAP(f) foo_twice(f)\nstatic inline int other(void) { return 0; }\n"
        ),
        "a.c": "int a(struct foo *f) { return foo_get(f); }\n",
        "b.c": "int b(struct foo *f) { return WRAP(f); }\n",
        "c.c": "int c(void) { return other(); }\n",
    }
    tree = _tree(tmp_path, files)
    units = {"a.o": "a.c", "b.o": "b.c", "c.o": "c.c"}
    found = Mentions(tree.source, {"include/foo.h", "include/wrap.h"}).units(units, {"foo_get"})
    # b.c calls WRAP, which expands to foo_twice, which calls foo_get.
    assert found == {"a.o", "b.o"}


def test_a_later_round_asks_only_the_users_of_what_changed_since_it_was_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put = "static inline void foo_put(struct foo *f) { f->a = 0; }\n"
    files = {
        "include/foo.h": HEADER.replace("#endif", put + "#endif"),
        "a.c": '#include "include/foo.h"\nint a(struct foo *f) { return foo_get(f); }\n',
        "b.c": '#include "include/foo.h"\nvoid b(struct foo *f) { foo_put(f); }\n',
    }
    tree = _tree(tmp_path, files)
    monkeypatch.setattr(headers, "kernel_units", lambda tree: {"a.o": "a.c", "b.o": "b.c"})
    post = tmp_path / "post"
    (post / "include").mkdir(parents=True)
    both = files["include/foo.h"].replace("return f->a;", "return f->a + 1;")
    both = both.replace("f->a = 0;", "f->a = 1;")
    (post / "include/foo.h").write_text(both)
    assert units_mentioning(tree, post, ["include/foo.h"]) == {"a.o", "b.o"}
    # foo_put's hunk taken out: only its user can have changed since both were judged.
    (post / "include/foo.h").write_text(both.replace("f->a = 1;", "f->a = 0;"))
    since = {"include/foo.h": both}
    assert units_mentioning(tree, post, ["include/foo.h"], since=since) == {"b.o"}
    assert units_mentioning(tree, post, [], since=since) == set()


# A stand-in for kbuild's `make -C SOURCE O=OBJDIR dir/unit.i`: the .i is remade only when
# older than its source, which is what lets an emptied .i stand for a judged one.
FAKE_KBUILD = """\
fs/a.i: $(O)/fs/a.i
\t@:
$(O)/fs/a.i: fs/a.c
\tmkdir -p $(dir $@) && cpp -P $< -o $@
"""
UNIT = "int used(int x);\nint f(int x) {{ return used(x) + {n}; }}\n{extra}"


def _i_trees(
    tmp_path: Path, post: str, before: str = UNIT.format(n=1, extra="")
) -> tuple[PreparedTree, Path, Path]:
    pre = _tree(tmp_path, {"Makefile": FAKE_KBUILD, "fs/a.c": before})
    post_src, post_obj = tmp_path / "post-src", tmp_path / "post-obj"
    (post_src / "fs").mkdir(parents=True)
    (post_src / "Makefile").write_text(FAKE_KBUILD)
    (post_src / "fs" / "a.c").write_text(post)
    post_obj.mkdir()
    return pre, post_src, post_obj


def test_judged_i_files_are_emptied_and_their_verdict_reused_until_a_source_changes(
    tmp_path: Path,
) -> None:
    unused = "static inline int spare(void) { return 2; }\n"
    pre, post_src, post_obj = _i_trees(tmp_path, UNIT.format(n=1, extra=unused))
    assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == []
    made = [pre.objdir / "fs/a.i", post_obj / "fs/a.i"]
    assert [p.stat().st_size for p in made] == [0, 0]
    times = [p.stat().st_mtime_ns for p in made]
    # Asked again: make finds both up to date, the kept verdict answers.
    assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == []
    assert [p.stat().st_mtime_ns for p in made] == times
    # The after side changes: its .i is remade; the emptied old one is read from its kept
    # copy (test below).
    post = post_src / "fs" / "a.c"
    for n, extra, differs in ((1, unused.replace("2", "3"), []), (2, unused, ["fs/a.o"])):
        post.write_text(UNIT.format(n=n, extra=extra))
        later = post_obj.joinpath("fs/a.i").stat().st_mtime_ns + 10**9
        os.utime(post, ns=(later, later))
        assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == differs


def test_an_old_side_judged_once_is_read_from_its_kept_copy_not_preprocessed_again(
    tmp_path: Path,
) -> None:
    pre, post_src, post_obj = _i_trees(tmp_path, UNIT.format(n=1, extra=""))
    assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == []
    old_i = pre.objdir / "fs/a.i"
    made = old_i.stat().st_mtime_ns
    post = post_src / "fs" / "a.c"
    for n, differs in ((2, ["fs/a.o"]), (1, [])):
        post.write_text(UNIT.format(n=n, extra=""))
        later = post_obj.joinpath("fs/a.i").stat().st_mtime_ns + 10**9
        os.utime(post, ns=(later, later))
        assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == differs
        assert old_i.stat().st_mtime_ns == made and old_i.stat().st_size == 0
    # A copy that is not of the .i as it is now (remade since) is not used: make runs again.
    old_i.unlink()
    post.write_text(UNIT.format(n=3, extra=""))
    later = post_obj.joinpath("fs/a.i").stat().st_mtime_ns + 10**9
    os.utime(post, ns=(later, later))
    assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == ["fs/a.o"]
    assert old_i.stat().st_mtime_ns != made


def test_verdicts_are_kept_as_they_come_so_an_interrupted_judging_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre, post_src, post_obj = _i_trees(tmp_path, UNIT.format(n=1, extra=""))
    writes: list[str] = []
    real_write = fsutil.atomic_write

    def interrupted_at_the_end(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
        writes.append(str(path))
        if len(writes) > 1:  # the final write: the run is stopped before it
            raise KeyboardInterrupt
        return real_write(path, data, mode)

    monkeypatch.setattr(headers, "_SAVE_EVERY", 1)
    monkeypatch.setattr(headers, "atomic_write", interrupted_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)
    made = [pre.objdir / "fs/a.i", post_obj / "fs/a.i"]
    assert [p.stat().st_size for p in made] == [0, 0]  # judged, then emptied
    times = [p.stat().st_mtime_ns for p in made]
    monkeypatch.setattr(headers, "atomic_write", real_write)
    # The next run finds the verdict: nothing is preprocessed again.
    assert list(preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1)) == []
    assert [p.stat().st_mtime_ns for p in made] == times


# A module's init function, its init_module alias and what keeps that alias.
INIT = """static int __attribute__((__section__(".init.text"))) setup(void) {{ return used({n}); }}
int init_module(void) __attribute__((alias("setup")));
static void * __attribute__((__section__(".init.data"))) __attribute__((__used__)) k = &init_module;
"""


def test_a_change_to_init_code_alone_is_judged_and_kept_as_such(tmp_path: Path) -> None:
    before = UNIT.format(n=1, extra=INIT.format(n=1))
    pre, post_src, post_obj = _i_trees(tmp_path, UNIT.format(n=1, extra=INIT.format(n=2)), before)
    for _ in range(2):  # judged, then answered from the kept verdict
        (why,) = preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1).values()
        assert why.init_only and "setup" in why.what, why
    post_src.joinpath("fs/a.c").write_text(UNIT.format(n=2, extra=INIT.format(n=2)))
    later = post_obj.joinpath("fs/a.i").stat().st_mtime_ns + 10**9
    os.utime(post_src / "fs/a.c", ns=(later, later))
    (why,) = preprocessed_differs(pre, post_src, post_obj, ["fs/a.o"], 1).values()
    assert not why.init_only, why


def test_a_bare_quoted_include_reaches_a_header_of_an_ancestor_directory() -> None:
    # kvm's Makefile adds -I arch/x86/kvm: arch/x86/kvm/mmu/mmu.c's "x86.h" is arch/x86/kvm/x86.h.
    index = IncludeIndex(
        {"x86.h": ["arch/x86/kvm/mmu/mmu.c", "drivers/gpu/x.c"], "./arch/x86/kvm/x86.h": []}
    )
    assert index.includers("arch/x86/kvm/x86.h") == {"arch/x86/kvm/mmu/mmu.c"}
