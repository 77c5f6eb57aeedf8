"""The upload's changelog (upload.changelog), read from each KERNEL_SOURCE form made small in the
test with the distro's own tools (dpkg-deb, dpkg-source, rpmbuild), in the layout of Debian's
and Fedora/RHEL's kernel changelogs; and the CVE ties it allows, which must be certain."""

from __future__ import annotations

import difflib
import gzip
from pathlib import Path

import pytest

from ksplice_pkg.distro.srcpkg import identify, prepare_source
from ksplice_pkg.run import run
from ksplice_pkg.upload.changelog import (
    ChangelogEntry,
    ChangelogError,
    UploadLog,
    debian_changelog,
    printable_line,
    read_upload_log,
    rpm_vercmp,
    split_patch,
    tie_cves,
    with_function_context,
)
from tests.unit.distro import fixtures

TRAILER = " -- Lab Person <lab@example.org>  {date}\n\n"

# Three uploads, newest first, written as Debian's kernel team writes them: a stable update
# with ChangeLog URLs between its items and wrapped lines, a "[ Name ]" section, architecture
# tags, a nested list, and a heading that names a CVE over its patches.
CHANGELOG = (
    "linux (6.1.192-3) bookworm-security; urgency=high\n\n"
    "  * nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)\n\n"
    + TRAILER.format(date="Thu, 26 Nov 2026 18:12:56 +0100")
    + "linux (6.1.192-2) bookworm-security; urgency=high\n\n"
    "  * New upstream stable update:\n"
    "    https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.191\n"
    "    - ext4: fix NULL dereference in ext4_mb_new_blocks() (CVE-2026-10001)\n"
    "    - [x86] KVM: x86/mmu: Fix use-after-free on vendor module reload\n"
    "      (CVE-2026-10002)\n"
    "    https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.192\n"
    "    - tcp: fix use-after-free in do_tcp_getsockopt(TCP_CC_INFO) (CVE-2026-10003)\n"
    "    - smb: client: prevent races in ->query_interfaces() (CVE-2026-10004)\n"
    "    - arm64: errata:\n"
    "      + cputype: Add C1-Ultra definitions\n"
    "      + errata: Mitigate TLBI errata on various CPUs (CVE-2026-10005)\n"
    "  * [x86] Fix foo in bar_baz() and qux() (CVE-2026-10006):\n"
    "    - bugfix/x86/fix-foo.patch\n"
    "    - debian/patches/bugfix/x86/fix-foo-2.patch\n\n"
    "  [ Other Person ]\n"
    "  * ext4: fix NULL folio dereference in mballoc (Closes: #1154101)\n\n"
    + TRAILER.format(date="Mon, 16 Nov 2026 11:17:40 +0100")
    + "linux (6.1.192-1) bookworm-security; urgency=high\n\n"
    "  * io_uring: don't flood a cancelling task (CVE-2026-99254)\n\n"
    + TRAILER.format(date="Sat, 14 Nov 2026 11:29:58 +0100")
)


def _tree(where: Path, changelog: str | None) -> Path:
    tree = fixtures.kernel_tree(where)
    if changelog is not None:
        (tree / "debian").mkdir()
        (tree / "debian" / "changelog").write_text(changelog)
    return tree


def _from(text: str, top: str) -> str:
    """The changelog as it stood at the upload `top` (its block and the older ones)."""
    return text[text.index(f"linux ({top})") :]


