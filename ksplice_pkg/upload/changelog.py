"""What an upload says it changes: the changelog entries between the two source versions, the
CVE ids they name, and which changed files a CVE can be tied to without guessing.

Where the changelog is, by the form KERNEL_SOURCE takes:
- a `.dsc`: debian/changelog of its unpacked tree (dpkg-source keeps debian/), else of the
  debian tarball beside the .dsc; its debian/patches tell which patch fixes which CVE;
- a `linux-source-X.Y` .deb: usr/share/doc/linux-source-X.Y/changelog.Debian.gz, read from the
  .deb (the tree inside it has no debian/);
- a `.src.rpm`: the %changelog of its spec;
- a tree: its debian/changelog when it has one (and debian/patches with it), else none;
- a `linux-source-X.Y.tar.*`: none.

Debian's kernel changelogs name CVE ids but no commit ids: an upstream stable change is a line
`    - ext4: fix foo in ext4_bar() (CVE-2025-1234)` under `  * New upstream stable update:`. Such
a line can be tied to the tree only through what its subject names (a function), and only when
the diff changes that function (a hunk is in it) in exactly one file; everything else stays the
upload's, with the mapping unknown.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ksplice_pkg.distro.archive import unpack_deb, unpack_rpm, unpack_tar
from ksplice_pkg.distro.srcpkg import KernelSource, SourceKind, identify
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import CHANGELOG_LINE_MAX

# A changelog is text a person wrote: Debian's kernel changelog.Debian.gz is 5 MB unpacked
# (63 000 lines since 2.6.32). A file far beyond that is not one; reading stops there.
MAX_CHANGELOG = 64 << 20
# One patch of debian/patches; the largest real ones (the -rt series, aufs) are a few MB.
MAX_PATCH = 32 << 20

# A CVE id inside free text: not the tail of a longer token, all its digits.
_CVE_IN_TEXT = re.compile(r"(?<![\w-])CVE-[0-9]{4}-[0-9]{4,19}(?![0-9])")
# "ext4_foo()" or "do_tcp_getsockopt(TCP_CC_INFO)" in a subject: a C identifier followed by
# parentheses empty or around one word. Not "->query_interfaces()" or ".probe_new()": those
# name a member of an ops table, which many functions fill.
_FUNCTION_IN_SUBJECT = re.compile(
    r"(?<![\w.>-])([A-Za-z_][A-Za-z0-9_]*)\((?:[A-Za-z_][A-Za-z0-9_]*)?\)"
)
# Words that take parentheses in C without being functions.
_NOT_FUNCTIONS = frozenset(
    {"sizeof", "typeof", "__typeof__", "alignof", "_Alignof", "if", "for", "while", "switch",
     "return", "defined"}
)  # fmt: skip
# A patch file named in a changelog line: debian/patches/bugfix/all/x.patch or bugfix/all/x.patch.
_PATCH_IN_TEXT = re.compile(
    r"(?<![\w./-])((?:debian/patches/)?[A-Za-z0-9][\w.+-]*(?:/[\w.+-]+)*\.patch)\b"
)
# A Debian changelog item: "  * text", "    - text", "      + text".
_BULLET = re.compile(r"( *)([*+-]) +(\S.*)")
# "  [ Salvatore Bonaccorso ]": who made the items below, in a changelog of several people.
_MAINTAINER = re.compile(r" *\[ [^]]* \]\s*")
# What a subject ends with that is not the change: (CVE-...), (Closes: #1234), (LP: #1).
_TRAILER = re.compile(r"\s*\((?:CVE-|Closes:|LP:)[^()]*\)\s*$")
# "[x86] ", "[arm64,armhf] ": the architectures a Debian item concerns.
_ARCH_TAG = re.compile(r"^\[[\w ,.-]+\]\s*")
# An RPM %changelog entry's head: "* Tue Apr 30 2024 Name <mail> [5.14.0-427.16.1.el9_4]" or
# "... <mail> - 5.14.0-427.16.1.el9_4".
_RPM_HEAD = re.compile(r"\*\s+\w{3}\s+\w{3}\s+\d{1,2}\s+\d{4}\s+(.*)")
_RPM_VERSION = re.compile(r"(?:\[([^]\s]+)\]|\s-\s+([^\s]+))\s*$")


class ChangelogError(KspliceError):
    """A changelog, spec or patch of the upload that cannot be read."""


@dataclass(frozen=True)
class ChangelogEntry:
    version: str  # the upload that carries it, e.g. "6.1.192-3"
    line: str  # one printable line (<= CHANGELOG_LINE_MAX): the change as the changelog words it
    cves: tuple[str, ...]  # CVE ids it names
    functions: tuple[str, ...]  # function names its subject names ("ext4_foo" of "ext4_foo()")
    patch_files: tuple[str, ...]  # debian/patches/... files it names


@dataclass(frozen=True)
class UploadLog:
    old_version: str | None
    new_version: str | None
    entries: tuple[ChangelogEntry, ...]  # newer than old_version, up to new_version; newest first
    origin: str  # "debian/changelog", "changelog.Debian.gz", "%changelog" or "" (none found)
    # tree path -> CVE ids, from the debian/patches the new upload adds: those named in the
    # patch's header, or in a changelog entry that names the patch.
    patch_cves: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def cves(self) -> tuple[str, ...]:
        """Every CVE id the upload names, sorted, once each."""
        named = {cve for entry in self.entries for cve in entry.cves}
        named.update(cve for cves in self.patch_cves.values() for cve in cves)
        return tuple(sorted(named))


def read_upload_log(
    old_source: Path, old_tree: Path, new_source: Path, new_tree: Path
) -> UploadLog:
    """The changelog entries of the new upload since the old one, and the CVEs of its patches.

    The sources are KERNEL_SOURCE as given; the trees are what prepare_source made of them.
    """
    old, new = identify(old_source), identify(new_source)
    with tempfile.TemporaryDirectory(prefix="ksplice-changelog-") as tmp:
        scratch = Path(tmp)
        old_debian = _debian_dir(old, old_tree, scratch / "old")
        new_debian = _debian_dir(new, new_tree, scratch / "new")
        old_version = _source_version(old, old_debian)
        new_version = _source_version(new, new_debian)
        if new.kind is SourceKind.SRPM:
            text = _spec_changelog(new.path, scratch / "spec")
            origin = "%changelog" if text is not None else ""
            entries = _rpm_entries(text or "", old_version, new_version)
        else:
            text, origin = _debian_changelog(new, new_debian, scratch / "doc")
            if text and new_version is None:
                new_version = debian_top_version(text)
            entries = _debian_entries(text, old_version, new_version) if text else []
        patch_cves = _patch_cves(old_debian, new_debian, entries)
    return UploadLog(old_version, new_version, tuple(entries), origin, patch_cves)


def debian_changelog(source: Path, tree: Path) -> str | None:
    """The Debian changelog of a source, where read_upload_log reads it: a .dsc's or a tree's
    debian/changelog, a linux-source .deb's changelog.Debian.gz. None: it has none (a tarball,
    a tree without debian/, a source RPM)."""
    kernel_source = identify(source)
    with tempfile.TemporaryDirectory(prefix="ksplice-changelog-") as tmp:
        debian = _debian_dir(kernel_source, tree, Path(tmp) / "debian")
        text, _ = _debian_changelog(kernel_source, debian, Path(tmp) / "doc")
    return text


def tie_cves(log: UploadLog, diffs: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """CVE id -> the changed tree paths that fix it, where the inputs say so for certain.

    `diffs` maps each changed tree path to its unified diff (old -> new). A CVE is tied to a
    path when a patch the upload adds names it and touches the path, or when a changelog entry
    names it and a function its subject names is changed in exactly one changed file (see
    changed_functions). CVEs tied to nothing are absent: their mapping is unknown.
    """
    tied: dict[str, set[str]] = {}
    for path, cves in log.patch_cves.items():
        if path in diffs:
            for cve in cves:
                tied.setdefault(cve, set()).add(path)
    wanted = {fn for entry in log.entries if entry.cves for fn in entry.functions}
    where: dict[str, set[str]] = {}
    for path, diff in diffs.items():
        for name in changed_functions(diff) & wanted:
            where.setdefault(name, set()).add(path)
    for entry in log.entries:
        for fn in entry.functions:
            paths = where.get(fn, set())
            if len(paths) == 1:
                for cve in entry.cves:
                    tied.setdefault(cve, set()).update(paths)
    return {cve: frozenset(paths) for cve, paths in sorted(tied.items())}


# A hunk's header: where it starts and how many lines it has on each side.
_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# The function a line of C starts, in the kernel's style: at column 0, the last identifier
# before the first "(" ("static int __init foo(void)", "int foo(struct x *a,"). A call is
# indented; a macro at column 0 (EXPORT_SYMBOL(foo)) names the macro, which no subject names.
_DEFINITION = re.compile(r"(?:[A-Za-z_][^(;=]*[\s*])?([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def changed_functions(diff: str) -> set[str]:
    """The functions a file's unified diff changes: for each changed line, the function whose
    definition line comes last before it in its hunk (the line itself, a context or changed
    line at column 0), or else the one its hunk header names (`@@ ... @@ int foo(...)`, as
    diff -p and git print it). A name only called on a changed line is not counted: a subject's
    "missing NULL check for alloc_workqueue()" is fixed where alloc_workqueue is called, and the
    other files that call it on changed lines say nothing about that fix.
    """
    found: set[str] = set()
    enclosing: str | None = None
    old_left = new_left = 0  # lines of the current hunk still to come, by its header's counts
    # Lines end at "\n" only: str.splitlines also breaks at a form feed, which C sources hold.
    for line in diff.split("\n"):
        if old_left <= 0 and new_left <= 0:
            if header := _HUNK_HEADER.match(line):
                old_left, new_left = _count(header.group(2)), _count(header.group(4))
                context = _DEFINITION.match(line[header.end() :].strip())
                enclosing = context.group(1) if context else None
            continue  # a file header line, or what a tool wrote between files
        if line.startswith("\\"):  # "\ No newline at end of file"
            continue
        kind = line[:1] or " "  # a blank context line whose space was stripped
        old_left -= kind in (" ", "-")
        new_left -= kind in (" ", "+")
        if definition := _DEFINITION.match(line[1:]):
            enclosing = definition.group(1)
        if kind in ("+", "-") and enclosing is not None:
            found.add(enclosing)
        if line[1:2] == "}":  # a function's end at column 0: what follows is outside it
            enclosing = None
    return found


def _count(group: str | None) -> int:
    return 1 if group is None else int(group)  # "@@ -5 +5 @@": one line


# What diff -p and git take for the line a function starts on: a letter, "_" or "$" first;
# not a goto label, which kernel style also puts at column 0 ("out_free:").
_FUNCTION_LINE = re.compile(r"(?![A-Za-z_][A-Za-z0-9_]*:\s*(?:$|/[*/]))[A-Za-z_$]")


def with_function_context(diff: str, old: str) -> str:
    """`diff` (one file's, old -> new) with each bare hunk header followed by the last line
    before the hunk that starts a function, as diff -p and git print it: difflib prints none,
    and without it only the hunks that show their function's definition line tell which
    function they change (on 6.1.190-1 -> 6.1.192-1, 30 CVEs tie without it, 150 with)."""
    old_lines = old.split("\n")  # not splitlines: a form feed in C would shift the numbers
    out = []
    for line in diff.split("\n"):
        header = _HUNK_HEADER.match(line)
        start = None
        if header and not line[header.end() :].strip():
            before = old_lines[: max(int(header.group(1)) - 1, 0)]
            start = next((text for text in reversed(before) if _FUNCTION_LINE.match(text)), None)
        if header and start is not None:
            out.append(f"{line[: header.end()]} {printable_line(start, 200)}")
        else:
            out.append(line)
    return "\n".join(out)


# --- where the changelog is --------------------------------------------------------------------


def _debian_dir(source: KernelSource, tree: Path, scratch: Path) -> Path | None:
    """The debian/ directory of a .dsc or a tree, when it has a changelog: the tree's own, or
    (for a .dsc whose tree has none) debian/changelog and debian/patches from its debian
    tarball."""
    if source.kind not in (SourceKind.TREE, SourceKind.DSC):
        return None
    if (tree / "debian" / "changelog").is_file():
        return tree / "debian"
    if source.kind is SourceKind.TREE:
        return None
    tarball = _debian_tarball(source.path)
    if tarball is None:
        return None
    unpack_tar(
        tarball,
        scratch,
        wanted=lambda name: name == "debian/changelog" or name.startswith("debian/patches/"),
    )
    found = scratch / "debian"
    return found if (found / "changelog").is_file() else None


def _debian_tarball(dsc_path: Path) -> Path | None:
    from debian.deb822 import Dsc

    with dsc_path.open("rb") as f:
        dsc = Dsc(f)
    for entry in dsc.get("Files") or []:
        name = entry["name"]
        # prepare_source checked the .dsc's files; the name is one of its, beside it.
        if isinstance(name, str) and "/" not in name and re.search(r"\.debian\.tar\.\w+$", name):
            return dsc_path.parent / name
    return None


def _debian_changelog(
    source: KernelSource, debian: Path | None, scratch: Path
) -> tuple[str | None, str]:
    if debian is not None:
        return _read_text(debian / "changelog", MAX_CHANGELOG, debian), "debian/changelog"
    if source.kind is SourceKind.SOURCE_DEB:
        unpack_deb(
            source.path,
            scratch,
            wanted=lambda name: (
                re.fullmatch(r"usr/share/doc/linux-source-[^/]+/changelog\.Debian\.gz", name)
                is not None
            ),
        )
        found = sorted(scratch.glob("usr/share/doc/linux-source-*/changelog.Debian.gz"))
        if found:
            return _read_gzip(found[0]), "changelog.Debian.gz"
    return None, ""


def _spec_changelog(srpm: Path, scratch: Path) -> str | None:
    unpack_rpm(srpm, scratch, wanted=lambda name: "/" not in name and name.endswith(".spec"))
    specs = sorted(scratch.glob("*.spec"))
    if len(specs) != 1:
        return None
    text = _read_text(specs[0], MAX_CHANGELOG)
    head = re.search(r"^%changelog[ \t]*$", text, re.M)
    return text[head.end() :] if head else None


def _source_version(source: KernelSource, debian: Path | None) -> str | None:
    """The distro version of a source: the package's own field, or a tree's changelog top."""
    if source.kind in (SourceKind.DSC, SourceKind.SOURCE_DEB, SourceKind.SRPM):
        return source.version
    if debian is not None:
        return debian_top_version(_read_text(debian / "changelog", MAX_CHANGELOG, debian))
    return None


def _read_text(path: Path, limit: int, within: Path | None = None) -> str:
    """The text of a changelog, spec, series or patch; with `within`, only when the file is
    there, not reached through a link: a source package's debian/changelog that is a symlink
    to /etc/shadow must not end up in a manifest."""
    if within is not None and not path.resolve().is_relative_to(within.resolve()):
        raise ChangelogError(
            f"{path} leads out of {within}",
            hint="the source package is damaged or hostile: a link in debian/",
        )
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ChangelogError(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > limit:
        raise ChangelogError(
            f"{path} is larger than {limit >> 20} MiB: not a changelog or patch",
            hint="the source package is damaged or not a kernel's",
        )
    return data.decode("utf-8", errors="replace")


def _read_gzip(path: Path) -> str:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_CHANGELOG + 1)
    except (OSError, EOFError) as e:
        raise ChangelogError(
            f"cannot read the changelog {path.name} of the linux-source package: {e}",
            hint="the package is damaged: download it again",
        ) from e
    if len(data) > MAX_CHANGELOG:
        raise ChangelogError(f"{path.name} unpacks to more than {MAX_CHANGELOG >> 20} MiB")
    return data.decode("utf-8", errors="replace")


# --- Debian changelogs -------------------------------------------------------------------------


def debian_top_version(text: str) -> str | None:
    """The version of a Debian changelog's newest entry."""
    from debian.changelog import Changelog

    log = Changelog(text, max_blocks=1, strict=False)
    return str(log[0].version) if len(log) and log[0].version else None


def _debian_entries(text: str, old: str | None, new: str | None) -> list[ChangelogEntry]:
    """The entries of the uploads after `old` up to `new`. Without the old version, where the
    new upload's entries end is not known: its own block only."""
    from debian.changelog import Changelog
    from debian.debian_support import Version

    try:
        newest = Version(new) if new else None
        oldest = Version(old) if old else None
    except ValueError:
        return []
    blocks = [b for b in Changelog(text, strict=False) if b.version is not None]
    if oldest is None:
        chosen = [b for b in blocks if b.version == newest][:1] if newest else blocks[:1]
    else:
        chosen = [
            b for b in blocks if oldest < b.version and (newest is None or b.version <= newest)
        ]
    return [entry for b in chosen for entry in _entries(str(b.version), _items(b.changes()))]


@dataclass
class _Item:
    indent: int
    column: int  # where its text starts: deeper lines continue it
    parts: list[str]
    children: list[_Item] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())

    def descendants(self) -> Iterator[_Item]:
        for child in self.children:
            yield child
            yield from child.descendants()


