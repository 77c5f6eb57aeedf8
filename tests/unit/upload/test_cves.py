"""Each CVE of the upload marked included, left out or unknown from what the changelog ties
it to and what the update carries."""

from __future__ import annotations

from ksplice_pkg.upload.changelog import ChangelogEntry, UploadLog
from ksplice_pkg.upload.changes import Change, FileChange, hunks_of
from ksplice_pkg.upload.cumulative import cve_status
from ksplice_pkg.upload.derive import Derived
from ksplice_pkg.upload.reasons import LeftOut, Reason
from ksplice_pkg.upload.scope import Scope, Scoped

OLD = b"".join(b"int f%d(void)\n{\n\treturn %d;\n}\n\n" % (i, i) for i in range(3))


def _scoped(path: str, function: int = 1) -> Scoped:
    new = OLD.replace(b"return %d;" % function, b"return 7;")
    return Scoped(FileChange(path, Change.MODIFIED, OLD, new, hunks_of(OLD, new)), Scope.BUILT_IN)


def _entry(line: str, cves: tuple[str, ...], functions: tuple[str, ...]) -> ChangelogEntry:
    return ChangelogEntry("2", line, cves, functions, ())


def _derived(left: list[LeftOut]) -> Derived:
    return Derived([], [], {}, left, {})


def test_a_cve_follows_the_file_its_entry_names_a_function_of() -> None:
    log = UploadLog(
        "1",
        "2",
        (
            _entry("fs: fix f1()", ("CVE-2026-0001",), ("f1",)),
            _entry("net: fix a race", ("CVE-2026-0002",), ()),
        ),
        "debian/changelog",
    )
    scoped = [_scoped("fs/a.c"), _scoped("net/b.c", function=2)]
    assert cve_status(log, scoped, _derived([])) == {
        "CVE-2026-0001": "included",
        "CVE-2026-0002": "unknown",
    }
    left = [LeftOut("fs/a.c", "@@ -1 +1 @@", Reason.DATA, "x")]
    assert cve_status(log, scoped, _derived(left))["CVE-2026-0001"] == "left-out"


def test_an_upload_of_one_changed_file_ties_its_cves_to_it() -> None:
    log = UploadLog("1", "2", (_entry("nfsd: fix a leak", ("CVE-2026-0003",), ()),), "x")
    assert cve_status(log, [_scoped("fs/nfsd/a.c")], _derived([])) == {"CVE-2026-0003": "included"}


def test_the_packaging_a_source_package_changes_does_not_count_as_a_changed_file() -> None:
    # A .dsc upload changes debian/changelog (and its patches, quilt's .pc/) besides the fix.
    log = UploadLog("1", "2", (_entry("nfsd: fix a leak", ("CVE-2026-0003",), ()),), "x")
    scoped = [
        _scoped("debian/changelog"),
        _scoped(".pc/fix.patch/fs/nfsd/a.c"),
        _scoped("fs/nfsd/a.c"),
    ]
    assert cve_status(log, scoped, _derived([])) == {"CVE-2026-0003": "included"}
    left = [LeftOut("fs/nfsd/a.c", "@@ -1 +1 @@", Reason.DATA, "x")]
    assert cve_status(log, scoped, _derived(left)) == {"CVE-2026-0003": "left-out"}
