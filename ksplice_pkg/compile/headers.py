"""Header changes without a full build: the units whose code a changed header really changes.

A full kernel build only to learn who includes a header costs a quarter of an hour on two
cores. Instead, in four narrowing steps, each a superset of the next:

1. the units the target's kbuild compiles (vmlinux and modules), from one dry run (`make -n`);
2. of those, the ones whose source includes the header, directly or through other headers,
   from the include directives of the tree's text (cached per tree);
3. of those, the ones that mention a definition the patch changes (a macro, an inline function,
   or a definition in another included header that uses one), by name;
4. of those, the ones whose preprocessed source differs before and after in code gcc emits:
   not only in declarations it drops because nothing in the unit refers to them (an unused
   inline helper, a prototype, a type; see `preprocessed`).

Only the last set is compiled on both sides. A changed struct or union layout is refused: a
livepatch cannot change the layout of data the running kernel already holds.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.compile.preprocessed import Difference, code_difference
from ksplice_pkg.errors import RefusedError
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.log import logger, step
from ksplice_pkg.run import run

# `make -n` prints each compile as `... -c -o fs/proc/cmdline.o /src/fs/proc/cmdline.c`.
COMPILE_LINE = re.compile(r" -c -o (\S+\.o) (\S+\.[cS])(?=\s|;|$)", re.MULTILINE)
# Objects compiled by `make vmlinux` that do not end up as code of the running kernel.
_NOT_VMLINUX = re.compile(
    r"^(arch/x86/(boot|realmode|purgatory|entry/vdso)/|scripts/|tools/|usr/|init/version)"
)
_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_UNITS_CACHE = ".ksplice-kernel-units.json"
_INCLUDES_CACHE = ".ksplice-includes.json"
_SKIPPED_DIRS = {".git", "Documentation", "tools", "samples", "scripts", "debian", "LICENSES"}


def kernel_units(tree: PreparedTree) -> dict[str, str]:
    """Each unit kbuild compiles for the kernel image and its modules, with its source file
    (relative to the tree)."""
    return _dry_run(tree).units


@dataclass(frozen=True)
class KernelBuild:
    """What the target's kbuild compiles, from one dry run: C units with their sources, the
    module each module unit is compiled for, and the assembly sources."""

    units: dict[str, str]  # unit (fs/ext4/inode.o) -> source (fs/ext4/inode.c)
    modules: dict[str, str]  # unit -> KBUILD_MODNAME, for units of loadable modules
    assembly: dict[str, str]  # unit -> .S source


def kernel_build(tree: PreparedTree) -> KernelBuild:
    return _dry_run(tree)


_MODNAME_ARG = re.compile(r"-DKBUILD_MODNAME='\"?([\w-]+)")


def _dry_run(tree: PreparedTree) -> KernelBuild:
    """Pretending autoconf.h is new (-W) makes the dry run list units that are already built
    too; its failure at vmlinux's link is expected (nothing was archived), and -k carries on to
    the modules: a header's users in modules must be found too."""
    cache = tree.objdir / _UNITS_CACHE
    stamp = (tree.objdir / ".ksplice-prepared").read_text()
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("stamp") == stamp and "modules" in data:
            return KernelBuild(data["units"], data["modules"], data["assembly"])
    with step("listing the units of the kernel and its modules (a dry run of kbuild)"):
        proc = run(
            [
                *tree.make_args(1),
                "-n",
                "-k",
                "-W",
                "include/generated/autoconf.h",
                "vmlinux",
                "modules",
            ],
            check=False,
            timeout=1800,
        )
    prefix = f"{tree.source}/"
    found = KernelBuild({}, {}, {})
    for line in proc.stdout.decode(errors="replace").splitlines():
        for obj, path in COMPILE_LINE.findall(line):
            if _NOT_VMLINUX.match(obj):
                continue
            src = path.removeprefix(prefix)
            (found.units if src.endswith(".c") else found.assembly)[obj] = src
            # kbuild compiles module code with -DMODULE and names the module it goes into.
            if " -DMODULE " in f" {line} " and (m := _MODNAME_ARG.search(line)):
                found.modules[obj] = m[1]
    if not found.units:
        raise RefusedError(
            "kbuild's dry run listed no unit: cannot find who includes the header",
            hint="run `ksplice-pkg create --prebuild` once, then the update again",
        )
    atomic_write(
        cache,
        json.dumps({"stamp": stamp, "units": found.units, "modules": found.modules,
                    "assembly": found.assembly}),
    )  # fmt: skip
    return found