def _items(lines: Iterable[str]) -> list[_Item]:
    """The bulleted items of a changelog block, each with its wrapped lines joined."""
    items: list[_Item] = []
    open_items: list[_Item] = []
    for raw in lines:
        line = raw.rstrip()
        if not line.strip():
            continue
        if _MAINTAINER.fullmatch(line):
            open_items.clear()
            continue
        if bullet := _BULLET.fullmatch(line):
            indent = len(bullet.group(1))
            while open_items and open_items[-1].indent >= indent:
                open_items.pop()
            item = _Item(indent, bullet.start(3), [bullet.group(3)])
            if open_items:
                open_items[-1].children.append(item)
            items.append(item)
            open_items.append(item)
            continue
        indent = len(line) - len(line.lstrip(" "))
        while open_items and open_items[-1].column > indent:
            open_items.pop()
        if open_items:
            open_items[-1].parts.append(line.strip())
    return items


def _entries(version: str, items: Iterable[_Item]) -> Iterator[ChangelogEntry]:
    """One entry per change: an item with no items under it, or a heading that names a CVE
    (`* [x86] fix foo (CVE-...):` over the patches that make the fix, which it names so)."""
    for item in items:
        text = item.text
        cves = _ordered(_CVE_IN_TEXT.findall(text))
        if item.children and not cves:
            continue
        below = " ".join(child.text for child in item.descendants())
        yield _entry(version, text, cves, patches_text=f"{text} {below}")