def test_tree_changelogs_give_the_entries_between_the_versions(tmp_path: Path) -> None:
    old = _tree(tmp_path / "old", _from(CHANGELOG, "6.1.192-1"))
    new = _tree(tmp_path / "new", CHANGELOG)
    log = read_upload_log(old, old, new, new)
    assert (log.old_version, log.new_version, log.origin) == (
        "6.1.192-1",
        "6.1.192-3",
        "debian/changelog",
    )
    assert [e.line for e in log.entries] == [
        "nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)",
        "ext4: fix NULL dereference in ext4_mb_new_blocks() (CVE-2026-10001)",
        "[x86] KVM: x86/mmu: Fix use-after-free on vendor module reload (CVE-2026-10002)",
        "tcp: fix use-after-free in do_tcp_getsockopt(TCP_CC_INFO) (CVE-2026-10003)",
        "smb: client: prevent races in ->query_interfaces() (CVE-2026-10004)",
        "cputype: Add C1-Ultra definitions",
        "errata: Mitigate TLBI errata on various CPUs (CVE-2026-10005)",
        "[x86] Fix foo in bar_baz() and qux() (CVE-2026-10006):",
        "bugfix/x86/fix-foo.patch",
        "debian/patches/bugfix/x86/fix-foo-2.patch",
        "ext4: fix NULL folio dereference in mballoc (Closes: #1154101)",
    ]
    assert [e.version for e in log.entries] == ["6.1.192-3"] + ["6.1.192-2"] * 10
    by_line = {e.line[:16]: e for e in log.entries}
    assert by_line["ext4: fix NULL d"].functions == ("ext4_mb_new_blocks",)
    assert by_line["tcp: fix use-aft"].functions == ("do_tcp_getsockopt",)
    assert by_line["smb: client: pre"].functions == ()  # an ops member, not one function
    assert by_line["[x86] Fix foo in"].functions == ("bar_baz", "qux")
    assert by_line["bugfix/x86/fix-f"].patch_files == ("debian/patches/bugfix/x86/fix-foo.patch",)
    assert by_line["debian/patches/b"].patch_files == ("debian/patches/bugfix/x86/fix-foo-2.patch",)
    # The heading names the patches listed under it.
    assert by_line["[x86] Fix foo in"].patch_files == (
        "debian/patches/bugfix/x86/fix-foo.patch",
        "debian/patches/bugfix/x86/fix-foo-2.patch",
    )
    assert log.cves == (
        "CVE-2026-10001",
        "CVE-2026-10002",
        "CVE-2026-10003",
        "CVE-2026-10004",
        "CVE-2026-10005",
        "CVE-2026-10006",
        "CVE-2026-99362",
    )
    assert "CVE-2026-99254" not in log.cves  # the old upload's own


def test_a_tree_without_debian_changelog_has_no_log(tmp_path: Path) -> None:
    old = _tree(tmp_path / "old", None)
    new = _tree(tmp_path / "new", None)
    assert read_upload_log(old, old, new, new) == UploadLog(None, None, (), "", {})


def test_without_the_old_version_only_the_new_upload_entry(tmp_path: Path) -> None:
    # The old side a tarball-like tree with no changelog: where the new entries end is not
    # known, so the log holds the new upload's own block, not the whole history.
    old = _tree(tmp_path / "old", None)
    new = _tree(tmp_path / "new", CHANGELOG)
    log = read_upload_log(old, old, new, new)
    assert (log.old_version, log.new_version) == (None, "6.1.192-3")
    assert [e.cves for e in log.entries] == [("CVE-2026-99362",)]


def test_a_changelog_that_links_out_of_debian_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(CHANGELOG)
    old = _tree(tmp_path / "old", None)
    new = _tree(tmp_path / "new", None)
    (new / "debian").mkdir()
    (new / "debian" / "changelog").symlink_to(secret)
    with pytest.raises(ChangelogError) as e:
        read_upload_log(old, old, new, new)
    assert "leads out of" in e.value.message


def _source_deb(where: Path, version: str, changelog: bytes) -> Path:
    return fixtures.deb(
        where,
        "linux-source-6.1",
        {
            "usr/share/doc/linux-source-6.1/changelog.Debian.gz": changelog,
            "usr/src/linux-source-6.1.tar.xz": b"not read here",
        },
        arch="all",
        version=version,
    )


def test_linux_source_deb_changelog_is_read_from_the_deb(tmp_path: Path) -> None:
    old = _source_deb(
        tmp_path / "a", "6.1.192-2", gzip.compress(_from(CHANGELOG, "6.1.192-2").encode())
    )
    new = _source_deb(tmp_path / "b", "6.1.192-3", gzip.compress(CHANGELOG.encode()))
    # The trees prepare_source makes of a linux-source .deb hold no debian/: never looked at.
    log = read_upload_log(old, tmp_path / "none", new, tmp_path / "none")
    assert (log.old_version, log.new_version, log.origin) == (
        "6.1.192-2",
        "6.1.192-3",
        "changelog.Debian.gz",
    )
    assert log.entries == (
        ChangelogEntry(
            "6.1.192-3",
            "nfsd: preflight SEQUENCE replies before accepting a slot (CVE-2026-99362)",
            ("CVE-2026-99362",),
            (),
            (),
        ),
    )
    assert log.patch_cves == {}


