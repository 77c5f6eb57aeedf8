"""Whether a unit's code changes, judged from its preprocessed source before and after.

A header change reaches thousands of units by include and by name (a stable update changes
`skbuff.h`, `mm.h`, `fs.h`), but most of them only see a declaration they never use: a new
inline helper, a prototype gaining a parameter, a struct they do not touch. gcc emits nothing
for those, so the unit's object code is the same. Compiling both sides of every such unit
would be a full kernel build twice; reading the two .i files costs a fraction of that.

The two texts are cut into their file-scope pieces (declarations and definitions). The pieces
that differ must each be one the compiler drops when nothing refers to what it declares: a
static function or variable, a prototype, an extern declaration, a type. Then no other piece
of the unit may refer to a name they declare, except pieces that are themselves such dropped
declarations of changed names (an unused helper calling another). Anything else counts as a
change, and the unit is compiled on both sides.

Init code and data are the exception: a header change that only reaches a unit's __init or
__exit functions, or what links them (the initcall entry, the init_module alias), changes code
that ran at boot or module load and that no update can change. Such a unit is not compiled; it
is reported as an init-only difference, what the compiled unit's diff would have left out.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass

# Names made unique with __COUNTER__: one more use in a header renumbers every later one in the
# unit, but they name locals, never-called error stubs and initcall entries (whose name is
# __initcall__<module>__<counter>_<line>_<function>), so the number is no code.
# Two patterns, each starting with a literal: re then skips to it instead of trying every
# position of a several-megabyte text.
_COUNTED = (
    re.compile(r"(__UNIQUE_ID_\w*?|__compiletime_assert_)\d+\b"),  # the counter ends the name
    re.compile(r"(__initcall__\w*?__)\d+(?=_\d+_)"),  # __initcall__<module>__<counter>_<line>_
)
# What cuts preprocessed C into pieces: braces and semicolons, outside the string and
# character literals that may hold them.
_MARK = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[{};]')
_ATTRIBUTE = re.compile(r"\b(?:__attribute__|__asm__|asm)\s*\(")
_TAG = re.compile(r"^(struct|union|enum)\s+([A-Za-z_]\w*)\s*$")
_CALLED = re.compile(r"([A-Za-z_]\w*)\s*\(")
_POINTER_NAME = re.compile(r"\(\s*\*\s*([A-Za-z_]\w*)\s*\)")
_PAREN_NAME = re.compile(r"\(\s*([A-Za-z_]\w*)\s*\)\s*\(")  # typedef int (name)(args);
_TYPEDEF_FUNCTION = re.compile(r"^typedef\s+[^(]*?\b([A-Za-z_]\w*)\s*\(")  # typedef int name(args);
_TAG_BEFORE = re.compile(r"\b(struct|union|enum)\s+$")
_LAST_NAME = re.compile(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*$")
# A function or variable placed in an init or exit section:
# `__attribute__((__section__(".init.text")))`.
_INIT_PLACED = re.compile(r'__section__\s*\(\s*"\.(?:init|exit)(?:\.|call)')
# A top-level asm's section directives, read from its string literals joined: an initcall
# entry's `.section ".initcall6.init", "a"` is init; any other section, or .text or .data, is not.
_LITERAL = re.compile(r'"((?:\\.|[^"\\\n])*)"')
_ASM_SECTION = re.compile(r'\.(?:push)?section\s+"?([\w.]+)|(?:^|[\n;])\s*\.(text|data|bss)\b')
_INIT_SECTION = re.compile(r"\.(?:init|exit)(?:\.|call)")
# Attributes that keep a definition in the object even when nothing in the unit refers to it.
_KEPT = re.compile(r"\b(?:__used__|used|constructor|__constructor__|externally_visible)\b")
_NOT_NAMES = {
    "__typeof__", "typeof", "__typeof", "sizeof", "_Alignof", "__alignof__", "__builtin_offsetof",
    "void", "int", "char", "long", "short", "unsigned", "signed", "float", "double", "_Bool",
    "const", "volatile", "static", "extern", "inline", "__inline", "__inline__", "return",
    "struct", "union", "enum",
}  # fmt: skip


def pieces(text: str) -> list[tuple[int, int]]:
    """The file-scope pieces of preprocessed C as (start, end) offsets, in order. A function
    definition ends at its closing brace; any other piece (a struct, an initialised variable,
    a prototype) at its semicolon."""
    found: list[tuple[int, int]] = []
    start = depth = 0
    opened = -1
    for m in _MARK.finditer(text):
        mark = m.group()
        if mark == "{":
            if depth == 0:
                opened = m.start()
            depth += 1
        elif mark == "}":
            depth -= 1
            if depth == 0 and _ends_in_parameters(text[start:opened].rstrip()):
                found.append((start, m.end()))
                start = m.end()
        elif mark == ";" and depth == 0:
            found.append((start, m.end()))
            start = m.end()
    if text[start:].strip():
        found.append((start, len(text)))
    return found


def _ends_in_parameters(head: str) -> bool:
    """Whether a piece's text before its brace ends in a parameter list: a function."""
    if not head.endswith(")"):
        return False  # struct foo, an initialiser's =
    if not head.endswith("))"):
        return True  # the common case, with no attribute to read past
    return _without_attributes(head).rstrip().endswith(")")


