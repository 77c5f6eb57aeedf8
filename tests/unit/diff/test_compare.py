"""The differ on pre/post objects gcc builds here from C, and the source helpers it relies on
(source.patch_paths, source.stabilise_line_numbers).

Each pair is compiled like kernel code (see KERNEL_CFLAGS) from a file of the same name in its
own directory, `pre/t.c` and `post/t.c`, as kbuild compiles the pristine and the patched tree.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ksplice_pkg.diff.callers import patch_through_callers
from ksplice_pkg.diff.compare import UnitDiff, base_name
from ksplice_pkg.diff.unit import diff_objects
from ksplice_pkg.elf.model import STT_SECTION, ElfObject
from ksplice_pkg.elf.query import functions, has_ftrace_entry, relocations_in
from ksplice_pkg.elf.reader import read_object
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.source.lines import stabilise_line_numbers
from ksplice_pkg.source.patch import patch_paths
from tests.unit.tools import KERNEL_CFLAGS

# -O2 clones a function for constant arguments only when every caller agrees; with -fipa-cp-clone
# (on at -O3) it specialises per calling context, which is how several numbered clones appear.
CLONE_FLAGS = ("-fipa-cp-clone",)

PRINTK = "extern int printk(const char *fmt, ...);\n"


def write_side(tmp_path: Path, side: str, source: str) -> Path:
    path = tmp_path / side / "t.c"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def compile_side(tmp_path: Path, side: str, extra: tuple[str, ...] = ()) -> ElfObject:
    """Compile tmp_path/side/t.c as `t.c` (so __FILE__ is the same on both sides)."""
    subprocess.run(
        ["gcc", "-c", *KERNEL_CFLAGS, *extra, "-o", "t.o", "t.c"],
        cwd=tmp_path / side,
        check=True,
        capture_output=True,
    )
    return read_object(tmp_path / side / "t.o")


def build(tmp_path: Path, side: str, source: str, extra: tuple[str, ...] = ()) -> ElfObject:
    write_side(tmp_path, side, source)
    return compile_side(tmp_path, side, extra)


def diff(tmp_path: Path, pre: str, post: str, extra: tuple[str, ...] = ()) -> UnitDiff:
    return diff_objects(
        "t.o", build(tmp_path, "pre", pre, extra), build(tmp_path, "post", post, extra)
    )


def assert_empty(d: UnitDiff) -> None:
    assert (d.changed, d.new_functions, d.new_data) == ({}, [], []), d


def referenced_objects(obj: ElfObject, function: str) -> set[str]:
    """The names of the data objects a function's relocations point at."""
    fn = functions(obj)[function]
    names = set()
    for r in relocations_in(obj, fn.section, fn.offset, fn.size):
        sym = obj.symbols[r.symbol]
        if sym.type == STT_SECTION:
            names |= {s.name for s in obj.symbols_in(sym.shndx)}
        else:
            names.add(sym.name)
    return names


# ---------------------------------------------------------------------------------------------
# What is and is not a change.

BASE = (
    PRINTK
    + r"""
extern int limit;
static int calls;
int scale(int x) { return x * 3 + limit; }
int offset(int x) { calls++; return x + 17; }
int greet(int x) { return printk("hello %d\n", x); }
int farewell(int x) { return printk("goodbye %d\n", x); }
"""
)


def test_unchanged_source_gives_an_empty_diff(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE)
    assert_empty(d)
    assert d.empty


def test_comment_only_change_is_no_change(tmp_path: Path) -> None:
    post = BASE.replace("int scale(int x)", "/* scales x */ int scale(int x)")
    assert_empty(diff(tmp_path, BASE, post))


def test_reordering_functions_and_their_strings_is_no_change(tmp_path: Path) -> None:
    """Moving code around renumbers sections and symbols, not what the code refers to."""
    lines = BASE.splitlines(keepends=True)
    greet = next(i for i, line in enumerate(lines) if line.startswith("int greet"))
    lines[greet], lines[greet + 1] = lines[greet + 1], lines[greet]
    assert_empty(diff(tmp_path, BASE, "".join(lines)))


def test_changed_constant_changes_only_that_function(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE.replace("x + 17", "x + 18"))
    assert set(d.changed) == {"offset"}
    assert d.pre_names == {"offset": "offset"}
    assert d.new_functions == []