def test_debian_changelog_of_each_form(tmp_path: Path) -> None:
    text = _from(CHANGELOG, "6.1.192-2")
    deb = _source_deb(tmp_path / "a", "6.1.192-2", gzip.compress(text.encode()))
    assert debian_changelog(deb, tmp_path / "none") == text
    tree = _tree(tmp_path / "t", CHANGELOG)
    assert debian_changelog(tree, tree) == CHANGELOG
    plain = _tree(tmp_path / "p", None)
    assert debian_changelog(plain, plain) is None
    old, _ = _dscs(tmp_path / "dsc")
    assert debian_changelog(old, prepare_source(identify(old), tmp_path / "cache")) == OLD_LOG


def test_a_damaged_changelog_in_the_deb_is_an_error(tmp_path: Path) -> None:
    old = _source_deb(tmp_path / "a", "6.1.192-2", gzip.compress(b"x"))
    new = _source_deb(tmp_path / "b", "6.1.192-3", gzip.compress(CHANGELOG.encode())[:200])
    with pytest.raises(ChangelogError) as e:
        read_upload_log(old, tmp_path, new, tmp_path)
    assert "changelog.Debian.gz" in e.value.message


CVE_PATCH = (
    "From: Lab Person <lab@example.org>\n"
    "Subject: fs: bound b()\n"
    "Bug-Debian-Security: https://security-tracker.debian.org/tracker/CVE-2026-20001\n"
    "---\n"
    " fs/b.c | 2 +-\n"
    "--- a/fs/b.c\n+++ b/fs/b.c\n@@ -1,4 +1,4 @@\n"
    " int b(void)\n {\n-\treturn 1;\n+\treturn 2;\n }\n"
)
# Applied by both uploads: its CVE is the old upload's.
OLD_PATCH = (
    "Subject: fs: a() (CVE-2025-30001)\n\n"
    "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,4 +1,4 @@\n"
    " int a(void)\n {\n-\treturn 1;\n+\treturn 42;\n }\n"
)


def _dsc(where: Path, version: str, patches: dict[str, str], changelog: str) -> Path:
    """linux_<version>.dsc (3.0 quilt) applying `patches` in order, fs/a.c and fs/b.c in it."""
    where.mkdir(parents=True)
    upstream = version.split("-", maxsplit=1)[0]
    tree = fixtures.kernel_tree(where, f"linux-{upstream}")
    (tree / "fs" / "b.c").write_text("int b(void)\n{\n\treturn 1;\n}\n")
    run(["tar", "-C", where, "-cJf", where / f"linux_{upstream}.orig.tar.xz", tree.name])
    debian = tree / "debian"
    (debian / "source").mkdir(parents=True)
    (debian / "source" / "format").write_text("3.0 (quilt)\n")
    for name, text in patches.items():
        (debian / "patches" / name).parent.mkdir(parents=True, exist_ok=True)
        (debian / "patches" / name).write_text(text)
    (debian / "patches" / "series").write_text("".join(f"{name}\n" for name in patches))
    (debian / "control").write_text(
        "Source: linux\nMaintainer: Lab <lab@example.org>\n\n"
        "Package: linux-lab\nArchitecture: all\nDescription: stand-in\n stand-in kernel\n"
    )
    (debian / "changelog").write_text(changelog)
    run(["dpkg-source", "-b", tree.name], cwd=where)
    return where / f"linux_{version}.dsc"


def _block(version: str, line: str) -> str:
    return f"linux ({version}) unstable; urgency=high\n\n  * {line}\n\n" + TRAILER.format(
        date="Mon, 16 Nov 2026 11:17:40 +0100"
    )


OLD_LOG = _block("6.1.187-1", "fs: a() (CVE-2025-30001)")
NEW_LOG = _block("6.1.187-2", "fs: bound b()") + OLD_LOG


def _dscs(tmp_path: Path) -> tuple[Path, Path]:
    old = _dsc(tmp_path / "old", "6.1.187-1", {"bugfix/a.patch": OLD_PATCH}, OLD_LOG)
    new = _dsc(
        tmp_path / "new",
        "6.1.187-2",
        {"bugfix/a.patch": OLD_PATCH, "bugfix/b.patch": CVE_PATCH},
        NEW_LOG,
    )
    return old, new


