"""A whole upload (OLD -> NEW) as a farm rebuilds it: what travels in the source package.

The farm's chroot installs OLD's source (linux-source-X.Y, a build dependency) and nothing of
NEW, which need not be in any archive yet. So the source package carries the difference: NEW's
added and modified files (`upload.tar`), the paths NEW removed, and both Debian changelogs,
from which `build --from` reads the two versions, the entries and the CVEs there as it does here.
Both sides are unpacked and compared with the machinery `build --from` uses.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.distro.srcpkg import identify, prepare_source
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.upload.changelog import debian_changelog, debian_top_version, read_upload_log
from ksplice_pkg.upload.changes import Change, compare_trees

# What the source package carries of the upload, under its top directory.
UPLOAD_TAR = "ksplice/upload.tar"
REMOVED_FILE = "ksplice/removed"
OLD_CHANGELOG = "ksplice/changelog.old"
NEW_CHANGELOG = "ksplice/changelog.new"


@dataclass(frozen=True)
class FarmUpload:
    new_tree: Path  # NEW unpacked in the cache: where upload.tar's files are read
    changed: tuple[str, ...]  # added or modified in NEW: files and symbolic links, sorted
    removed: tuple[str, ...]
    old_changelog: str
    new_changelog: str
    old_version: str
    new_version: str
    cves: tuple[str, ...]  # every CVE the upload's changelog entries (and patches) name


def read_upload(old_source: Path, new_source: Path, cache: Path) -> FarmUpload:
    old_tree = prepare_source(identify(old_source), cache).resolve()
    new_tree = prepare_source(identify(new_source), cache).resolve()
    changes = compare_trees(old_tree, new_tree)
    if not changes:
        raise RefusedError(
            "the two sources are the same: nothing to update",
            hint="give the newer upload as NEW_SOURCE and the target's as --from",
        )
    log = read_upload_log(old_source, old_tree, new_source, new_tree)
    old_text, old_version = _changelog(old_source, old_tree, log.old_version)
    new_text, new_version = _changelog(new_source, new_tree, log.new_version)
    removed = tuple(c.path for c in changes if c.change is Change.REMOVED)
    for path in removed:
        if "\n" in path:
            raise KspliceError(
                f"NEW removes a path with a newline in its name ({path!r}): the list of "
                "removed paths is one a line",
                hint="such a name is no kernel file: check the sources",
            )
    changed = tuple(c.path for c in changes if c.change is not Change.REMOVED)
    return FarmUpload(
        new_tree, changed, removed, old_text, new_text, old_version, new_version, log.cves
    )


def _changelog(source: Path, tree: Path, version: str | None) -> tuple[str, str]:
    """The side's Debian changelog, whose newest entry must be the version `build --from` sees
    here: in the farm, where both sides are plain trees, the changelog is all it has."""
    text = debian_changelog(source, tree)
    if text is None:
        raise KspliceError(
            f"{source.name} has no Debian changelog: the farm's build reads the upload's "
            "versions, entries and CVEs from the changelogs of both sides",
            hint="give each side as a linux-source-X.Y .deb, a linux_*.dsc or a tree with "
            "debian/changelog",
        )
    top = debian_top_version(text)
    if top is None or top != version:
        raise KspliceError(
            f"{source.name} is version {version}, its changelog's newest entry {top}: the "
            "farm's build would take the changelog's",
            hint="give the source package as the archive has it",
        )
    return text, top


def write_upload(upload: FarmUpload, top: Path, epoch: int) -> None:
    """upload.tar, the removed list and both changelogs into the source package's tree."""
    tar_path = top / UPLOAD_TAR
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    # Uncompressed (dpkg-source compresses the whole package) and the same bytes from the same
    # trees: sorted names, no owner, one time, modes reduced to what a checkout keeps.
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(upload.changed):
            full = upload.new_tree / path
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if full.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(info)
                continue
            with full.open("rb") as f:
                stat = os.fstat(f.fileno())
                info.size = stat.st_size
                info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
                tar.addfile(info, f)
    texts = {
        REMOVED_FILE: "".join(f"{path}\n" for path in upload.removed),
        OLD_CHANGELOG: upload.old_changelog,
        NEW_CHANGELOG: upload.new_changelog,
    }
    for name, text in texts.items():
        (top / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    for name in (UPLOAD_TAR, *texts):
        os.utime(top / name, (epoch, epoch))
