"""Where the runtime keeps things: the installed tree and the state files.

Layout (each root can be moved by an environment variable, for unit tests only):

    /usr/lib/ksplice-pkg/updates/<kernel-release>/<id>/   ($KSPLICE_PKG_UPDATES_DIR)
        manifest.json, <module>.ko, description, patch: exactly the ksplice-<id>/ directory
        of the update tarball; packages drop it there, `ksplice-pkg install` does it by hand.
    /var/lib/ksplice-pkg/                                  ($KSPLICE_PKG_STATE_DIR)
        guard.json              crash-loop guard: what this boot loaded, what proved stable
        quarantine/<id>.json    updates the guard took out of the boot, and why
    /run/ksplice-pkg/                                      ($KSPLICE_PKG_RUN_DIR)
        lock                    serialises the runtime commands
        applied/<id>/manifest.json, record.json   what this boot applied, when, from where
        superseded/<id>.json    updates a cumulative (replace) update took over
        deferred-undo/<id>.json undos a package removal left for the end of the package
                                manager's run (`undo --defer`, `undo --deferred`)
        report.json             the outcome of this boot's reapply

/run is per boot like the kernel's own state; /var/lib survives reboots and crashes. Every file
is written atomically (fsutil.atomic_write): a crash leaves the old file or the new one.

Every path below is built from an update id and a kernel release checked on the spot
(manifest.check_update_id, check_release): whatever a command line or a manifest says, a path
stays inside its tree. Directories are made 0755 and files 0644 whatever the caller's umask.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ksplice_pkg.fsutil import atomic_write, make_dirs
from ksplice_pkg.manifest import (
    ID_RE,
    MANIFEST_NAME,
    RELEASE_RE,
    Manifest,
    ManifestError,
    check_release,
    check_update_id,
)

UPDATES_DIR = Path("/usr/lib/ksplice-pkg/updates")
STATE_DIR = Path("/var/lib/ksplice-pkg")
RUN_DIR = Path("/run/ksplice-pkg")


def read_json(path: Path) -> Any:
    """A state file's content, None when it is missing or unreadable: a torn or foreign file
    must not stop the next run (atomic writes make torn files unlikely, not impossible on
    filesystems that lie about fsync)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: object) -> None:
    make_dirs(path.parent)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    # The rename must reach the disk too: the crash-loop guard's record is written just before
    # a load that may crash the machine a moment later, within the filesystem's commit interval.
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Store:
    updates_dir: Path
    state_dir: Path
    run_dir: Path

    @classmethod
    def default(cls) -> Store:
        env = os.environ
        return cls(
            Path(env.get("KSPLICE_PKG_UPDATES_DIR") or UPDATES_DIR),
            Path(env.get("KSPLICE_PKG_STATE_DIR") or STATE_DIR),
            Path(env.get("KSPLICE_PKG_RUN_DIR") or RUN_DIR),
        )

    # -- installed updates -------------------------------------------------------------------

    def installed_dir(self, release: str, update_id: str) -> Path:
        return self.updates_dir / check_release(release) / check_update_id(update_id)

    def installed_ids(self, release: str) -> list[str]:
        """Ids installed for a kernel release (temporary directories of an install skipped)."""
        base = self.updates_dir / check_release(release)
        if not base.is_dir():
            return []
        return sorted(
            p.name for p in base.iterdir() if p.is_dir() and ID_RE.fullmatch(p.name) is not None
        )

    # -- what this boot applied --------------------------------------------------------------

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "lock"

    def installed_releases(self) -> list[str]:
        base = self.updates_dir
        names = (p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else ()
        return sorted(n for n in names if RELEASE_RE.fullmatch(n))

    def applied_dir(self, update_id: str) -> Path:
        return self.run_dir / "applied" / check_update_id(update_id)

    def record_applied(self, manifest: Manifest, source: str, applied_at: float) -> None:
        # The manifest is kept here because an update applied from a tarball in /tmp must
        # stay describable (and undoable) after the tarball is gone.
        directory = make_dirs(self.applied_dir(manifest.id))
        atomic_write(directory / MANIFEST_NAME, manifest.to_json())
        write_json(directory / "record.json", {"source": source, "applied_at": applied_at})

    def forget_applied(self, update_id: str) -> None:
        shutil.rmtree(self.applied_dir(update_id), ignore_errors=True)

    def applied_records(self) -> dict[str, tuple[Manifest, dict[str, Any]]]:
        """The manifests and records of what ksplice-pkg applied in this boot."""
        base = self.run_dir / "applied"
        out: dict[str, tuple[Manifest, dict[str, Any]]] = {}
        if not base.is_dir():
            return out
        for directory in sorted(base.iterdir()):
            if not ID_RE.fullmatch(directory.name):
                continue
            manifest_file = directory / MANIFEST_NAME
            try:
                manifest = Manifest.from_json(manifest_file.read_bytes(), str(manifest_file))
            except (OSError, ManifestError):  # a torn or foreign record: not recorded
                continue
            record = read_json(directory / "record.json")
            out[manifest.id] = (manifest, record if isinstance(record, dict) else {})
        return out

    # -- undos deferred by package removals ------------------------------------------------------

    def _deferred_file(self, update_id: str) -> Path:
        return self.run_dir / "deferred-undo" / f"{check_update_id(update_id)}.json"

    def record_deferred_undo(self, update_id: str) -> None:
        write_json(self._deferred_file(update_id), {"at": time.time()})

    def deferred_undos(self) -> list[str]:
        return _ids_in(self.run_dir / "deferred-undo")

    def forget_deferred_undo(self, update_id: str) -> None:
        self._deferred_file(update_id).unlink(missing_ok=True)

    # -- superseded, report ------------------------------------------------------------------

    def _superseded_file(self, update_id: str) -> Path:
        return self.run_dir / "superseded" / f"{check_update_id(update_id)}.json"

    def record_superseded(self, update_id: str, by: str) -> None:
        write_json(self._superseded_file(update_id), {"by": by})

    def superseded(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for update_id in _ids_in(self.run_dir / "superseded"):
            data = read_json(self._superseded_file(update_id))
            if isinstance(data, dict) and isinstance(data.get("by"), str):
                out[update_id] = data["by"]
        return out

    def clear_superseded(self, update_id: str) -> None:
        self._superseded_file(update_id).unlink(missing_ok=True)

    @property
    def report_file(self) -> Path:
        return self.run_dir / "report.json"

    # -- crash-loop guard --------------------------------------------------------------------

    @property
    def guard_file(self) -> Path:
        return self.state_dir / "guard.json"

    def quarantine_file(self, update_id: str) -> Path:
        return self.state_dir / "quarantine" / f"{check_update_id(update_id)}.json"

    def quarantined(self) -> dict[str, str]:
        """Quarantined ids and why."""
        out: dict[str, str] = {}
        for update_id in _ids_in(self.state_dir / "quarantine"):
            data = read_json(self.quarantine_file(update_id))
            reason = data.get("reason") if isinstance(data, dict) else None
            out[update_id] = reason if isinstance(reason, str) else "quarantined"
        return out


def _ids_in(base: Path) -> list[str]:
    """The ids of the <id>.json state files in base; any other name is not ours."""
    stems = (p.stem for p in base.glob("*.json")) if base.is_dir() else ()
    return sorted(s for s in stems if ID_RE.fullmatch(s))