def test_dsc_patches_the_new_upload_adds_tie_their_cves(tmp_path: Path) -> None:
    old, new = _dscs(tmp_path)
    cache = tmp_path / "cache"
    old_tree = prepare_source(identify(old), cache)
    new_tree = prepare_source(identify(new), cache)
    assert "return 2;" in (new_tree / "fs" / "b.c").read_text()  # the patch was applied
    log = read_upload_log(old, old_tree, new, new_tree)
    assert (log.old_version, log.new_version, log.origin) == (
        "6.1.187-1",
        "6.1.187-2",
        "debian/changelog",
    )
    assert [e.line for e in log.entries] == ["fs: bound b()"]
    # Only the added patch: bugfix/a.patch is in both series, unchanged.
    assert log.patch_cves == {"fs/b.c": ("CVE-2026-20001",)}
    assert log.cves == ("CVE-2026-20001",)
    diffs = {"fs/b.c": CVE_PATCH[CVE_PATCH.index("--- a/") :], "fs/c.c": _diff("", "-x", "+y")}
    assert tie_cves(log, diffs) == {"CVE-2026-20001": frozenset({"fs/b.c"})}
    # A CVE tied to a path that is not among the changes is not tied.
    assert tie_cves(log, {"fs/c.c": diffs["fs/c.c"]}) == {}


def test_dsc_whose_tree_lost_debian_reads_the_debian_tarball(tmp_path: Path) -> None:
    old, new = _dscs(tmp_path)
    new_tree = fixtures.kernel_tree(tmp_path / "plain")  # a tree without debian/
    old_tree = fixtures.kernel_tree(tmp_path / "plain-old")
    log = read_upload_log(old, old_tree, new, new_tree)
    assert [e.line for e in log.entries] == ["fs: bound b()"]
    assert log.patch_cves == {"fs/b.c": ("CVE-2026-20001",)}


def test_old_side_without_patches_counts_only_the_patches_the_changelog_names(
    tmp_path: Path,
) -> None:
    old = _source_deb(tmp_path / "a", "6.1.187-1", gzip.compress(OLD_LOG.encode()))
    changelog = _block("6.1.187-2", "fs: bound b() (bugfix/b.patch)") + OLD_LOG
    new = _dsc(
        tmp_path / "new",
        "6.1.187-2",
        {"bugfix/a.patch": OLD_PATCH, "bugfix/b.patch": CVE_PATCH},
        changelog,
    )
    new_tree = prepare_source(identify(new), tmp_path / "cache")
    log = read_upload_log(old, tmp_path / "none", new, new_tree)
    # bugfix/a.patch (CVE-2025-30001) is not named: the old upload applied it too.
    assert log.patch_cves == {"fs/b.c": ("CVE-2026-20001",)}
    unnamed = _block("6.1.187-2", "fs: bound b()") + OLD_LOG
    (new_tree / "debian" / "changelog").write_text(unnamed)
    log = read_upload_log(old, tmp_path / "none", new_tree, new_tree)
    assert log.patch_cves == {}


SPEC_CHANGELOG = (
    "%changelog\n"
    "* Tue Apr 30 2024 Lab Person <lab@example.org> [6.1.187-2.fc39]\n"
    "- ext4: fix ext4_foo() (Lab Person) {CVE-2024-11111}\n"
    "- nfsd: a change wrapped over\n"
    "  two lines (Lab Person) [RHEL-1234]\n"
    "* Mon Apr 01 2024 Lab Person <lab@example.org> - 6.1.187-1.fc39\n"
    "- the old upload's fix {CVE-2023-22222}\n"
)


def _srpm(where: Path, release: str) -> Path:
    sources = where / "SOURCES"
    sources.mkdir(parents=True)
    tree = fixtures.kernel_tree(where / "src")
    run(["tar", "-C", tree.parent, "-cJf", sources / f"linux-{fixtures.VERSION}.tar.xz", tree.name])
    spec = sources / "kernel.spec"
    spec.write_text(
        f"Name: kernel\nVersion: {fixtures.VERSION}\nRelease: {release}\nSummary: stand-in\n"
        "License: GPL-2.0-only\nBuildArch: noarch\n"
        f"Source0: linux-{fixtures.VERSION}.tar.xz\n\n"
        "%description\nstand-in\n\n"
        f"%prep\n%setup -q -n linux-{fixtures.VERSION}\n\n%files\n\n{SPEC_CHANGELOG}"
    )
    return fixtures.source_rpm(spec, where)