def test_changed_call_target_with_identical_bytes_is_a_change(tmp_path: Path) -> None:
    """Only the relocation tells the two apart: call printk vs call other."""
    pre = (
        PRINTK
        + "extern int other(const char *fmt, ...);\n"
        + 'int f(void) { return printk("x"); }\n'
    )
    post = pre.replace('return printk("x")', 'return other("x")')
    d = diff(tmp_path, pre, post)
    assert set(d.changed) == {"f"}
    assert "relocation differs" in d.changed["f"]
    assert "printk" in d.changed["f"] and "other" in d.changed["f"]


def test_changed_inlined_static_helper_changes_its_callers(tmp_path: Path) -> None:
    pre = r"""
static inline int helper(int x) { return x * 5; }
int first(int x) { return helper(x) + 1; }
int second(int x) { return helper(x) - 1; }
int bystander(int x) { return x * 5; }
"""
    post = pre.replace("return x * 5; }\nint first", "return x * 6; }\nint first")
    assert post != pre
    d = diff(tmp_path, pre, post)
    assert set(d.changed) == {"first", "second"}
    assert "helper" not in functions(read_object(tmp_path / "post" / "t.o"))  # really inlined


def test_new_function_is_listed_as_new(tmp_path: Path) -> None:
    post = BASE + "int added(int x) { return x ^ 0x55; }\n"
    d = diff(tmp_path, BASE, post)
    assert d.new_functions == ["added"]
    assert d.changed == {}
    assert not d.empty


def test_new_variable_is_new_data(tmp_path: Path) -> None:
    post = BASE + "int added_limit = 3;\nint scaled(int x) { return x * added_limit; }\n"
    d = diff(tmp_path, BASE, post)
    assert d.new_data == ["added_limit"]
    assert d.new_functions == ["scaled"]
    assert d.changed == {}


def test_changed_string_literal_is_a_change(tmp_path: Path) -> None:
    d = diff(tmp_path, BASE, BASE.replace("hello %d", "hallo %d"))
    assert set(d.changed) == {"greet"}
    # Same bytes, same offset into a string section: only the string the relocation reaches
    # tells the versions apart.
    assert "relocation differs" in d.changed["greet"]
    assert "hello" in d.changed["greet"] and "hallo" in d.changed["greet"]


# ---------------------------------------------------------------------------------------------
# Line numbers: __LINE__ feeds WARN, BUG, might_sleep and printk sites.

LINE_USER = (
    PRINTK
    + r"""
int first(int x)
{
	return x + 1;
}

int check(int x)
{
	if (x < 0)
		printk("bad value at %s:%d\n", __FILE__, __LINE__);
	return x;
}
"""
)


def test_line_shift_alone_changes_code_and_line_directives_undo_it(tmp_path: Path) -> None:
    """Blank lines above a function that uses __LINE__ change its object code: the differ on its
    own cannot tell this from a real change. The pipeline keeps line numbers stable instead:
    create runs stabilise_line_numbers on each patched file, which adds #line directives."""
    post_source = LINE_USER.replace("int check", "\n\n\nint check")
    pre = build(tmp_path, "pre", LINE_USER)
    post = build(tmp_path, "post", post_source)
    shifted = diff_objects("t.o", pre, post)
    assert set(shifted.changed) == {"check"}

    stabilise_line_numbers(tmp_path / "pre" / "t.c", tmp_path / "post" / "t.c", "t.c")
    assert '#line 8 "t.c"\n' in (tmp_path / "post" / "t.c").read_text()
    assert_empty(diff_objects("t.o", pre, compile_side(tmp_path, "post")))


def test_line_directives_leave_only_the_real_change(tmp_path: Path) -> None:
    post_source = LINE_USER.replace("\treturn x + 1;\n", "\tx *= 2;\n\tx -= 3;\n\treturn x + 1;\n")
    pre = build(tmp_path, "pre", LINE_USER)
    assert set(diff_objects("t.o", pre, build(tmp_path, "post", post_source)).changed) == {
        "first",
        "check",
    }
    stabilise_line_numbers(tmp_path / "pre" / "t.c", tmp_path / "post" / "t.c", "t.c")
    assert set(diff_objects("t.o", pre, compile_side(tmp_path, "post")).changed) == {"first"}


