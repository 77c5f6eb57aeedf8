"""A change left out, as the manifest records it (upload.reasons.LeftOut.line)."""

from __future__ import annotations

from ksplice_pkg.errors import KspliceError, RefusedError, UnknownSymbolError
from ksplice_pkg.manifest import MAX_TEXT, is_text_line
from ksplice_pkg.upload.reasons import LeftOut, Reason, reason_of


def test_a_left_out_change_is_one_printable_line_whatever_its_detail() -> None:
    # What the stable upload's build stopped on: a detail quoting gcc over several lines,
    # with a tab, inside a chain of units that cannot be patched.
    error = "net/bridge/x.c:12:3: error: implicit declaration of\n\t\u2018nft_reject_validate\u2019"
    detail = "net/bridge/x.o cannot be patched: " * 40 + error + "\x1b[0m"
    item = LeftOut("include/net/netfilter/nft_reject.h", "@@ -21,7 +21,8 @@",
                   Reason.NEEDS_LEFT_OUT, detail)  # fmt: skip
    line = item.line()
    assert is_text_line(line)
    assert len(line) <= MAX_TEXT and line.endswith("...")
    short = LeftOut("fs/a.c", None, Reason.COMPILE, error).line()
    assert is_text_line(short)
    assert short == (
        "fs/a.c: compile: net/bridge/x.c:12:3: error: implicit declaration of "
        "\u2018nft_reject_validate\u2019"
    )


def test_a_refusal_is_counted_by_its_kind() -> None:
    unknown = UnknownSymbolError("f", "mm/x.o: the update refers to f, which the target kernel's "
                                 "symbol map does not have")  # fmt: skip
    assert reason_of(unknown) is Reason.UNKNOWN_SYMBOL
    assert reason_of(RefusedError("x.o: g has no ftrace entry (__fentry__ call)")) is (
        Reason.NO_FTRACE
    )
    assert reason_of(KspliceError("x.o: something else")) is Reason.OTHER