def test_srpm_changelog_entries_after_the_old_release(tmp_path: Path) -> None:
    old = _srpm(tmp_path / "old", "1.fc39")
    new = _srpm(tmp_path / "new", "2.fc39")
    log = read_upload_log(old, tmp_path, new, tmp_path)
    assert (log.old_version, log.new_version, log.origin) == (
        f"{fixtures.VERSION}-1.fc39",
        f"{fixtures.VERSION}-2.fc39",
        "%changelog",
    )
    assert [(e.version, e.line, e.cves, e.functions) for e in log.entries] == [
        (
            "6.1.187-2.fc39",
            "ext4: fix ext4_foo() (Lab Person) {CVE-2024-11111}",
            ("CVE-2024-11111",),
            ("ext4_foo",),
        ),
        (
            "6.1.187-2.fc39",
            "nfsd: a change wrapped over two lines (Lab Person) [RHEL-1234]",
            (),
            (),
        ),
    ]


def _log(
    *entries: ChangelogEntry, patch_cves: dict[str, tuple[str, ...]] | None = None
) -> UploadLog:
    return UploadLog("1", "2", entries, "debian/changelog", patch_cves or {})


def _entry(cve: str, *functions: str) -> ChangelogEntry:
    return ChangelogEntry("2", "x", (cve,), functions, ())


def _diff(header_context: str, *lines: str) -> str:
    """One file's unified diff of one hunk: `lines` as they appear in it (" ", "-" or "+")."""
    return f"--- a/f.c\n+++ b/f.c\n@@ -10,7 +10,7 @@ {header_context}\n" + "".join(
        f"{line}\n" for line in lines
    )


def test_a_function_changed_in_exactly_one_file_ties_its_cve() -> None:
    diffs = {
        # Changed inside ext4_mb_new_blocks: the hunk header names it (diff -p, git).
        "fs/ext4/mballoc.c": _diff("int ext4_mb_new_blocks(handle_t *h)", "-\tx = 1;", "+\tx = 2;"),
        # nfsd4_sequence's body changes in two files: which one fixes the CVE is not certain.
        "fs/nfsd/nfs4state.c": _diff("static int nfsd4_sequence(void)", "+\ty = 0;"),
        "fs/nfsd/nfs4proc.c": _diff("", " nfsd4_sequence(struct svc_rqst *r)", " {", "+\ty = 0;"),
        # do_tcp_getsockopt only stands on an unchanged line, in the middle of another function.
        "net/ipv4/tcp.c": _diff("static int h(void)", " \tdo_tcp_getsockopt(sk);", "+\ty = 0;"),
    }
    log = _log(
        _entry("CVE-2026-1", "ext4_mb_new_blocks"),
        _entry("CVE-2026-2", "nfsd4_sequence"),
        _entry("CVE-2026-3", "do_tcp_getsockopt"),
        _entry("CVE-2026-4", "missing_function"),
    )
    assert tie_cves(log, diffs) == {"CVE-2026-1": frozenset({"fs/ext4/mballoc.c"})}


def test_a_function_only_called_on_a_changed_line_ties_nothing() -> None:
    # "PCI: endpoint: Add missing NULL check for alloc_workqueue()": the one changed file that
    # calls alloc_workqueue may be any other user of it (measured on 6.1.190 -> 6.1.192).
    diffs = {
        "drivers/nvme/target/core.c": _diff("int nvmet_init(void)", "+\twq = alloc_workqueue(n);")
    }
    assert tie_cves(_log(_entry("CVE-2026-5", "alloc_workqueue")), diffs) == {}


def test_the_enclosing_function_is_found_in_the_hunk_without_a_header_context() -> None:
    # difflib and diff -u without -p print no context: the definition line in the hunk tells.
    diffs = {
        "a.c": _diff("", " }", " ", " static int one(void)", " {", "-\treturn 1;", "+\treturn 2;"),
        # Changed after two()'s closing brace: outside two, in nothing the hunk names.
        "b.c": _diff("", " static int two(void)", " {", " \treturn 0;", " }", "+int three;"),
        # A new function defined on a changed line.
        "c.c": _diff("", "+static void four(void)", "+{", "+}"),
    }
    log = _log(
        _entry("CVE-2026-6", "one"), _entry("CVE-2026-7", "two"), _entry("CVE-2026-8", "four")
    )
    assert tie_cves(log, diffs) == {
        "CVE-2026-6": frozenset({"a.c"}),
        "CVE-2026-8": frozenset({"c.c"}),
    }