def test_line_shift_inside_a_disabled_ifdef_block(tmp_path: Path) -> None:
    pre_source = (
        PRINTK
        + r"""
#ifdef CONFIG_NOT_SET
int debug_dump(int x)
{
	return printk("dump %d\n", x);
}
#endif
int check(int x)
{
	if (x < 0)
		printk("bad value at line %d\n", __LINE__);
	return x;
}
"""
    )
    post_source = pre_source.replace('\treturn printk("dump', '\tx += 1;\n\treturn printk("dump')
    pre = build(tmp_path, "pre", pre_source)
    write_side(tmp_path, "post", post_source)
    stabilise_line_numbers(tmp_path / "pre" / "t.c", tmp_path / "post" / "t.c", "t.c")
    # The patch only touches code this configuration does not build: nothing changed.
    assert_empty(diff_objects("t.o", pre, compile_side(tmp_path, "post")))


# ---------------------------------------------------------------------------------------------
# GCC's numbering: static locals and clones.

STATIC_LOCALS = """
int f1(void) { static int count; return ++count; }
int f2(void) { static int count; return ++count; }
"""
# GCC 12 numbers same-named static locals from the end of the file: a new one after the others
# renumbers them all (f2's count.0 becomes count.1, f1's count.1 becomes count.2).
NEW_STATIC_USER = "int f3(void) { static int count; return ++count; }\n"


def _static_of(obj: ElfObject, function: str) -> str:
    (name,) = {n for n in referenced_objects(obj, function) if base_name(n) == "count"}
    return name


def test_renumbered_static_locals_are_not_a_change(tmp_path: Path) -> None:
    d = diff(tmp_path, STATIC_LOCALS, STATIC_LOCALS + NEW_STATIC_USER)
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    # The test exercises renumbering: f1 and f2 reach differently named statics than before.
    assert _static_of(pre, "f1") != _static_of(post, "f1")
    assert _static_of(pre, "f2") != _static_of(post, "f2")
    assert d.changed == {}
    assert d.new_functions == ["f3"]
    # Each post static is known for the pre static it is, through the function using it.
    for fn in ("f1", "f2"):
        assert d.static_map[_static_of(post, fn)] == _static_of(pre, fn)


def test_static_local_of_a_new_function_is_new_data(tmp_path: Path) -> None:
    d = diff(tmp_path, STATIC_LOCALS, STATIC_LOCALS + NEW_STATIC_USER)
    post = read_object(tmp_path / "post" / "t.o")
    new_static = _static_of(post, "f3")
    assert new_static not in d.static_map
    assert d.new_data == [new_static]


def test_renumbered_initialised_static_locals_are_not_a_change(tmp_path: Path) -> None:
    pre = """
int f1(void) { static int count = 5; return ++count; }
int f2(void) { static int count = 7; return ++count; }
"""
    post = pre + "int f3(void) { static int count = 9; return ++count; }\n"
    d = diff(tmp_path, pre, post)
    assert d.changed == {}
    assert d.new_functions == ["f3"]


CLONES = (
    PRINTK
    + r"""
static int __attribute__((noinline)) bar(int arg) { return arg * arg + 7 * arg; }
int f1(void) { printk("%d\n", bar(3)); return bar(3); }
#ifdef POST
int f0(void) { printk("%d\n", bar(2)); return bar(2) + 1; }
#endif
int f2(int x) { return bar(x); }
"""
)


def _code_of(obj: ElfObject, name: str) -> bytes:
    fn = functions(obj)[name]
    return obj.sections[fn.section].data[fn.offset : fn.offset + fn.size]


def _clone_pair(tmp_path: Path) -> tuple[ElfObject, ElfObject]:
    pre = build(tmp_path, "pre", CLONES, CLONE_FLAGS)
    post = build(tmp_path, "post", CLONES.replace("#ifdef POST", "#if 1"), CLONE_FLAGS)
    # The situation under test: bar(3)'s clone is bar.constprop.0 before and bar.constprop.1
    # after, because the new bar(2) clone took number 0.
    assert {n for n in functions(pre) if n.startswith("bar.")} == {"bar.constprop.0"}
    assert {n for n in functions(post) if n.startswith("bar.")} == {
        "bar.constprop.0",
        "bar.constprop.1",
    }
    assert _code_of(post, "bar.constprop.1") == _code_of(pre, "bar.constprop.0")
    assert _code_of(post, "bar.constprop.0") != _code_of(pre, "bar.constprop.0")
    return pre, post


