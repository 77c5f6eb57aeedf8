"""The build side's cache: what it holds, when each entry was last used, and cleaning it.

Every entry can be rebuilt on demand, but some are large: an unpacked kernel source is about
1.5 GB, and a maintainer who builds for every security upload gets a new one each time. Entries
are the directories (and extracted vmlinux files) directly under these kinds:

    kernels/<release>    fetch: a Debian kernel's packages, unpacked, and its target files
    sources/<key>        unpacked source packages (.dsc, linux-source, .src.rpm), by content
    packages/<key>       unpacked kernel, headers and debug packages, by content
    work/<tree>-<key>    create's object trees for one source tree
    vmlinux/<key>.elf    vmlinux extracted from a vmlinuz, by content

An entry's mtime is when it was last used: create, fetch and the unpackers touch what they use
(`mark_used`). A create in progress holds its work dir's lock and lists the entries it uses in
`inputs` beside it; `clean` skips those, and entries whose own lock is held (being unpacked).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import atomic_write

KINDS = ("kernels", "sources", "packages", "work", "vmlinux")
WORK_LOCK = "lock"
WORK_INPUTS = "inputs"
_REMOVING = ".removing"
# The Cache Directory Tagging convention (bford.info/cachedir): backup tools skip a directory
# holding it, and `clean` deletes only in a directory that says it is a cache.
TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by ksplice-pkg.\n"
    "# Everything here is rebuilt on demand; see `ksplice-pkg cache`.\n"
)
_CLEAN_LOCK = ".clean.lock"


@contextmanager
def held(lock: Path) -> Iterator[None]:
    """Hold the flock `lock` (created if missing) until the block ends, waiting for it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def entry_lock(entry: Path) -> Path:
    """The lock beside an entry that its unpacker holds (`sources/<key>.lock`...)."""
    return entry.with_name(entry.name + ".lock")


@contextmanager
def cache_entry_lock(entry: Path) -> Iterator[None]:
    """One unpacker per cache entry: two builds of the same source wait for each other rather
    than fill the same `.partial` directory; `clean` leaves an entry alone while it is held."""
    with held(entry_lock(entry)):
        yield


def entry_of(cache: Path, path: Path) -> Path | None:
    """The cache entry `path` lies in (resolved: the same however the cache is spelled), or
    None when it is not in the cache."""
    root = cache.resolve()
    try:
        parts = path.resolve().relative_to(root).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] not in KINDS:
        return None
    return root / parts[0] / parts[1]


def tag(cache: Path) -> None:
    """Mark `cache` as ksplice-pkg's cache (what `clean` requires before it deletes)."""
    path = cache / TAG
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(path, _TAG_TEXT)


def mark_used(cache: Path, paths: Iterable[Path | None]) -> list[Path]:
    """Touch the cache entries these paths lie in; returns the entries."""
    entries = sorted({e for p in paths if p is not None and (e := entry_of(cache, p))})
    if entries:
        tag(cache)
    now = time.time()
    for entry in entries:
        try:
            os.utime(entry, (now, now))
        except FileNotFoundError:  # removed meanwhile: nothing to mark
            continue
    return entries


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int  # bytes
    last_used: float  # epoch seconds

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def entries(cache: Path) -> list[Entry]:
    """Every entry, least recently used first."""
    return [Entry(path, _size(path), last_used) for path, last_used in _by_last_use(cache)]


def _by_last_use(cache: Path) -> list[tuple[Path, float]]:
    """Every entry's path and last use, least recently used first (sizing a tree takes a
    walk over its files: only what is listed or removed is sized)."""
    found = []
    for kind in KINDS:
        base = cache / kind
        for path in sorted(base.iterdir()) if base.is_dir() else []:
            if path.name.endswith(".lock") or _REMOVING in path.name:
                continue
            found.append((path, path.lstat().st_mtime))
    return sorted(found, key=lambda item: (item[1], item[0].parent.name, item[0].name))


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


@dataclass(frozen=True)
class Cleaned:
    removed: list[Entry]
    in_use: list[Entry]


def clean(cache: Path, unused_for: float, now: float | None = None) -> Cleaned:
    """Remove the entries not used for `unused_for` seconds that no running command uses."""
    if not any((cache / kind).is_dir() for kind in KINDS):
        return Cleaned([], [])
    if not (cache / TAG).is_file():
        # A --cache-dir mistyped as a home or source directory must not lose its `work/`.
        raise KspliceError(
            f"{cache} is not marked as a ksplice-pkg cache (no {TAG}): nothing removed",
            hint=f"check --cache-dir; if it is ksplice-pkg's cache, any command that uses it "
            f"(e.g. `ksplice-pkg fetch`) marks it, or copy {TAG} from another cache",
        )
    # Two cleans at once would race for the same entries: the second waits for the first.
    with held(cache / _CLEAN_LOCK):
        return _clean(cache, unused_for, time.time() if now is None else now)


def _clean(cache: Path, unused_for: float, now: float) -> Cleaned:
    _finish_removals(cache)
    removed: list[Entry] = []
    in_use: list[Entry] = []
    for path, last_used in _by_last_use(cache):
        if now - last_used < unused_for:
            continue
        with _idle(cache, path) as idle:
            if not idle:
                in_use.append(Entry(path, _size(path), last_used))
                continue
            # Used while the list was made (its users touch it under the same locks)?
            try:
                if now - path.lstat().st_mtime < unused_for:
                    continue
            except FileNotFoundError:
                continue
            removed.append(Entry(path, _size(path), last_used))
            _remove(path)
    return Cleaned(removed, in_use)


@contextmanager
def _idle(cache: Path, entry: Path) -> Iterator[bool]:
    """Whether no command uses `entry`, holding the locks that keep it so while True."""
    with ExitStack() as stack:
        locks = [entry_lock(entry)]
        if entry.parent.name == "work":
            locks.append(entry / WORK_LOCK)
        for lock in locks:
            if lock.is_file() and not _try_lock(stack, lock):
                yield False
                return
        # A create in another work dir may be reading this entry (its source tree, target
        # files, vmlinux): its work dir's lock is held and its inputs name the entry.
        for inputs in sorted((cache / "work").glob(f"*/{WORK_INPUTS}")):
            try:
                listed = inputs.read_text().splitlines()
            except FileNotFoundError:  # that work dir was removed meanwhile
                continue
            if inputs.parent == entry or str(entry.resolve()) not in listed:
                continue
            if not _try_lock(stack, inputs.parent / WORK_LOCK):
                yield False
                return
        yield True


def _try_lock(stack: ExitStack, path: Path) -> bool:
    handle = stack.enter_context(path.open("a"))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove(entry: Path) -> None:
    # Renamed first: a command looking the entry up sees it whole or not at all, and a removal
    # cut short is finished by the next clean.
    doomed = entry.with_name(f"{entry.name}{_REMOVING}-{os.getpid()}")
    entry.rename(doomed)
    _delete(doomed)
    entry_lock(entry).unlink(missing_ok=True)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _finish_removals(cache: Path) -> None:
    for kind in KINDS:
        for doomed in (cache / kind).glob(f"*{_REMOVING}-*"):
            _delete(doomed)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
