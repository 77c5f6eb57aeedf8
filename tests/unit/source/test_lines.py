"""#line directives (source.lines.stabilise_line_numbers): on small files, through the
preprocessor, and through the differ, where they keep code that only moved from looking changed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ksplice_pkg.diff.unit import diff_objects
from ksplice_pkg.source.lines import stabilise_line_numbers
from tests.unit.tools import PRINTK, assert_empty, build, compile_side, write_side

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
# On small files.


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