def test_clones_with_other_numbers_are_matched_by_base_name(tmp_path: Path) -> None:
    pre, post = _clone_pair(tmp_path)
    d = diff_objects("t.o", pre, post)
    assert "bar.constprop.1" not in d.new_functions
    assert "bar.constprop.1" not in d.changed
    assert "f0" in d.new_functions
    assert "f1" not in d.changed and "f2" not in d.changed


def test_a_new_clone_does_not_replace_an_old_one_of_the_same_name(tmp_path: Path) -> None:
    pre, post = _clone_pair(tmp_path)
    d = diff_objects("t.o", pre, post)
    assert "bar.constprop.0" not in d.changed
    assert "bar.constprop.0" in d.new_functions


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("count.3", "count"),
        ("count", "count"),
        ("foo.isra.0", "foo.isra"),
        ("foo.constprop.12", "foo.constprop"),
        ("foo.part.0", "foo.part"),
        ("foo.cold", "foo.cold"),
        ("__UNIQUE_ID_ddebug417", "__UNIQUE_ID_ddebug"),
        (".bss.count.1", ".bss.count"),
    ],
)
def test_base_name(name: str, base: str) -> None:
    assert base_name(name) == base


# ---------------------------------------------------------------------------------------------
# What a livepatch cannot do, refused.


def test_changed_initialised_data_is_refused(tmp_path: Path) -> None:
    pre = "int table[4] = {1, 2, 3, 4};\nint get(int i) { return table[i]; }\n"
    with pytest.raises(KspliceError, match=r"\btable\b"):
        diff(tmp_path, pre, pre.replace("3, 4}", "3, 5}"))


def test_changed_static_data_is_refused(tmp_path: Path) -> None:
    pre = 'static const char *names[2] = {"a", "b"};\nconst char *get(int i) { return names[i]; }\n'
    with pytest.raises(KspliceError, match=r"\bnames\b"):
        diff(tmp_path, pre, pre.replace('"b"', '"c"'))


INIT = '__attribute__((section(".init.text"))) '


def test_changed_init_function_is_refused(tmp_path: Path) -> None:
    pre = INIT + "int setup(int x) { return x * 3; }\nint runtime(int x) { return x; }\n"
    with pytest.raises(KspliceError, match="__init") as e:
        diff(tmp_path, pre, pre.replace("x * 3", "x * 4"))
    assert "setup" in str(e.value)


def test_new_init_function_is_refused(tmp_path: Path) -> None:
    pre = "int runtime(int x) { return x; }\n"
    with pytest.raises(KspliceError, match="__init"):
        diff(tmp_path, pre, pre + INIT + "int setup(int x) { return x * 3; }\n")


def test_function_leaving_init_text_is_refused_or_carried(tmp_path: Path) -> None:
    pre = (
        INIT
        + "__attribute__((noinline)) int parse(int x) { return x * 7 + 1; }\n"
        + "int use(int x) { return x + 1; }\n"
    )
    post = (
        "__attribute__((noinline)) int parse(int x) { return x * 7 + 1; }\n"
        "int use(int x) { return parse(x) + 1; }\n"
    )
    try:
        d = diff(tmp_path, pre, post)
    except KspliceError as e:
        assert "parse" in str(e)
        return
    assert "use" in d.changed
    assert "parse" in d.changed or "parse" in d.new_functions


# ---------------------------------------------------------------------------------------------
# source.patch_paths


GIT_PATCH = """\
diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 1234567..89abcde 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,6 +6,7 @@
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
+\tseq_puts(m, "ksplice: ");
 \tseq_puts(m, saved_command_line);
diff --git a/include/linux/new.h b/include/linux/new.h
new file mode 100644
--- /dev/null
+++ b/include/linux/new.h
@@ -0,0 +1 @@
+#define NEW 1
diff --git a/kernel/gone.c b/kernel/gone.c
deleted file mode 100644
--- a/kernel/gone.c
+++ /dev/null
@@ -1 +0,0 @@
-int gone;
"""