@dataclass(frozen=True)
class IncludeIndex:
    """Who includes what in a source tree, read from its text: include spec -> includers."""

    by_spec: dict[str, list[str]]
    # header -> closure([header]): an upload's rounds ask it of the same headers for every
    # refused unit (a stable upload: hundreds of units times a hundred headers, each closure
    # thousands of files).
    _reach: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, tree: PreparedTree) -> IncludeIndex:
        cache = tree.objdir / _INCLUDES_CACHE
        if cache.is_file():
            return cls(json.loads(cache.read_text()))
        by_spec: dict[str, list[str]] = {}
        with step(f"indexing the include directives of {tree.source}"):
            for root, dirs, files in os.walk(tree.source):
                dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
                for name in files:
                    if not name.endswith((".c", ".h", ".S")):
                        continue
                    path = os.path.join(root, name)
                    rel = os.path.relpath(path, tree.source)
                    with open(path, "rb") as f:
                        text = f.read()
                    for quote, spec in _INCLUDE.findall(text):
                        key = spec.decode(errors="replace").strip()
                        if quote == b'"':
                            # A quoted include is first looked up beside the includer.
                            local = os.path.normpath(os.path.join(os.path.dirname(rel), key))
                            by_spec.setdefault(f"./{local}", []).append(rel)
                        by_spec.setdefault(key, []).append(rel)
        atomic_write(cache, json.dumps(by_spec))
        return cls(by_spec)

    def includers(self, header: str) -> set[str]:
        """Files that include `header` (a path relative to the tree) directly."""
        found = set(self.by_spec.get(f"./{header}", []))
        parts = header.split("/")
        # <linux/foo.h> from include/, <asm/foo.h> from arch/x86/include/, uapi alike: any
        # trailing part of the path of two components or more names it.
        for i in range(len(parts) - 1):
            found.update(self.by_spec.get("/".join(parts[i:]), []))
        # A bare "x86.h" that kbuild finds through the -I of an ancestor directory: kvm's
        # arch/x86/kvm/mmu/mmu.c includes arch/x86/kvm/x86.h so. Any includer below the
        # header's directory may mean it (one more candidate costs a judgement, one missed
        # an unpatched caller).
        below = header.rpartition("/")[0] + "/"
        found.update(f for f in self.by_spec.get(parts[-1], []) if f.startswith(below))
        return found

    def reach(self, header: str) -> frozenset[str]:
        """closure([header]), computed once."""
        if header not in self._reach:
            self._reach[header] = frozenset(self.closure([header]))
        return self._reach[header]

    def closure(self, headers: Iterable[str]) -> set[str]:
        """Every file that includes one of `headers`, directly or through other headers."""
        seen: set[str] = set()
        pending = list(headers)
        while pending:
            for includer in self.includers(pending.pop()):
                if includer not in seen:
                    seen.add(includer)
                    if includer.endswith(".h"):
                        pending.append(includer)
        return seen


@dataclass(frozen=True)
class Definition:
    kind: str  # "macro", "function", "struct", "union", "enum", "other"
    name: str
    first: int  # 1-based lines, inclusive
    last: int


def definitions(text: str) -> list[Definition]:
    """The top-level definitions of a header, with their line ranges: macros (with their
    continuation lines) and brace-delimited definitions (functions, struct/union/enum)."""
    found: list[Definition] = []
    lines = text.splitlines()
    depth = 0
    head: list[str] = []  # text since the last top-level `;` or `}`
    head_start = 1
    opened_at, header_text = 1, ""  # where the open top-level definition starts, its header
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        macro = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)", line) if depth == 0 else None
        if macro:
            last = i
            while lines[last].rstrip().endswith("\\") and last + 1 < len(lines):
                last += 1
            found.append(Definition("macro", macro[1], number, last + 1))
            i = last + 1
            head, head_start = [], i + 1
            continue
        if line.lstrip().startswith("#"):
            i += 1
            continue
        code = re.sub(r"//.*|/\*.*?\*/|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", " ", line)
        for ch in code:
            if ch == "{":
                if depth == 0:
                    opened_at = head_start if head else number
                    header_text = " ".join(head) + " " + code.split("{", 1)[0]
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    kind, name = _named(header_text)
                    found.append(Definition(kind, name, opened_at, number))
                    head, head_start = [], number + 1
            elif ch == ";" and depth == 0:
                head, head_start = [], number + 1
        if depth == 0 and code.strip() and not code.rstrip().endswith((";", "}")):
            if not head:
                head_start = number
            head.append(code)
        depth = max(depth, 0)
        i += 1
    return found