def normalised(text: str) -> str:
    """Preprocessed C without what is no code: line markers, blank lines, the numbers of
    __COUNTER__ names."""
    lines = text.split("\n")
    kept = "\n".join(ln for ln in lines if ln and not ln.startswith("# ") and not ln.isspace())
    for counted in _COUNTED:
        kept = counted.sub(r"\1N", kept)
    return kept


def _without_attributes(head: str) -> str:
    """`head` with its __attribute__((...)) and asm("label") parts left out."""
    while m := _ATTRIBUTE.search(head):
        depth, end = 0, len(head)
        for i in range(m.end() - 1, len(head)):
            if head[i] == "(":
                depth += 1
            elif head[i] == ")":
                depth -= 1
                if depth == 0:
                    end = i + 1
                    break
        head = head[: m.start()] + " " + head[end:]
    return head


@dataclass(frozen=True)
class Piece:
    """What one file-scope piece declares, and whether the compiler drops it unless some other
    piece refers to one of those names."""

    names: frozenset[str]  # "struct foo" for a tag, plain identifiers otherwise
    droppable: bool
    kind: str = "other"  # "function" (a definition or prototype), "type", "other"


def piece_of(text: str) -> Piece:
    text = text.strip()
    brace = text.find("{")
    head = text if brace < 0 else text[:brace]
    plain = " ".join(_without_attributes(head).split())
    kept = bool(_KEPT.search(head))
    if text.startswith("_Static_assert") or text == ";":
        return Piece(frozenset(), True)
    if text.endswith("}"):  # a function definition (pieces() ends nothing else at a brace)
        named = [n for n in _CALLED.findall(plain) if n not in _NOT_NAMES]
        static = re.search(r"\bstatic\b", plain) is not None
        return Piece(frozenset(named[:1]), static and not kept and bool(named), "function")
    if plain.startswith("typedef"):
        name = (
            _POINTER_NAME.search(text)
            or _PAREN_NAME.search(text)
            or _TYPEDEF_FUNCTION.search(_without_attributes(text))
            or _LAST_NAME.search(text[:-1].rstrip())
        )
        tag = _TAG.match(" ".join(_without_attributes(plain[7:]).split()))
        names = {name[1]} if name else set()
        if tag:
            names.add(f"{tag[1]} {tag[2]}")
        return Piece(frozenset(names), bool(names), "type")
    if plain == "enum" and brace >= 0:  # enum { A, B }; declares only its constants
        return Piece(frozenset(_enumerators(text, brace)), True, "type")
    tag = _TAG.match(plain.removesuffix(";").rstrip())
    if tag and brace < 0:
        return Piece(frozenset(), True, "type")  # struct foo; a type some other piece defines
    if tag:  # struct foo { ... };
        names = {f"{tag[1]} {tag[2]}"}
        if tag[1] == "enum":
            names |= _enumerators(text, brace)
        return Piece(frozenset(names), True, "type")
    words = plain.split()
    extern = "extern" in words
    static = "static" in words
    called = next((m for m in _CALLED.finditer(plain) if m[1] not in _NOT_NAMES), None)
    pointer = _POINTER_NAME.search(plain)
    if (
        called
        and "=" not in plain[: called.start()]
        and not (pointer and pointer.start() < called.start())
    ):
        return Piece(frozenset({called[1]}), not kept, "function")  # a prototype
    if (extern or static) and not kept:
        name = _POINTER_NAME.search(plain) or _LAST_NAME.search(plain.split("=")[0].rstrip(" ;"))
        if name and name[1] not in _NOT_NAMES:
            return Piece(frozenset({name[1]}), True)
    return Piece(frozenset(), False)


def _enumerators(text: str, brace: int) -> set[str]:
    body = text[brace + 1 : text.rfind("}")]
    return {m[1] for m in re.finditer(r"(?:^|,)\s*([A-Za-z_]\w*)", body)}