def test_patch_paths_strips_components_and_skips_deleted_files() -> None:
    assert patch_paths(GIT_PATCH, 1) == ["fs/proc/cmdline.c", "include/linux/new.h"]
    assert patch_paths(GIT_PATCH, 0) == ["b/fs/proc/cmdline.c", "b/include/linux/new.h"]
    assert patch_paths(GIT_PATCH, 2) == ["proc/cmdline.c", "linux/new.h"]


def test_patch_paths_of_diff_u_output_with_timestamps() -> None:
    patch = (
        "--- linux.orig/mm/slab.c\t2024-01-01 10:00:00.000000000 +0000\n"
        "+++ linux/mm/slab.c\t2024-01-02 10:00:00.000000000 +0000\n"
        "@@ -1 +1 @@\n-a\n+b\n"
        "--- linux.orig/mm/slab.c\t2024-01-01 10:00:00.000000000 +0000\n"
        "+++ linux/mm/slab.c\t2024-01-02 10:00:00.000000000 +0000\n"
        "@@ -9 +9 @@\n-c\n+d\n"
    )
    assert patch_paths(patch, 1) == ["mm/slab.c"]  # once, though named twice
    assert patch_paths("not a patch\n", 1) == []


# ---------------------------------------------------------------------------------------------
# source.stabilise_line_numbers, on small files.


def _stabilise(tmp_path: Path, pre: str, post: str) -> str:
    write_side(tmp_path, "pre", pre)
    post_path = write_side(tmp_path, "post", post)
    stabilise_line_numbers(tmp_path / "pre" / "t.c", post_path, "t.c")
    assert (tmp_path / "pre" / "t.c").read_text() == pre  # the pristine file is never touched
    return post_path.read_text()


_DIRECTIVE = re.compile(r'^#line (\d+) "t\.c"$')


def _check_directives(pre: str, result: str) -> list[int]:
    """Each directive's number is the pre line that the line after it really is; returns the
    indices (0-based, in result) of the lines after each directive."""
    pre_lines = pre.splitlines()
    lines = result.splitlines()
    after = []
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if m:
            assert lines[i + 1] == pre_lines[int(m[1]) - 1], (i, line)
            after.append(i + 1)
    return after


def _numbered(n: int, start: int = 0) -> list[str]:
    return [f"int v{i} = __LINE__;\n" for i in range(start, start + n)]


def test_stabilise_after_inserted_lines(tmp_path: Path) -> None:
    pre_lines = _numbered(10)
    post_lines = [*pre_lines[:4], "int new1;\n", "int new2;\n", *pre_lines[4:]]
    pre, post = "".join(pre_lines), "".join(post_lines)
    result = _stabilise(tmp_path, pre, post)
    assert result.splitlines()[6] == '#line 5 "t.c"'
    assert _check_directives(pre, result) == [7]
    assert result.replace('#line 5 "t.c"\n', "") == post


def test_stabilise_after_deleted_lines(tmp_path: Path) -> None:
    pre_lines = _numbered(10)
    pre, post = "".join(pre_lines), "".join(pre_lines[:3] + pre_lines[6:])
    result = _stabilise(tmp_path, pre, post)
    assert _check_directives(pre, result) == [4]
    assert result.splitlines()[4] == "int v6 = __LINE__;"


def test_stabilise_leaves_a_same_length_change_alone(tmp_path: Path) -> None:
    pre_lines = _numbered(10)
    post_lines = list(pre_lines)
    post_lines[5] = "int v5 = 55 + __LINE__;\n"
    result = _stabilise(tmp_path, "".join(pre_lines), "".join(post_lines))
    assert result == "".join(post_lines)


def test_stabilise_directive_goes_after_a_block_comment(tmp_path: Path) -> None:
    pre_lines = [
        *_numbered(3),
        "/*\n",
        " * a comment that the directive must not split\n",
        " */\n",
        *_numbered(3, 3),
    ]
    post_lines = [*pre_lines[:4], " * an added comment line\n", *pre_lines[4:]]
    pre, post = "".join(pre_lines), "".join(post_lines)
    result = _stabilise(tmp_path, pre, post)
    (after,) = _check_directives(pre, result)
    assert result.splitlines()[after - 2] == " */"  # right after the comment ends
    _assert_preprocesses_like(tmp_path, pre, result)