def _named(header: str) -> tuple[str, str]:
    m = re.search(r"\b(struct|union|enum)\s+([A-Za-z_]\w*)\s*$", header.strip())
    if m:
        return m[1], m[2]
    m = re.search(r"([A-Za-z_]\w*)\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*$", header.strip())
    if m:
        return "function", m[1]
    return "other", ""


def changed_names(path: str, pre: str, post: str) -> set[str]:
    """The names of `path` whose declarations the change between pre and post changes;
    refuses a changed struct or union layout, naming it.

    Both texts are cut into their top-level items: definitions (macros, functions, types,
    initialised data) and the declarations between them, each with the #if conditions around
    it. An item that is on one side only, by its tokens or its conditions, is changed, and so
    are the names it declares. So comments are no change (a reworded comment inside a struct,
    a comment line whose words would read as a declaration: "the order is then reversed;"),
    nor a definition that only moved among its neighbours, while one moved out of an #ifdef
    is. A changed #if condition changes the items of its group, not the options it tests: a
    unit testing the same CONFIG_ option itself is not affected by the header's test of it.
    """
    sides = [Counter(_items(_code(text))) for text in (pre, post)]
    names: set[str] = set()
    layouts: set[str] = set()
    for item in (sides[0] - sides[1]) + (sides[1] - sides[0]):
        if item.kind in ("struct", "union"):
            layouts.add(f"{item.kind} {item.name}")
        else:
            names |= item.names
    if layouts:
        raise RefusedError(
            f"the patch changes the layout of {', '.join(sorted(layouts))} in {path}",
            hint="a livepatch cannot change data structures the running kernel already holds; "
            "use a shadow variable for new fields",
        )
    return names - _C_WORDS


@dataclass(frozen=True)
class _Item:
    """A top-level definition or declaration of a header, as the comparison sees it."""

    kind: str  # a Definition's kind, or "declaration"
    name: str
    names: frozenset[str]  # what it declares
    text: str  # its #if conditions and tokens: two items are the same when these are


_CONDITIONAL = re.compile(r"\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b")
# A string or character literal (kept: "http://..." holds no comment), or a comment.
_COMMENT_OR_LITERAL = re.compile(
    r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.DOTALL
)
# The #line directives the after tree of an upload carries to keep line numbers: no change.
_LINE_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*line\b[^\n]*", re.MULTILINE)


def _code(text: str) -> str:
    """`text` with every comment and #line directive blanked, its line breaks kept."""
    text = _COMMENT_OR_LITERAL.sub(
        lambda m: m[0] if m[0][0] in "\"'" else re.sub(r"[^\n]", " ", m[0]), text
    )
    return _LINE_DIRECTIVE.sub("", text)


def _items(text: str) -> list[_Item]:
    lines = text.splitlines()
    conditions = _conditions(lines)
    defs = definitions(text)
    covered = {n for d in defs for n in range(d.first, d.last + 1)}
    items = []
    for d in defs:
        body = "\n".join(lines[d.first - 1 : d.last])
        if d.name:
            declared = frozenset({d.name})
        else:  # static const int table[] = { ... }: named before its initialiser
            declared = frozenset(_declared_names(body.split("{", 1)[0] + ";"))
        items.append(_Item(d.kind, d.name, declared, _keyed(conditions[d.first - 1], body)))
    # The declarations between definitions, each to its `;` (a prototype over several lines
    # is one), and directives other than conditions (#undef, #include).
    pending: list[str] = []
    start = 0
    for n, line in enumerate(lines, 1):
        if n in covered or not line.strip() or _CONDITIONAL.match(line):
            continue
        if line.lstrip().startswith("#"):
            items.append(_declaration(conditions[n - 1], line))
            continue
        if not pending:
            start = n
        pending.append(line)
        if line.rstrip().endswith((";", "}")):
            items.append(_declaration(conditions[start - 1], " ".join(pending)))
            pending = []
    if pending:
        items.append(_declaration(conditions[start - 1], " ".join(pending)))
    return items


