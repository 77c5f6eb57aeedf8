"""Installing an update into the tree that boot reapplies from, and removing it again.

This is what a package does with its files, done by hand: `ksplice-pkg install UPDATE` puts the
tarball's ksplice-<id>/ directory at updates/<kernel-release>/<id>/ (for any release: a machine
may install updates for the kernel it will boot next).
"""

from __future__ import annotations

import shutil
import tempfile
from enum import Enum
from pathlib import Path

from ksplice_pkg.runtime import guard, kernel, sysfs
from ksplice_pkg.runtime.apply import Timing
from ksplice_pkg.runtime.bundle import Bundle, check_module
from ksplice_pkg.runtime.errors import NotFoundError
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.runtime.undo import undo


class Installed(Enum):
    NEW = "installed"
    SAME = "already installed"
    REPLACED = "replaced the installed copy"


def install(store: Store, bundle: Bundle) -> tuple[Installed, Path]:
    """Copy the update in; the directory appears whole or not at all (rename)."""
    check_module(bundle)
    manifest = bundle.manifest
    final = store.installed_dir(manifest.kernel_release, manifest.id)
    if final.is_dir():
        try:
            same = (final / manifest.module).read_bytes() == bundle.module_path.read_bytes()
        except OSError:
            same = False
        if same:
            return Installed.SAME, final
    final.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name is skipped by installed_ids(): a crash mid-copy leaves nothing boot would read.
    tmp = Path(tempfile.mkdtemp(prefix=f".{manifest.id}.", dir=final.parent))
    try:
        shutil.copytree(bundle.directory, tmp, dirs_exist_ok=True)
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
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


def uninstall(store: Store, update_id: str, release: str, timing: Timing) -> Path:
    """Undo (if this kernel has it applied) and remove an installed update."""
    directory = store.installed_dir(release, update_id)
    if not directory.is_dir():
        raise NotFoundError(f"{update_id}: not installed for {release}")
    if release == kernel.release() and sysfs.present(f"ksplice_{update_id}"):
        undo(store, update_id, timing)
    shutil.rmtree(directory)
    guard.clear(store, update_id)
    return directory