def test_stabilise_directive_goes_after_a_continued_macro(tmp_path: Path) -> None:
    pre_lines = [
        "int a;\n",
        "#define TWICE(x) \\\n",
        "\t((x) + \\\n",
        "\t (x))\n",
        "int b = TWICE(2);\n",
        "int line_b = __LINE__;\n",
    ]
    post_lines = [*pre_lines[:2], "\t0 + \\\n", *pre_lines[2:]]
    pre, post = "".join(pre_lines), "".join(post_lines)
    result = _stabilise(tmp_path, pre, post)
    (after,) = _check_directives(pre, result)
    assert result.splitlines()[after] == "int b = TWICE(2);"
    assert result.splitlines()[after - 2] == "\t (x))"  # right after the macro's last line
    _assert_preprocesses_like(tmp_path, pre, result)


def test_stabilise_is_not_fooled_by_comment_markers_in_strings(tmp_path: Path) -> None:
    pre_lines = [
        'const char *open = "/* not a comment";\n',
        "const char quote = '\"';\n",
        "// a line comment with /* in it\n",
        *_numbered(5),
    ]
    post_lines = [*pre_lines[:4], "int added;\n", *pre_lines[4:]]
    pre, post = "".join(pre_lines), "".join(post_lines)
    result = _stabilise(tmp_path, pre, post)
    assert _check_directives(pre, result) == [6]


def test_stabilise_with_line_users_compiles_to_the_same_numbers(tmp_path: Path) -> None:
    """End to end through the preprocessor: every __LINE__ after the change keeps its value."""
    pre_lines = [f"int line_{i} = __LINE__;\n" for i in range(12)]
    post_lines = [
        "int added_first;\n",
        *pre_lines[:5],
        *pre_lines[7:9],
        "/* added\n",
        "   comment */\n",
        "int added_second;\n",
        *pre_lines[9:],
    ]
    pre, post = "".join(pre_lines), "".join(post_lines)
    result = _stabilise(tmp_path, pre, post)
    _assert_preprocesses_like(tmp_path, pre, result)


def _line_values(tmp_path: Path, source: str) -> dict[str, str]:
    path = tmp_path / "cpp.c"
    path.write_text(source)
    out = subprocess.run(
        ["gcc", "-E", "-P", path], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"\b(\w+) = (\d+);", out))


def _assert_preprocesses_like(tmp_path: Path, pre: str, post: str) -> None:
    """Every `name = __LINE__` that both versions define gets the same value."""
    before, after = _line_values(tmp_path, pre), _line_values(tmp_path, post)
    common = before.keys() & after.keys()
    assert common
    assert {k: after[k] for k in common} == {k: before[k] for k in common}


# ---------------------------------------------------------------------------------------------
# Changed code without an ftrace entry: patched through its callers when it is file-local.

NOTRACE = """
#define notrace __attribute__((noinline, no_instrument_function))
{scope} notrace int body(int x) {{ return x * {factor} + 1; }}
int f1(int x) {{ return body(x) + 1; }}
int f2(int x) {{ return body(x) - 1; }}
int f3(int x) {{ return x; }}
"""


def test_changed_notrace_static_is_carried_and_its_callers_patched(tmp_path: Path) -> None:
    pre_src, post_src = (NOTRACE.format(scope="static", factor=f) for f in (3, 5))
    d = diff(tmp_path, pre_src, post_src)
    assert set(d.changed) == {"body"}
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    assert not has_ftrace_entry(pre, functions(pre)["body"])
    assert has_ftrace_entry(pre, functions(pre)["f1"])
    patch_through_callers("t.o", pre, post, d)
    assert set(d.changed) == {"f1", "f2"}
    assert d.new_functions == ["body"]
    assert all("body" in why for why in d.changed.values())


def test_changed_notrace_global_is_refused(tmp_path: Path) -> None:
    pre_src, post_src = (NOTRACE.format(scope="", factor=f) for f in (3, 5))
    d = diff(tmp_path, pre_src, post_src)
    pre, post = read_object(tmp_path / "pre" / "t.o"), read_object(tmp_path / "post" / "t.o")
    with pytest.raises(KspliceError, match=r"body has no ftrace entry .* it is global"):
        patch_through_callers("t.o", pre, post, d)