def _declaration(conditions: tuple[str, ...], text: str) -> _Item:
    # `struct foo;` declares an incomplete type, which no code can use but by pointer: adding
    # one changes no object (it names a tag every unit using that type mentions).
    declared = set() if _FORWARD.match(text) else _declared_names(text)
    return _Item("declaration", "", frozenset(declared), _keyed(conditions, text))


_FORWARD = re.compile(r"\s*(?:struct|union|enum)\s+[A-Za-z_]\w*\s*;\s*$")


def _keyed(conditions: tuple[str, ...], body: str) -> str:
    return " | ".join(conditions) + " :: " + " ".join(body.replace("\\\n", " ").split())


def _conditions(lines: list[str]) -> list[tuple[str, ...]]:
    """For each line, the conditional groups it is in, outermost first, each as the chain of
    its directives so far (#ifdef A / #else)."""
    stack: list[str] = []
    found = []
    for line in lines:
        found.append(tuple(stack))
        m = _CONDITIONAL.match(line)
        if m is None:
            continue
        directive = " ".join(line.split())
        if m[1] in ("if", "ifdef", "ifndef"):
            stack.append(directive)
        elif m[1] in ("elif", "else") and stack:
            stack[-1] += " / " + directive
        elif m[1] == "endif" and stack:
            stack.pop()
    return found