def _entry(
    version: str, text: str, cves: tuple[str, ...], patches_text: str | None = None
) -> ChangelogEntry:
    subject = _ARCH_TAG.sub("", text)
    while (trimmed := _TRAILER.sub("", subject)) != subject:
        subject = trimmed
    functions = _ordered(
        name for name in _FUNCTION_IN_SUBJECT.findall(subject) if name not in _NOT_FUNCTIONS
    )
    patches = _ordered(
        name if name.startswith("debian/patches/") else f"debian/patches/{name}"
        for name in _PATCH_IN_TEXT.findall(text if patches_text is None else patches_text)
        if "/" in name  # a bare file name does not say which directory of debian/patches
    )
    return ChangelogEntry(version, printable_line(text), cves, functions, patches)


def printable_line(text: str, limit: int = CHANGELOG_LINE_MAX) -> str:
    """text as one printable line of at most `limit` characters."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


# --- RPM %changelog ----------------------------------------------------------------------------


def _rpm_entries(text: str, old: str | None, new: str | None) -> list[ChangelogEntry]:
    """The `- ` items of the %changelog entries after `old` up to `new` (newest first, as
    specs keep them). An entry whose head names no version belongs to the one above it."""
    entries: list[ChangelogEntry] = []
    version: str | None = None
    taking = False
    seen_first = False
    item: list[str] = []

    def flush() -> None:
        if item and taking and version is not None:
            joined = " ".join(" ".join(item).split())
            entries.append(_entry(version, joined, _ordered(_CVE_IN_TEXT.findall(joined))))
        item.clear()

    for line in text.splitlines():
        if head := _RPM_HEAD.match(line):
            flush()
            named = _RPM_VERSION.search(head.group(1))
            if named:
                version = named.group(1) or named.group(2)
                version = version.split(":", 1)[-1]  # an epoch is not part of what rpm -q shows
            if version is None:
                continue
            newer_than_new = new is not None and rpm_vercmp(version, new) > 0
            if old is None:
                # Without the old version: the new upload's own entry (the first).
                taking = not newer_than_new and not seen_first
            else:
                taking = not newer_than_new and rpm_vercmp(version, old) > 0
            if not newer_than_new:
                seen_first = True
            continue
        if line.startswith("- "):
            flush()
            item.append(line[2:])
        elif line.startswith((" ", "\t")) and item:
            item.append(line.strip())
        elif line.startswith("%"):  # a section after %changelog ends it
            break
    flush()
    return entries


def rpm_vercmp(a: str, b: str) -> int:
    """rpm's order of two versions (rpmvercmp): runs of digits compare as numbers and beat runs
    of letters, other characters only separate; `~` sorts before anything (a pre-release),
    `^` after the end but before anything more (a post-release snapshot)."""
    i = j = 0
    while True:
        while i < len(a) and not (a[i].isascii() and a[i].isalnum()) and a[i] not in "~^":
            i += 1
        while j < len(b) and not (b[j].isascii() and b[j].isalnum()) and b[j] not in "~^":
            j += 1
        for mark in "~^":
            at_a, at_b = a[i : i + 1] == mark, b[j : j + 1] == mark
            if at_a and at_b:
                i, j = i + 1, j + 1
            elif at_a or at_b:
                if mark == "~":
                    return -1 if at_a else 1
                # ^ is newer than the end of the other, older than anything more in it.
                if at_a:
                    return 1 if j == len(b) else -1
                return -1 if i == len(a) else 1
        if a[i : i + 1] in ("~", "^") or b[j : j + 1] in ("~", "^"):
            continue
        if i == len(a) or j == len(b):
            break
        kind = str.isdigit if a[i].isdigit() else str.isalpha
        x = re.match(r"[0-9]+" if kind is str.isdigit else r"[A-Za-z]+", a[i:])
        y = re.match(r"[0-9]+" if kind is str.isdigit else r"[A-Za-z]+", b[j:])
        assert x is not None  # a[i] is of the kind
        if y is None:  # a run of digits is newer than a run of letters
            return 1 if kind is str.isdigit else -1
        sx, sy = x.group(), y.group()
        i, j = i + len(sx), j + len(sy)
        if kind is str.isdigit:
            sx, sy = sx.lstrip("0"), sy.lstrip("0")
            if len(sx) != len(sy):
                return 1 if len(sx) > len(sy) else -1
        if sx != sy:
            return 1 if sx > sy else -1
    if i == len(a) and j == len(b):
        return 0
    return 1 if i < len(a) else -1


# --- debian/patches ----------------------------------------------------------------------------


def _patch_cves(
    old_debian: Path | None, new_debian: Path | None, entries: Iterable[ChangelogEntry]
) -> dict[str, tuple[str, ...]]:
    """tree path -> CVE ids, from the patches of the new upload's series that the old upload
    did not apply (or applied with other content). When the old side has no debian/patches
    (a linux-source .deb, a tarball), only the patches a changelog entry names count: a patch
    both sides apply would otherwise be taken for the new upload's."""
    if new_debian is None:
        return {}
    new_series = _series(new_debian / "patches")
    if not new_series:
        return {}
    old_series = _series(old_debian / "patches") if old_debian is not None else []
    named: dict[str, set[str]] = {}  # patch (relative to debian/patches) -> CVEs of its entries
    for entry in entries:
        for patch in entry.patch_files:
            named.setdefault(patch.removeprefix("debian/patches/"), set()).update(entry.cves)
    added: list[str] = []
    for patch in new_series:
        if old_series:
            if patch not in old_series or not _same_file(
                old_debian / "patches" / patch if old_debian else None,
                new_debian / "patches" / patch,
            ):
                added.append(patch)
        elif patch in named:
            added.append(patch)
    result: dict[str, set[str]] = {}
    for patch in added:
        path = new_debian / "patches" / patch
        if not path.is_file():
            continue
        header, touched = split_patch(_read_text(path, MAX_PATCH, new_debian / "patches"))
        cves = set(_CVE_IN_TEXT.findall(header)) | named.get(patch, set())
        for tree_path in touched:
            if cves:
                result.setdefault(tree_path, set()).update(cves)
    return {path: tuple(sorted(cves)) for path, cves in sorted(result.items())}