def test_an_entry_naming_functions_of_two_files_ties_both() -> None:
    diffs = {
        "a.c": _diff("void one(void)", "+\tx();"),
        "b.c": _diff("void two(void)", "+\ty();"),
    }
    log = _log(_entry("CVE-2026-9", "one", "two"), patch_cves={"c.c": ("CVE-2026-10",)})
    assert tie_cves(log, diffs) == {"CVE-2026-9": frozenset({"a.c", "b.c"})}


def test_file_header_lines_are_not_changes() -> None:
    # "--- a/x(" and "+++ b/x(" are the diff's file header, not lines of x's definition.
    diffs = {
        "x(": "--- a/x(\n+++ b/x(\n@@ -1 +1 @@\n-a\n+b\n",
        "y.c": _diff("int x(void)", "+\tz();"),
    }
    assert tie_cves(_log(_entry("CVE-2026-11", "x")), diffs) == {"CVE-2026-11": frozenset({"y.c"})}


OLD_C = (
    "static int helper(int x)\n{\n\treturn x;\n}\n\n"
    "int target(int a)\n{\n\tint b = helper(a);\n\n\tif (b)\n\t\tgoto out;\n"
    "\tb++;\nout:\n\tb--;\n\tb--;\n\tb--;\n\tb--;\n\tb--;\n\treturn b;\n}\n"
)


def _unified(old: str, new: str) -> str:
    """diff -u as the upload's changes make it: difflib over lines that end at "\n" only."""
    lines = difflib.diff_bytes(
        difflib.unified_diff,
        old.encode().splitlines(True),
        new.encode().splitlines(True),
        b"a/f.c",
        b"b/f.c",
    )
    return b"".join(lines).decode()


def test_function_context_is_added_to_difflibs_bare_headers() -> None:
    new = OLD_C.replace("\tb--;\n\treturn b;", "\tb -= 2;\n\treturn b;")
    diff = _unified(OLD_C, new)
    assert "out:" not in diff  # the label stands before the hunk
    # The hunk shows neither target's definition nor any line that starts it: no tie.
    log = _log(_entry("CVE-2026-12", "target"))
    assert tie_cves(log, {"f.c": diff}) == {}
    # The function line before the hunk: target's, not the label "out:".
    headers = [
        line for line in with_function_context(diff, OLD_C).split("\n") if line.startswith("@@")
    ]
    assert headers == ["@@ -15,6 +15,6 @@ int target(int a)"]
    assert tie_cves(log, {"f.c": with_function_context(diff, OLD_C)}) == {
        "CVE-2026-12": frozenset({"f.c"})
    }
    # A form feed is no line end in C: were it one, the line before this hunk would be first's.
    old = "int first(void)\n{\n\f\n}\nint second(void)\n{\n\tx;\n\tx;\n\tx;\n}\n"
    diff = _unified(old, old.replace("\tx;\n}", "\ty;\n}"))
    assert "@@ -6,5 +6,5 @@ int second(void)" in with_function_context(diff, old)
    # A header that names its function already is left as it is.
    named = "@@ -1,2 +1,2 @@ int other(void)\n-a\n+b\n"
    assert with_function_context(named, OLD_C) == named


def test_split_patch_header_and_paths() -> None:
    header, paths = split_patch(
        "Subject: two files (CVE-2026-8)\n---\n a | 1 +\n"
        "diff --git a/fs/new.c b/fs/new.c\n--- /dev/null\n+++ b/fs/new.c\n@@ -0,0 +1 @@\n+x\n"
        "--- a/fs/gone.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-y\n"
        "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n"
    )
    assert "CVE-2026-8" in header and "fs/new.c" not in header
    assert paths == ["fs/new.c", "fs/gone.c"]


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0", "1.0.1"),
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0^git1"),
        ("1.0^git1", "1.0.1"),
        ("5.14.0-427.13.1.el9_4", "5.14.0-427.16.1.el9_4"),
        ("1.a", "1.1"),
        ("6.1.187-1.fc39", "6.1.187-2.fc39"),
        ("2.9", "2.10"),
    ],
)
def test_rpm_version_order(older: str, newer: str) -> None:
    assert rpm_vercmp(older, newer) == -1
    assert rpm_vercmp(newer, older) == 1
    assert rpm_vercmp(newer, newer) == 0


def test_rpm_leading_zeros_do_not_count() -> None:
    assert rpm_vercmp("1.010", "1.10") == 0


def test_printable_line() -> None:
    assert printable_line("a\x1b[2J  b\tc\n d") == "a [2J b c d"
    long = printable_line("x" * 400)
    assert len(long) == 300 and long.endswith("...")
