"""Installing an update into the tree that boot reapplies from, and removing it again.

This is what a package does with its files, done by hand: `ksplice-pkg install UPDATE` puts the
tarball's ksplice-<id>/ directory at updates/<kernel-release>/<id>/ (for any release: a machine
may install updates for the kernel it will boot next).
"""

from __future__ import annotations

import secrets
import shutil
from enum import Enum
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import make_dirs
from ksplice_pkg.manifest import module_name_of
from ksplice_pkg.runtime import guard, kernel, sysfs
from ksplice_pkg.runtime.apply import Timing
from ksplice_pkg.runtime.bundle import Bundle, load_installed
from ksplice_pkg.runtime.errors import NotFoundError
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.undo import undo
from ksplice_pkg.tarball import write_directory


class Installed(Enum):
    NEW = "installed"
    SAME = "already installed"
    REPLACED = "replaced the installed copy"


def install(store: Store, bundle: Bundle) -> tuple[Installed, Path]:
    """Write the update's files in; the directory appears whole or not at all (rename). Only
    the files the format names are written, from the checked bytes: nothing of the source
    directory (links, other files, its modes) comes along."""
    manifest = bundle.manifest
    final = store.installed_dir(manifest.kernel_release, manifest.id)
    if final.is_dir() and _same(store, bundle):
        return Installed.SAME, final
    make_dirs(final.parent)
    # A dot-name is skipped by installed_ids(): a crash mid-write leaves nothing boot would read.
    tmp = final.with_name(f".{manifest.id}.{secrets.token_hex(4)}")
    try:
        write_directory(bundle.update, tmp)
        outcome = Installed.NEW
        if final.is_dir():
            old = final.with_name(f".{manifest.id}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            shutil.rmtree(old)
            outcome = Installed.REPLACED
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return outcome, final


def _same(store: Store, bundle: Bundle) -> bool:
    m = bundle.manifest
    try:
        installed = load_installed(store, m.kernel_release, m.id)
    except KspliceError:  # damaged or foreign: replace it
        return False
    return dict(installed.update.files) == dict(bundle.update.files)


def uninstall(store: Store, update_id: str, release: str, timing: Timing) -> Path:
    """Undo (if this kernel has it applied) and remove an installed update."""
    directory = store.installed_dir(release, update_id)
    if not directory.is_dir():
        raise NotFoundError(f"{update_id}: not installed for {release}")
    if release == kernel.release() and sysfs.present(module_name_of(update_id)):
        undo(store, update_id, timing)
    shutil.rmtree(directory)
    guard.clear(store, update_id)
    return directory