def _declared_names(line: str) -> set[str]:
    """The names a top-level line outside any definition declares or tests: a prototype's or
    variable's name, the macros an #if tests. Parameter names and types are no such name."""
    code = re.sub(r"/\*.*?\*/|//.*", " ", line)
    directive = re.match(r"\s*#\s*(\w+)(.*)", code)
    if directive:
        if directive[1] in ("if", "ifdef", "ifndef", "elif", "undef"):
            return set(_IDENT.findall(directive[2])) - {"defined"}
        return set()  # #line, #include, #endif...: nothing of their own
    called = re.findall(r"([A-Za-z_]\w*)\s*\(", code)
    if called:
        return {called[0]}
    declared = re.findall(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*[;=,]", code)
    return set(declared)


_C_WORDS = {
    "static", "inline", "int", "long", "void", "char", "unsigned", "signed", "const", "return",
    "if", "else", "struct", "union", "enum", "extern", "bool", "u8", "u16", "u32", "u64",
    "__always_inline", "define", "include", "sizeof", "typeof", "while", "for", "do",
}  # fmt: skip


class Mentions:
    """Which units mention the names a header change touches, or a definition of an included
    header that (transitively) uses one. Each header is parsed once and each unit's source read
    once, however many changed headers ask (a stable upload changes hundreds)."""

    def __init__(self, tree_source: Path, headers: Iterable[str]) -> None:
        self.source = tree_source
        # identifier -> the definitions whose body names it: an inline helper calling the
        # changed inline, a macro expanding to it.
        self.users: dict[str, set[str]] = {}
        for header in headers:
            text = read_source(tree_source / header)
            lines = text.splitlines()
            for d in definitions(text):
                if d.name:
                    for ident in set(_IDENT.findall("\n".join(lines[d.first - 1 : d.last]))):
                        self.users.setdefault(ident, set()).add(d.name)
        self._idents: dict[str, frozenset[str]] = {}

    def grown(self, names: Iterable[str]) -> set[str]:
        grown = set(names)
        pending = list(grown)
        while pending:
            for user in self.users.get(pending.pop(), ()):
                if user not in grown:
                    grown.add(user)
                    pending.append(user)
        return grown

    def units(self, candidates: Mapping[str, str], names: Iterable[str]) -> set[str]:
        grown = self.grown(names)
        return {unit for unit, src in candidates.items() if not grown.isdisjoint(self._of(src))}

    def _of(self, src: str) -> frozenset[str]:
        if src not in self._idents:
            self._idents[src] = frozenset(_IDENT.findall(read_source(self.source / src)))
        return self._idents[src]


def read_source(path: Path) -> str:
    """A source file's text, "" when it cannot be read (absent on one side)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_VERDICTS = ".ksplice-preprocessed.json"
# Bumped when the judgement of two .i files changes, so no verdict of an older one is reused.
_JUDGE = "pieces-5"
_SAVE_EVERY = 256


def preprocessed_differs(
    pre: PreparedTree,
    post_source: Path,
    post_objdir: Path,
    units: list[str],
    jobs: int,
) -> dict[str, Difference]:
    """The units whose preprocessed source differs before and after in a way that can change
    their object code, with how (see `preprocessed.code_difference`), in the order given.

    A .i is as large as a megabyte or several, and a stable upload asks about thousands of
    units on both sides: each is emptied once judged, keeping its time. make then still
    finds it up to date while nothing it was made of changes, and the verdict, kept in the
    post object dir with the times of the two files it read, answers the next round or run.
    A file emptied for another upload's question is made again."""
    targets = [u.removesuffix(".o") + ".i" for u in units]
    record = post_objdir / _VERDICTS
    known: dict[str, list[object]]
    try:
        known = json.loads(record.read_text()) if record.is_file() else {}
    except ValueError:
        known = {}
    pairs = dict(zip(units, ((pre.objdir / t, post_objdir / t) for t in targets), strict=True))

    def unanswered(unit: str) -> bool:
        """No kept verdict for these two files as they are now, by this judge."""
        return known.get(unit, [None])[:3] != _verdict_key(pairs[unit])

    for attempt in range(2):
        for source, objdir in ((pre.source, pre.objdir), (post_source, post_objdir)):
            run(
                ["make", "-C", source, f"O={objdir}", f"-j{jobs}", "-k",
                 f"KERNELRELEASE={pre.release}", *targets],
                check=False,
                timeout=6 * 3600,
            )  # fmt: skip
        if attempt:
            break
        # Emptied by an earlier judgement that this one cannot reuse: make them again, but for
        # an old side whose text was kept.
        stale = [
            path
            for unit in units
            if unanswered(unit)
            for side, path in enumerate(pairs[unit])
            if path.is_file() and path.stat().st_size == 0 and not (side == 0 and _has_kept(path))
        ]
        if not stale:
            break
        for path in stale:
            path.unlink()
    asked = [(unit, *map(str, pairs[unit])) for unit in units if unanswered(unit)]
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        for n, (unit, why) in enumerate(pool.map(_judge, asked, chunksize=16), 1):
            if why:
                logger.debug("%s: %s", unit, why.what)
            known[unit] = [*_verdict_key(pairs[unit]), *_verdict(why)]
            # Kept as they come: an interrupted stable upload (a quarter of an hour of
            # judging, each .i emptied once judged) resumes instead of preprocessing again.
            if n % _SAVE_EVERY == 0:
                atomic_write(record, json.dumps(known))
    atomic_write(record, json.dumps(known))
    verdicts = {unit: _difference(known[unit][3:]) for unit in units}
    return {unit: why for unit, why in verdicts.items() if why is not None}


def _verdict(why: Difference | None) -> list[object]:
    """A verdict as kept in the record: whether the code differs, whether only init code does,
    and what differs."""
    return [False, False, ""] if why is None else [True, why.init_only, why.what]


def _difference(kept: list[object]) -> Difference | None:
    differs, init_only, what = kept
    return Difference(str(what), bool(init_only)) if differs else None


def _judge(job: tuple[str, str, str]) -> tuple[str, Difference | None]:
    """One unit's verdict (None: the same code), both .i files emptied once read; the old
    side's text is kept compressed first (see `_kept`)."""
    unit, pre_i, post_i = job
    texts = [read_source(Path(pre_i)), read_source(Path(post_i))]
    if not texts[0] and _has_kept(Path(pre_i)):
        texts[0] = gzip.decompress(_kept(Path(pre_i)).read_bytes()).decode()
    elif texts[0]:
        _keep(Path(pre_i), texts[0])
    if not all(texts):
        return unit, Difference("not preprocessed on both sides; compiled to be sure")
    why = code_difference(*texts)
    for path in (Path(pre_i), Path(post_i)):
        st = path.stat()
        os.truncate(path, 0)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return unit, why


def _kept(i_file: Path) -> Path:
    """Where the text of a judged .i of the old tree is kept, compressed (an eighth of its size).
    The old tree never changes, so a later round, or the next upload for the same kernel,
    asking about the unit again preprocesses only the after side: a round that takes out a
    header hunk nearly every unit inlines judges them all again."""
    return i_file.with_name(f".{i_file.name}.ksplice.gz")


def _keep(i_file: Path, text: str) -> None:
    kept = _kept(i_file)
    tmp = kept.with_name(kept.name + ".tmp")
    tmp.write_bytes(gzip.compress(text.encode(), compresslevel=1, mtime=0))
    # The copy stands for the .i it was read from: the same time, checked by _has_kept.
    mtime = i_file.stat().st_mtime_ns
    os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, kept)


