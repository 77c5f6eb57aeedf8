"""ksplice_pkg.unpack against hostile tarballs and cpio archives: each refused with an
ArchiveError naming the archive and the member, nothing written outside the destination; and
the same reader under Debian's own python3 (3.11.2, which has no tarfile extraction filter)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from ksplice_pkg.errors import InternalError
from ksplice_pkg.unpack import (
    ArchiveError,
    MemberKind,
    SafeTree,
    iter_cpio,
    iter_tar,
    unpack,
    unpack_tar,
)
from tests.unit.archives import (
    Q_CHAIN,
    Q_CHAIN_LATE,
    Box,
    Entry,
    cpio_bytes,
    cve_2025_4517,
    directory,
    file,
    hardlink,
    symlink,
    tar_bytes,
    write_tar,
)

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path / "box")


def _unpack(box: Box, entries: list[Entry], *, skip_absolute_links: bool = False) -> None:
    data = io.BytesIO(tar_bytes(entries, "gz"))
    unpack_tar(data, box.dest, "t.tar.gz", max_total=MB, skip_absolute_links=skip_absolute_links)


def _refused(box: Box, entries: list[Entry], *words: str) -> ArchiveError:
    with pytest.raises(ArchiveError) as e:
        _unpack(box, entries)
    assert e.value.message.startswith("t.tar.gz"), e.value.message
    for word in words:
        assert word in e.value.message, (word, e.value.message)
    assert e.value.hint
    box.untouched()
    return e.value


def _tree(dest: Path) -> dict[str, str]:
    out = {}
    for path in sorted(dest.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[str(path.relative_to(dest))] = f"-> {os.readlink(path)}"
        else:
            out[str(path.relative_to(dest))] = f"{stat.filemode(st.st_mode)} {st.st_nlink}"
    return out


def test_a_real_layout_unpacks_with_normal_modes(box: Box) -> None:
    entries = [
        directory("./"),  # what every .deb starts with
        file("./usr/bin/tool", b"#!/bin/sh\n", mode=0o4711),  # setuid dropped
        file("usr/share/doc/x", b"doc", mode=0o600),
        file("usr/lib/modules/r/kernel/a.ko", b"ko"),
        symlink("usr/lib/modules/r/source", "../../../../usr/src/linux"),  # dangling, inside
        symlink("usr/bin/alias", "tool"),
        hardlink("usr/bin/same", "./usr/bin/tool"),
        # Members whose directories come later (or never) as entries of their own.
        file("late/dir/f", b"f"),
        directory("late/dir"),
        symlink("usr/lib/modules/r/build", "/usr/src/linux-headers-r"),
    ]
    old = os.umask(0o077)
    try:
        _unpack(box, entries, skip_absolute_links=True)
    finally:
        os.umask(old)
    assert _tree(box.dest) == {
        "late": "drwxr-xr-x 3",
        "late/dir": "drwxr-xr-x 2",
        "late/dir/f": "-rw-r--r-- 1",
        "usr": "drwxr-xr-x 5",
        "usr/bin": "drwxr-xr-x 2",
        "usr/bin/alias": "-> tool",
        "usr/bin/same": "-rwxr-xr-x 2",
        "usr/bin/tool": "-rwxr-xr-x 2",
        "usr/lib": "drwxr-xr-x 3",
        "usr/lib/modules": "drwxr-xr-x 3",
        "usr/lib/modules/r": "drwxr-xr-x 3",
        "usr/lib/modules/r/kernel": "drwxr-xr-x 2",
        "usr/lib/modules/r/kernel/a.ko": "-rw-r--r-- 1",
        "usr/lib/modules/r/source": "-> ../../../../usr/src/linux",
        "usr/share": "drwxr-xr-x 3",
        "usr/share/doc": "drwxr-xr-x 2",
        "usr/share/doc/x": "-rw-r--r-- 1",
    }
    assert (box.dest / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert (box.dest / "usr/bin/tool").stat().st_mtime == 1_700_000_000
    box.untouched()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../sentinel/evil", "'..'"),
        ("a/../../sentinel/evil", "'..'"),
        ("./../sentinel/evil", "'..'"),
        ("/tmp/evil", "absolute"),
        ("", "empty"),
        ("a\nb", "control character"),
        ("a\x1b[2Jb", "control character"),
        ("n" * 256, "longer than 255"),
        ("a/" * 2048 + "b", "4096 bytes"),
    ],
)
def test_bad_names_are_refused(box: Box, name: str, why: str) -> None:
    _refused(box, [file("ok"), file(name)], why)


def test_an_empty_name_that_is_not_the_root_directory_is_refused(box: Box) -> None:
    _refused(box, [symlink("./", "x")], "empty name")


def test_q_chain_is_refused_before_anything_goes_through_it(box: Box) -> None:
    _refused(box, Q_CHAIN, "'x'", "q/q/q/../..", "leads out")


def test_q_chain_made_before_q_is_refused_when_q_appears(box: Box) -> None:
    # x alone is harmless (q/q/q/../.. is inside while q does not exist): q makes it escape.
    _refused(box, Q_CHAIN_LATE, "'x'", "once 'q' is a symlink")


def test_an_escaping_link_nobody_writes_through_is_refused_too(box: Box) -> None:
    # Whoever later reads the tree (kbuild, a copy) would follow it.
    _refused(box, Q_CHAIN_LATE[:2], "'x'", "leads out")


@pytest.mark.parametrize("through_short_links", [True, False])
def test_cve_2025_4517_path_max_chain_is_refused(box: Box, through_short_links: bool) -> None:
    entries = cve_2025_4517(through_short_links=through_short_links)
    error = _refused(box, entries)
    assert ("written through 'a'" if through_short_links else "4096 bytes") in error.message


def test_path_max_chain_resolved_one_component_at_a_time(box: Box) -> None:
    # The same chain one level shorter, every link at its real path: the names fit PATH_MAX,
    # so only resolving through the links (not a lexical or realpath view) sees `escape` leave.
    comp, entries, path = "d" * 247, [], ""
    for step in "abcdefghijklmno":
        entries += [directory(path + comp), symlink(path + step, comp)]
        path += comp + "/"
    entries += [
        symlink(path + "l" * 200, "../" * 15),
        symlink("escape", "/".join("abcdefghijklmno") + "/" + "l" * 200 + "/../sentinel"),
        file("escape/evil"),
    ]
    _refused(box, entries, "'escape'", "leads out")


def test_symlink_loop_is_refused(box: Box) -> None:
    _refused(box, [symlink("a", "b"), symlink("b", "a")], "loop")


@pytest.mark.parametrize(
    "entries",
    [
        [file("f"), symlink("q", "."), hardlink("h", "q/q/f")],  # through a symlink chain
        [symlink("q", "."), file("q/f")],  # a file through a symlink
        [hardlink("h", "../sentinel/file")],
        [hardlink("h", "/etc/passwd")],
        [hardlink("h", "missing")],
        [symlink("s", "f"), hardlink("h", "s")],  # a link to a symlink is not to a file
        [directory("d"), hardlink("h", "d")],
    ],
)
def test_hard_links_only_to_files_unpacked_before(box: Box, entries: list[Entry]) -> None:
    _refused(box, entries, "'h'" if entries[-1].name == "h" else "'q/f'")


@pytest.mark.parametrize(
    "entries",
    [
        [file("f", b"1"), file("f", b"2")],
        [file("f"), symlink("f", "../sentinel/file")],
        [symlink("f", "g"), file("f")],
        [directory("d"), file("d")],
        [file("d"), directory("d")],
        [file("d"), file("d/x")],
    ],
)
def test_no_member_replaces_another(box: Box, entries: list[Entry]) -> None:
    _refused(box, entries)
    assert (box.dest / entries[0].name).exists() or (box.dest / entries[0].name).is_symlink()


@pytest.mark.parametrize(
    ("planted", "member"),
    [
        ("link", "link/evil"),  # a directory symlink left in dest: written through
        ("link", "link"),  # a symlink to a file outside: opened and written through
        ("file", "file"),  # a file left in dest: replaced
    ],
)
def test_what_dest_held_before_is_never_written_through(
    box: Box, planted: str, member: str
) -> None:
    if planted == "link":
        (box.dest / "link").symlink_to(box.sentinel / "file" if member == "link" else box.sentinel)
    else:
        (box.dest / "file").write_text("mine\n")
    _refused(box, [file(member, b"evil")])
    if planted == "file":
        assert (box.dest / "file").read_text() == "mine\n"


def test_absolute_symlink_refused_unless_left_out(box: Box) -> None:
    _refused(box, [symlink("build", "/usr/src/linux")], "absolute")
    _unpack(box, [symlink("build", "/usr/src/linux")], skip_absolute_links=True)
    assert list(box.dest.iterdir()) == []


@pytest.mark.parametrize(("kind", "what"), [("chardev", "character device"), ("fifo", "FIFO")])
def test_devices_and_fifos_are_refused(box: Box, kind: str, what: str) -> None:
    _refused(box, [Entry("dev/null", kind)], "'dev/null'", what)


def test_a_gzip_bomb_is_refused_from_its_header(box: Box) -> None:
    bomb = tar_bytes([file("zeros", b"\0" * (8 * MB))], "gz")
    assert len(bomb) < 64 << 10
    with pytest.raises(ArchiveError, match="'zeros' takes its files past 1048576 bytes"):
        unpack_tar(io.BytesIO(bomb), box.dest, "bomb.tar.gz", max_total=MB)
    assert list(box.dest.iterdir()) == []
    box.untouched()


def test_the_total_of_the_files_is_capped(box: Box) -> None:
    entries = [file("a", b"a" * (600 << 10)), file("b", b"b" * (600 << 10))]
    _refused(box, entries, "'b'", "past 1048576 bytes")


def test_a_huge_header_is_refused_before_it_is_read_whole(box: Box) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.pax_headers = {"comment": "x" * (4 * MB)}
        tar.addfile(info, io.BytesIO())
    with pytest.raises(ArchiveError, match="headers are longer"):
        unpack_tar(io.BytesIO(buf.getvalue()), box.dest, "pax.tar.gz", max_total=64 * MB)
    box.untouched()


def test_too_many_members(box: Box) -> None:
    data = tar_bytes([file(f"f{i}") for i in range(11)])
    with pytest.raises(ArchiveError, match="more than 10 members"):
        unpack_tar(io.BytesIO(data), box.dest, "many.tar", max_total=MB, max_members=10)
    box.untouched()


@pytest.mark.parametrize("compression", ["gz", "xz", "bz2", ""])
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_tarballs_are_unreadable_not_a_traceback(
    tmp_path: Path, compression: str, keep: float
) -> None:
    entries = [file(f"f{i}", os.urandom(20_000)) for i in range(5)]
    data = tar_bytes(entries, compression)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: int(len(data) * keep)])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError) as e:
        unpack_tar(cut, dest, str(cut), max_total=MB)
    assert "not a readable tarball" in e.value.message or "cut short" in e.value.message
    assert str(cut) in e.value.message


def test_a_tarball_cut_or_damaged_between_members_is_unreadable(tmp_path: Path) -> None:
    # tarfile itself ends such an archive quietly after the members before the cut.
    data = tar_bytes([file(f"f{i}", b"x" * 1000) for i in range(3)])
    member = 512 + 1024
    damaged = data[:member] + b"garbage!" + data[member + 8 :]
    for torn, why in ((data[: 2 * member], "end-of-archive marker"), (damaged, "damaged header")):
        with pytest.raises(ArchiveError, match=rf"t\.tar: not a readable tarball: .*{why}"):
            list(iter_tar(io.BytesIO(torn), "t.tar", max_total=MB))


def test_garbage_is_not_a_tarball(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"x\.tar: not a readable tarball"):
        list(iter_tar(io.BytesIO(b"\x1f\x8bnot gzip at all"), "x.tar", max_total=MB))
    with pytest.raises(ArchiveError, match="zstd"):
        list(iter_tar(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 600), "x.tar.zst", max_total=MB))
    with pytest.raises(ArchiveError, match=r"missing\.tar: not a readable"):
        list(iter_tar(tmp_path / "missing.tar", "missing.tar", max_total=MB))


def test_member_data_is_read_while_iterating_only() -> None:
    data = tar_bytes([file("a", b"A" * 5000), file("b", b"B")])
    members = iter_tar(io.BytesIO(data), "t.tar", max_total=MB)
    first = next(members)
    assert (first.name, first.kind, first.size) == ("a", MemberKind.FILE, 5000)
    assert first.open().read(10) == b"A" * 10
    second = next(members)  # the rest of a is skipped
    assert second.open().read() == b"B"
    with pytest.raises(InternalError):
        first.open().read()
    assert list(members) == []


# --- cpio ---------------------------------------------------------------------------------


def _unpack_cpio(box: Box, entries: list[Entry]) -> None:
    members = iter_cpio(io.BytesIO(cpio_bytes(entries)), "p.cpio", max_total=MB)
    unpack(members, box.dest, "p.cpio", max_total=MB)


def test_cpio_files_links_and_hard_links(box: Box) -> None:
    entries = [
        directory("./usr"),
        file("./usr/a", b"data-a", mode=0o755),
        hardlink("./usr/b", "./usr/a"),  # rpm: the data comes with this last name
        symlink("./usr/l", "a"),
        file("./usr/empty", b""),
    ]
    _unpack_cpio(box, entries)
    assert _tree(box.dest) == {
        "usr": "drwxr-xr-x 2",
        "usr/a": "-rwxr-xr-x 2",
        "usr/b": "-rwxr-xr-x 2",
        "usr/empty": "-rw-r--r-- 1",
        "usr/l": "-> a",
    }
    assert (box.dest / "usr/a").read_bytes() == b"data-a"
    assert (box.dest / "usr/a").stat().st_ino == (box.dest / "usr/b").stat().st_ino
    box.untouched()


def test_cpio_members_are_checked_as_tar_members(box: Box) -> None:
    members = iter_cpio(io.BytesIO(cpio_bytes(Q_CHAIN)), "p", max_total=MB)
    kinds = [(m.name, m.kind) for m in members]
    assert kinds[:2] == [("q", MemberKind.SYMLINK), ("x", MemberKind.SYMLINK)]
    for entries in (Q_CHAIN, Q_CHAIN_LATE, [file("../sentinel/evil")], [Entry("dev", "chardev")]):
        with pytest.raises(ArchiveError, match=r"p\.cpio: member"):
            _unpack_cpio(box, entries)
        box.untouched()


def test_truncated_cpio(tmp_path: Path) -> None:
    data = cpio_bytes([file("a", b"x" * 1000), file("b", b"y")])
    for cut in (50, 200, 700, len(data) - 4):
        with pytest.raises(ArchiveError, match=r"not a readable cpio archive|cut short"):
            list(m.open().read() for m in iter_cpio(io.BytesIO(data[:cut]), "p", max_total=MB))


def test_cpio_name_size_is_checked_before_reading_it() -> None:
    header = b"070701" + b"%08X" % 1 + b"00008000" + b"0" * 72 + b"FFFFFFFF" + b"0" * 8
    with pytest.raises(ArchiveError, match="name of 4294967294 bytes"):
        list(iter_cpio(io.BytesIO(header), "p", max_total=MB))


# --- SafeTree directly --------------------------------------------------------------------


def test_safe_tree_checks_what_it_is_given(box: Box) -> None:
    tree = SafeTree(box.dest, "direct", max_total=10)
    tree.add_file("a", io.BytesIO(b"12345"), 5, 0o644)
    with pytest.raises(ArchiveError, match="cut short"):
        tree.add_file("b", io.BytesIO(b"1"), 3, 0o644)
    with pytest.raises(ArchiveError, match="more than its 1 bytes"):
        tree.add_file("c", io.BytesIO(b"12"), 1, 0o644)
    with pytest.raises(ArchiveError, match="past 10 bytes"):
        tree.add_file("d", io.BytesIO(b"x" * 20), 20, 0o644)
    with pytest.raises(ArchiveError, match=r"'\.\.'"):
        tree.add_symlink("../s", "a")
    box.untouched()


# --- Debian's own Python ----------------------------------------------------------------------

DEBIAN_PYTHON = Path("/usr/bin/python3")
PROBE = """
import json, sys, tarfile
from pathlib import Path
from ksplice_pkg.unpack import ArchiveError, unpack_tar
where = Path(sys.argv[1])
out = {"version": list(sys.version_info[:3]), "data_filter": hasattr(tarfile, "data_filter")}
for name in ("benign", "hostile", "cve"):
    dest = where / name
    dest.mkdir()
    try:
        unpack_tar(where / f"{name}.tar.gz", dest, name, max_total=1 << 20)
        out[name] = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    except ArchiveError as e:
        out[name] = "refused: " + e.message
print(json.dumps(out))
"""


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="Debian's python3 is not installed")
def test_under_debians_own_python(tmp_path: Path) -> None:
    box = Box(tmp_path / "box")
    work = box.dest
    write_tar(work / "benign.tar.gz", [file("a/b", b"x"), symlink("a/l", "b")])
    write_tar(work / "hostile.tar.gz", Q_CHAIN_LATE)
    write_tar(work / "cve.tar.gz", cve_2025_4517())
    proc = subprocess.run(
        [DEBIAN_PYTHON, "-c", PROBE, work],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout)
    assert out["benign"] == ["a", "a/b", "a/l"]
    assert out["hostile"].startswith("refused: hostile: member 'x'")
    assert out["cve"].startswith("refused: cve: member")
    if out["version"] == [3, 11, 2]:
        assert out["data_filter"] is False
    box.untouched()
