"""The upload's report (upload.report): every change left out appears in it."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.compile.headers import IncludeIndex
from ksplice_pkg.upload.changes import Change, FileChange, hunks_of
from ksplice_pkg.upload.derive import Derived
from ksplice_pkg.upload.reasons import LeftOut, Reason
from ksplice_pkg.upload.report import Report, Side
from ksplice_pkg.upload.scope import Scope, Scoped

OLD = "".join(f"line {i}\n" for i in range(20))
NEW = OLD.replace("line 3\n", "line three\n")


def test_a_unit_left_out_through_headers_is_listed_though_its_file_did_not_change() -> None:
    header = FileChange("include/linux/x.h", Change.MODIFIED, OLD.encode(), NEW.encode(),
                        hunks_of(OLD.encode(), NEW.encode()))  # fmt: skip
    left = [
        LeftOut("include/linux/x.h", "@@ -4 +4 @@", Reason.LAYOUT, "struct x changes"),
        LeftOut("drivers/a.c", None, Reason.INIT, "drivers/a.o: only init code changes: a_init"),
    ]
    derived = Derived([], [], {}, left, {})
    report = Report(Side(Path("new"), "2"), Side(Path("old"), "1"), "6.1.0-1-amd64",
                    [Scoped(header, Scope.HEADER)], derived, IncludeIndex({}))  # fmt: skip
    data = report.to_json()
    listed = [i for f in data["files"] for i in f["left_out"]] + data["left_out_in_other_files"]
    assert len(listed) == data["totals"]["left_out"] == 2
    assert data["left_out_in_other_files"] == [
        {"path": "drivers/a.c", "reason": "init", "detail": left[1].detail}
    ]