def is_init(text: str) -> bool:
    """Whether a file-scope piece is init code or data: a function or variable whose attributes
    place it in an .init.* or .exit.* section, an initcall or exitcall entry, or a top-level
    asm that only writes to such sections."""
    text = text.strip()
    if text.startswith(("asm", "__asm__")):
        asm = "".join(m[1] for m in _LITERAL.finditer(text))
        asm = asm.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t")
        sections = [m[1] or m[2] for m in _ASM_SECTION.finditer(asm)]
        return bool(sections) and all(_INIT_SECTION.match(s) for s in sections)
    brace = text.find("{")
    head = text if brace < 0 else text[:brace]
    if brace < 0 or not text.endswith("}"):
        head = head.split("=", 1)[0]  # a variable's attributes, not its initialiser
    return _INIT_PLACED.search(head) is not None


@dataclass(frozen=True)
class Difference:
    """Why a unit's code differs: `what`, for the log; `init_only` when all that differs in
    the object is init code or data (see `is_init`)."""

    what: str
    init_only: bool = False


def code_difference(pre: str, post: str) -> Difference | None:
    """None when pre and post differ only in pieces the compiler drops; otherwise the first
    piece that makes them differ, or, when every piece that stays is init code or data, the
    first of those as an init-only difference."""
    pre, post = normalised(pre), normalised(post)
    if pre == post:
        return None
    sides = [(pre, pieces(pre)), (post, pieces(post))]
    counts = [Counter(text[a:b].strip() for a, b in cut) for text, cut in sides]
    differing = list((counts[0] - counts[1]).elements()) + list((counts[1] - counts[0]).elements())
    changed: set[str] = set()
    functions: set[str] = set()  # changed names that are functions: no type can depend on them
    kept_init = False  # an init piece that stays in the object differs
    init_names: set[str] = set()  # what the differing init pieces declare, for the verdict
    for text in differing:
        piece = piece_of(text)
        init = is_init(text)
        if not piece.droppable:
            if not init:
                return Difference(f"changed: {_short(text)}")
            kept_init = True
        if init:
            init_names |= piece.names
        changed |= piece.names
        if piece.kind == "function":
            functions |= piece.names
    if not changed:
        return _init_only(init_names) if kept_init else None
    # What refers to a changed name is changed in turn, unless the compiler drops it too (an
    # unused helper calling another, a prototype naming a changed struct): follow the uses
    # until they end in dropped pieces only, or reach one that stays (a global function).
    starts = [[a for a, _ in cut] for _, cut in sides]
    read: dict[tuple[int, int], Piece] = {}
    tainted: set[tuple[int, int]] = set()
    frontier = set(changed)
    while frontier:
        words = {n.split()[-1] for n in frontier}
        found: set[str] = set()
        for side, (text, cut) in enumerate(sides):
            for start, word in _whole_words(text, words):
                tag = _TAG_BEFORE.search(text, max(0, start - 12), start)
                name = f"{tag[1]} {word}" if tag else word
                if name not in frontier:
                    continue
                at = (side, bisect.bisect_right(starts[side], start) - 1)
                if at in tainted:
                    continue
                piece_text = text[cut[at[1]][0] : cut[at[1]][1]]
                if at not in read:
                    read[at] = piece_of(piece_text)
                piece = read[at]
                if piece.kind == "type" and (name in functions or not piece.names):
                    continue  # a member named like a changed function; struct foo;
                tainted.add(at)
                init = is_init(piece_text)
                if not (piece.droppable and piece.names):
                    if not init:
                        return Difference(f"{name} changes and is used by: {_short(piece_text)}")
                    kept_init = True
                if init:
                    init_names |= piece.names
                found |= piece.names
                if piece.kind == "function":
                    functions |= piece.names
        frontier = found - changed
        changed |= found
    return _init_only(init_names) if kept_init else None


_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _whole_words(text: str, words: set[str]) -> list[tuple[int, str]]:
    """Where each of `words` occurs in text as a whole identifier, in text order. str.find per
    word: a regex alternation of dozens of names tries each at every position of a text of
    megabytes, and was most of the judging time."""
    found = []
    size = len(text)
    for word in words:
        n = len(word)
        i = text.find(word)
        while i >= 0:
            end = i + n
            if (i == 0 or text[i - 1] not in _WORD) and (end == size or text[end] not in _WORD):
                found.append((i, word))
            i = text.find(word, end)
    found.sort()
    return found


def _init_only(names: set[str]) -> Difference:
    listed = ", ".join(sorted(names)[:6]) + (" ..." if len(names) > 6 else "")
    return Difference(f"only init code changes: {listed or 'an initcall entry'}", init_only=True)


def _short(text: str) -> str:
    flat = " ".join(_without_attributes(text).split())
    return flat if len(flat) <= 120 else flat[:117] + "..."