def _has_kept(i_file: Path) -> bool:
    try:
        return _kept(i_file).stat().st_mtime_ns == i_file.stat().st_mtime_ns
    except OSError:
        return False


def _verdict_key(pair: tuple[Path, Path]) -> list[str]:
    """What a kept verdict answers for: both .i files as they are (emptied ones included), and
    the judge that gave it."""
    return [*map(_stamp, pair), _JUDGE]


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_mtime_ns}:{st.st_size}"


def header_users(
    tree: PreparedTree,
    post_source: Path,
    post_objdir: Path,
    headers: list[str],
    jobs: int,
    *,
    fresh: bool = True,
) -> dict[str, Difference]:
    """The units of the kernel and its modules whose code the patch's changes to `headers`
    change, with how (init code only, or code that runs). `fresh`: make each .i anew (a post
    tree whose files may be older than an earlier patch's .i); an upload's after tree writes
    every change with a new time, so make's own dependencies decide."""
    mentioned = units_mentioning(tree, post_source, headers)
    if not mentioned:
        return {}
    if fresh:
        for unit in mentioned:
            # A .i left by an earlier update's patch could look newer than this one's header.
            (post_objdir / (unit.removesuffix(".o") + ".i")).unlink(missing_ok=True)
    return judge_units(tree, post_source, post_objdir, mentioned, jobs)


def units_mentioning(
    tree: PreparedTree,
    post_source: Path,
    headers: list[str],
    *,
    since: Mapping[str, str] | None = None,
) -> set[str]:
    """The units that use a name the changes to `headers` touch (see `Mentions`): the ones
    whose code those changes may change. The changes are from the old tree's text of each
    header to post_source's, or, given `since`, from the text it gives for a header."""
    units = kernel_units(tree)
    index = IncludeIndex.of(tree)
    closure = index.closure(headers)
    included = {f for f in closure if f.endswith(".h")} | set(headers)
    mentions = Mentions(tree.source, included)
    names: set[str] = set()
    mentioned: set[str] = set()
    candidates = 0
    for header in headers:
        pre_text = read_source(tree.source / header) if since is None else since.get(header, "")
        post_text = read_source(post_source / header)
        changed = changed_names(header, pre_text, post_text)
        if not changed:
            continue
        names |= changed
        reach = index.reach(header)
        users = {u: src for u, src in units.items() if src in reach}
        candidates += len(users)
        mentioned |= mentions.units(users, changed)
    if names:
        logger.info(
            "%s: included by %d unit(s), %d of which use %s",
            ", ".join(headers[:8]) + (f" and {len(headers) - 8} more" if len(headers) > 8 else ""),
            candidates,
            len(mentioned),
            ", ".join(sorted(names)[:8]) + (" ..." if len(names) > 8 else ""),
        )
    return mentioned


def judge_units(
    tree: PreparedTree, post_source: Path, post_objdir: Path, units: Iterable[str], jobs: int
) -> dict[str, Difference]:
    """Of `units`, those whose preprocessed code differs before and after, with how."""
    ordered = sorted(units)
    if not ordered:
        return {}
    with step(f"preprocessing {len(ordered)} unit(s) before and after"):
        differing = preprocessed_differs(tree, post_source, post_objdir, ordered, jobs)
    init_only = [unit for unit, why in differing.items() if why.init_only]
    running = [unit for unit, why in differing.items() if not why.init_only]
    logger.info(
        "%d unit(s) really change: %s; %d only in init code",
        len(running),
        ", ".join(running[:20]) + (" ..." if len(running) > 20 else ""),
        len(init_only),
    )
    return differing