def _same_file(old: Path | None, new: Path) -> bool:
    return (
        old is not None and old.is_file() and new.is_file() and old.read_bytes() == new.read_bytes()
    )


def _series(patches: Path) -> list[str]:
    """The patches a quilt series applies, in order; names that would leave debian/patches
    are not patches of it."""
    series = patches / "series"
    if not series.is_file():
        return []
    names = []
    for line in _read_text(series, MAX_PATCH, patches).splitlines():
        name = line.split("#", 1)[0].strip().split(" ")[0] if line.strip() else ""
        if name and not name.startswith("/") and ".." not in name.split("/"):
            names.append(name)
    return names


def split_patch(text: str) -> tuple[str, list[str]]:
    """A patch's header (what precedes its first diff) and the tree paths it touches, as quilt
    applies it (-p1: the first component, a/ or b/, dropped)."""
    lines = text.split("\n")
    start = len(lines)
    for number, line in enumerate(lines):
        if line.startswith(("diff ", "Index: ")) or (
            line.startswith("--- ")
            and number + 1 < len(lines)
            and lines[number + 1].startswith("+++ ")
        ):
            start = number
            break
    touched: list[str] = []
    for number in range(start, len(lines) - 1):
        old, new = lines[number], lines[number + 1]
        if old.startswith("--- ") and new.startswith("+++ "):
            after, before = _patch_path(new[4:]), _patch_path(old[4:])
            path = after if after is not None else before
            if path is not None and path not in touched:
                touched.append(path)
    return "\n".join(lines[:start]), touched


def _patch_path(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null" or "/" not in name:
        return None
    path = name.split("/", 1)[1]
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts:
        return None
    return path
