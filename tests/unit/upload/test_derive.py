"""The verdicts of the derivation that need no compiler: what is left out before the first
round, and which hunks a refused unit takes out with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.compile.headers import IncludeIndex, KernelBuild
from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.compile.preprocessed import Difference
from ksplice_pkg.diff.unit import UnitChange
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.module.parts import Part
from ksplice_pkg.module.shared import SharedNew
from ksplice_pkg.upload import derive
from ksplice_pkg.upload.changes import Change, FileChange, hunks_of
from ksplice_pkg.upload.derive import Derivation, erring_files, in_tree
from ksplice_pkg.upload.reasons import LeftOut, Reason
from ksplice_pkg.upload.scope import Scope, Scoped

FILLER = "".join(f"/* {i} */\n" for i in range(12))
HEADER_OLD = (
    "struct foo {\n\tint a;\n};\n" + FILLER + "static inline int bar(void)\n{\n\treturn 1;\n}\n"
)
HEADER_NEW = (
    "struct foo {\n\tint a;\n\tint b;\n};\n"
    + FILLER
    + "static inline int bar(void)\n{\n\treturn 2;\n}\n"
)
C_OLD = "int f(void)\n{\n\treturn 1;\n}\n" + FILLER + "int g(void)\n{\n\treturn 1;\n}\n"
C_NEW = C_OLD.replace("return 1;", "return 3;")


def _file(path: str, old: str, new: str) -> FileChange:
    return FileChange(path, Change.MODIFIED, old.encode(), new.encode(), hunks_of(
        old.encode(), new.encode()))  # fmt: skip


def _derivation(tmp_path: Path, scoped: list[Scoped], index: IncludeIndex) -> Derivation:
    def no_part(change: UnitChange, n: int, shared: SharedNew) -> Part:
        raise AssertionError("nothing is compiled here")

    tree = PreparedTree(tmp_path / "old", tmp_path / "obj", "6.1.0-1-amd64")
    build = KernelBuild({"fs/a.o": "fs/a.c", "fs/b.o": "fs/b.c"}, {}, {})
    return Derivation(tree, scoped, build, index, no_part, tmp_path / "work", 1)


def test_a_struct_layout_hunk_is_left_out_and_the_inline_hunk_of_the_header_kept(
    tmp_path: Path,
) -> None:
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    makefile = Scoped(_file("fs/Makefile", "a\n", "b\n"), Scope.BUILD_SYSTEM)
    assert len(header.change.hunks) == 2
    accepted, left = _derivation(tmp_path, [header, makefile], IncludeIndex({}))._initial()
    assert accepted == {"include/linux/x.h": {1}}
    assert [(i.path, i.reason) for i in left] == [
        ("include/linux/x.h", Reason.LAYOUT),
        ("fs/Makefile", Reason.BUILD_SYSTEM),
    ]
    assert "struct foo" in left[0].detail and left[0].hunk == header.change.hunks[0].header


def test_a_refused_unit_takes_out_its_own_hunks_else_the_headers_that_reach_it(
    tmp_path: Path,
) -> None:
    a = Scoped(_file("fs/a.c", C_OLD, C_NEW), Scope.BUILT_IN, ("fs/a.o",))
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    index = IncludeIndex({"linux/x.h": ["fs/a.c", "fs/b.c"]})
    derivation = _derivation(tmp_path, [a, header], index)
    by_path = {s.path: s for s in derivation.scoped}
    units = {"fs/a.o": "fs/a.c", "fs/b.o": "fs/b.c"}

    accepted = {"fs/a.c": {0, 1}, "include/linux/x.h": {1}}
    refused = {"fs/a.o": (Reason.DATA, "fs/a.o: the patch changes the initial value of v")}
    left = derivation._take_out(refused, units, accepted, by_path)
    # Its own file's hunks go; the header, which fs/a.o also includes, stays.
    assert accepted == {"include/linux/x.h": {1}}
    assert [(i.path, i.reason) for i in left] == [("fs/a.c", Reason.DATA)] * 2

    refused = {"fs/b.o": (Reason.COMPILE, "fs/b.o does not compile: error")}
    left = derivation._take_out(refused, units, accepted, by_path)
    # fs/b.c has no change of its own: the header hunk that reaches it goes.
    assert accepted == {}
    assert [(i.path, i.reason) for i in left] == [("include/linux/x.h", Reason.NEEDS_LEFT_OUT)]
    assert "fs/b.o cannot be patched" in left[0].detail


def test_a_unit_that_fails_to_compile_names_the_left_out_headers_it_includes(
    tmp_path: Path,
) -> None:
    index = IncludeIndex({"linux/x.h": ["fs/a.c"], "linux/y.h": ["fs/b.c"]})
    derivation = _derivation(tmp_path, [], index)
    left = [
        LeftOut("include/linux/x.h", "@@ -1,3 +1,4 @@", Reason.LAYOUT, "struct foo"),
        LeftOut("include/linux/y.h", None, Reason.LAYOUT, "struct bar"),
        LeftOut("fs/Makefile", None, Reason.BUILD_SYSTEM, "changes what is built"),
    ]
    said = derivation._compile_failure("fs/a.o", "fs/a.c", "no member named 'b'", left)
    assert "without the left-out change(s) of include/linux/x.h:" in said
    assert "y.h" not in said and "no member named 'b'" in said
    alone = derivation._compile_failure("fs/a.o", "fs/a.c", "expected ';'", left[1:])
    assert "no change it includes was left out" in alone


def test_a_layout_refusal_takes_out_the_declaring_header_not_all_that_reach_the_unit(
    tmp_path: Path,
) -> None:
    a = Scoped(_file("fs/a.c", C_OLD, C_NEW), Scope.BUILT_IN, ("fs/a.o",))
    x = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    y = Scoped(_file("include/linux/y.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    index = IncludeIndex({"linux/x.h": ["fs/a.c"], "linux/y.h": ["fs/a.c"]})
    derivation = _derivation(tmp_path, [a, x, y], index)
    by_path = {s.path: s for s in derivation.scoped}
    accepted = {"fs/a.c": {0, 1}, "include/linux/x.h": {1}, "include/linux/y.h": {1}}
    # What diff.layout found: struct cache, declared in y.h, would need a new layout.
    derivation.layouts["fs/a.o"] = {"include/linux/y.h"}
    refused = {"fs/a.o": (Reason.LAYOUT, "fs/a.o: the change needs a new layout of struct cache")}
    left = derivation._take_out(refused, {"fs/a.o": "fs/a.c"}, accepted, by_path)
    assert accepted == {"fs/a.c": {0, 1}, "include/linux/x.h": {1}}
    assert [(i.path, i.reason) for i in left] == [("include/linux/y.h", Reason.LAYOUT)]


def test_two_units_refused_in_one_round_for_one_header_take_it_out_once(tmp_path: Path) -> None:
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    index = IncludeIndex({"linux/x.h": ["fs/a.c", "fs/b.c"]})
    derivation = _derivation(tmp_path, [header], index)
    by_path = {s.path: s for s in derivation.scoped}
    accepted = {"include/linux/x.h": {1}}
    refused = {
        "fs/a.o": (Reason.COMPILE, "fs/a.o does not compile: error"),
        "fs/b.o": (Reason.NO_FTRACE, "fs/b.o: f has no ftrace entry"),
    }
    units = {"fs/a.o": "fs/a.c", "fs/b.o": "fs/b.c"}
    left = derivation._take_out(refused, units, accepted, by_path)
    assert accepted == {}
    assert [(i.path, i.reason) for i in left] == [("include/linux/x.h", Reason.NEEDS_LEFT_OUT)]


def test_a_unit_that_does_not_compile_takes_out_the_header_the_errors_are_in(
    tmp_path: Path,
) -> None:
    # mlx5 in the stable upload: driver.h's layout hunk is left out up front, another header
    # hunk then uses what it removed. Only the header the compiler complained about goes, not
    # every changed header the unit includes.
    x = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    y = Scoped(_file("include/linux/y.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    index = IncludeIndex({"linux/x.h": ["fs/b.c"], "linux/y.h": ["fs/b.c"]})
    derivation = _derivation(tmp_path, [x, y], index)
    by_path = {s.path: s for s in derivation.scoped}
    output = (
        "In file included from /src/after/fs/b.c:3:\n"
        "/src/after/include/linux/y.h:2:9: error: 'struct foo' has no member named 'c'\n"
        "/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h:1:1: error: elsewhere\n"
        "./include/linux/z.h:5:1: error: not a changed file\n"
    )
    erring = erring_files(output, Path("/src/after"))
    assert erring == {"include/linux/y.h", "include/linux/z.h"}
    assert in_tree("/src/after/include/linux/y.h", Path("/src/after")) == "include/linux/y.h"
    assert in_tree("/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h", Path("/src/after")) is None
    derivation.erring["fs/b.o"] = {"include/linux/y.h"}
    accepted = {"include/linux/x.h": {1}, "include/linux/y.h": {1}}
    refused = {"fs/b.o": (Reason.COMPILE, "fs/b.o does not compile: no member named 'c'")}
    left = derivation._take_out(refused, {"fs/b.o": "fs/b.c"}, accepted, by_path)
    assert accepted == {"include/linux/x.h": {1}}
    assert [(i.path, i.reason) for i in left] == [("include/linux/y.h", Reason.NEEDS_LEFT_OUT)]


def test_a_unit_whose_init_code_alone_a_header_changes_is_left_out_uncompiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    own = Scoped(_file("fs/b.c", C_OLD, C_NEW), Scope.BUILT_IN, units=("fs/b.o",))
    # What compile/headers.py judges from the two .i files (tested there against gcc).
    judged = {
        "fs/a.o": Difference("only init code changes: a_init", init_only=True),
        "fs/b.o": Difference("only init code changes: b_init", init_only=True),
    }
    monkeypatch.setattr(derive, "header_users", lambda *args, **kwargs: judged)
    d = _derivation(tmp_path, [header, own], IncludeIndex({}))
    accepted = {"include/linux/x.h": {1}, "fs/b.c": {0, 1}}
    units = d._units(accepted, {s.path: s for s in (header, own)})
    # fs/b.o is compiled for its own change, whatever its headers do; fs/a.o is not compiled.
    assert units == {"fs/b.o": "fs/b.c"}
    (left,) = d._init_only()
    assert (left.path, left.hunk, left.reason) == ("fs/a.c", None, Reason.INIT)
    assert "a_init" in left.detail


def test_a_unit_calling_a_helper_whose_definer_failed_this_round_waits_a_round(
    tmp_path: Path,
) -> None:
    # The stable upload: hv_netvsc's netvsc_bpf.o, through skbuff.h's inline, calls
    # __skb_get_hash_net, new in flow_dissector.c, which did not compile in round 1.
    derivation = _derivation(tmp_path, [], IncludeIndex({}))
    (derivation.post_src / "fs").mkdir(parents=True)
    (derivation.post_src / "fs/a.c").write_text("u32 new_helper(void)\n{\n\treturn 1;\n}\n")
    (derivation.post_src / "fs/b.c").write_text("int g(void) { return new_helper_x(); }\n")
    refused = {
        "fs/a.o": (Reason.COMPILE, "fs/a.o does not compile: error"),
        "fs/b.o": (Reason.UNKNOWN_SYMBOL, "fs/b.o: the update refers to new_helper"),
    }
    derivation.unknown["fs/b.o"] = "new_helper"
    assert derivation._awaiting(refused) == {"fs/b.o": "fs/a.o"}
    # A name only as part of another word is not its definition.
    derivation.unknown["fs/b.o"] = "new_help"
    assert derivation._awaiting(refused) == {}
    # With its definer left out for good (not refused again), the caller waits for nothing.
    derivation.unknown["fs/b.o"] = "new_helper"
    del refused["fs/a.o"]
    assert derivation._awaiting(refused) == {}
    # Two units each refused for a name the other mentions are no definers of each other: a
    # round that defers always takes something else out.
    refused["fs/a.o"] = (Reason.UNKNOWN_SYMBOL, "fs/a.o: the update refers to g")
    derivation.unknown["fs/a.o"] = "g"
    assert derivation._awaiting(refused) == {}


def test_a_later_round_judges_again_only_the_users_of_the_header_hunks_taken_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    full: list[list[str]] = []
    mentioning: list[tuple[list[str], dict[str, str]]] = []
    judging: list[set[str]] = []

    def header_users(tree: object, src: object, obj: object, headers: list[str], *a: object,
                     **k: object) -> dict[str, Difference]:  # fmt: skip
        full.append(headers)
        return {"fs/a.o": Difference("changed: a"), "fs/b.o": Difference("changed: b")}

    def units_mentioning(tree: object, src: object, headers: list[str], *,
                         since: dict[str, str]) -> set[str]:  # fmt: skip
        mentioning.append((headers, dict(since)))
        return {"fs/b.o"} if headers else set()

    def judge_units(tree: object, src: object, obj: object, units: set[str], jobs: int
                    ) -> dict[str, Difference]:  # fmt: skip
        judging.append(set(units))
        return {}  # fs/b.o no longer differs

    monkeypatch.setattr(derive, "header_users", header_users)
    monkeypatch.setattr(derive, "units_mentioning", units_mentioning)
    monkeypatch.setattr(derive, "judge_units", judge_units)
    d = _derivation(tmp_path, [header], IncludeIndex({}))
    by_path = {header.path: header}
    written = d.post_src / header.path
    written.parent.mkdir(parents=True)
    written.write_text(HEADER_NEW)
    assert d._units({header.path: {0, 1}}, by_path) == {"fs/a.o": "fs/a.c", "fs/b.o": "fs/b.c"}
    # A round takes a hunk out: the users of what that changes are asked again, no others.
    written.write_text(HEADER_OLD.replace("return 1;", "return 2;"))
    assert d._units({header.path: {1}}, by_path) == {"fs/a.o": "fs/a.c"}
    assert mentioning == [([header.path], {header.path: HEADER_NEW})]
    assert judging == [{"fs/b.o"}]
    # Nothing changed since: nothing is judged again, the verdicts stand.
    assert d._units({header.path: {1}}, by_path) == {"fs/a.o": "fs/a.c"}
    assert (len(full), len(mentioning)) == (1, 1) and judging[-1] == set()


def test_a_refused_unit_the_index_does_not_connect_takes_out_the_headers_gcc_read(
    tmp_path: Path,
) -> None:
    header = Scoped(_file("include/linux/x.h", HEADER_OLD, HEADER_NEW), Scope.HEADER)
    derivation = _derivation(tmp_path, [header], IncludeIndex({}))
    by_path = {header.path: header}
    units = {"fs/b.o": "fs/b.c"}
    refused = {"fs/b.o": (Reason.STATIC_KEY, "fs/b.o: needs a key of module m")}
    with pytest.raises(RefusedError, match="no change of the upload was found"):
        derivation._take_out(refused, units, {header.path: {1}}, by_path)
    # kbuild's record of the after side's compile names the header.
    cmd = derivation.post_obj / "fs" / ".b.o.cmd"
    cmd.parent.mkdir(parents=True)
    cmd.write_text(f"deps_fs/b.o := \\\n  {derivation.post_src}/include/linux/x.h \\\n")
    accepted = {header.path: {1}}
    left = derivation._take_out(refused, units, accepted, by_path)
    assert accepted == {} and [(i.path, i.reason) for i in left] == [
        ("include/linux/x.h", Reason.STATIC_KEY)
    ]
