"""An update as the commands receive it: a tarball, its unpacked directory, or an installed id.

Whatever the form, it is read whole into memory and checked there (ksplice_pkg.tarball: the
layout, the manifest, the module's sha256) before anything is loaded or installed: the bytes
that were checked are the bytes that are used.

An id names an update installed for the running kernel, never a path: root typing
`ksplice-pkg apply abc` in a directory where anyone can write must not load a planted `./abc/`.
A path is whatever is not an id; `./abc` names that directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.manifest import ID_RE, Manifest
from ksplice_pkg.runtime.errors import NotFoundError, WrongKernelError
from ksplice_pkg.runtime.store import Store
from ksplice_pkg.tarball import UpdateFiles, read_directory, read_tarball


@dataclass(frozen=True)
class Bundle:
    update: UpdateFiles
    source: str  # what the user named: a path, or "installed"

    @property
    def manifest(self) -> Manifest:
        return self.update.manifest


def load_installed(store: Store, release: str, update_id: str) -> Bundle:
    """An update installed for `release`. The installed tree is what boot loads as root, so
    every file must be root's and writable by root alone."""
    directory = store.installed_dir(release, update_id)
    return Bundle(read_directory(directory, owned=True), "installed")


def installed_manifest(store: Store, release: str, update_id: str) -> Manifest:
    return load_installed(store, release, update_id).manifest


def open_update(ref: str, store: Store, release: str) -> Bundle:
    """The update named by ref: the id of an update installed for `release`, or the path of a
    tarball or directory."""
    if ID_RE.fullmatch(ref):
        if not store.installed_dir(release, ref).is_dir():
            raise NotFoundError(
                f"{ref}: no update of that id is installed for {release}",
                hint=f"installed updates live in {store.updates_dir / release}; "
                f"to name a file or directory of that name, write ./{ref}",
            )
        return load_installed(store, release, ref)
    path = Path(ref)
    if path.is_dir():
        return Bundle(read_directory(path), str(path.resolve()))
    if path.is_file():
        return Bundle(read_tarball(path), str(path.resolve()))
    raise NotFoundError(
        f"{ref}: no such update tarball or directory",
        hint="give an update tarball (ksplice-<id>.tar.gz), its directory, or an installed id",
    )


def check_kernel(manifest: Manifest, release: str, build_id: str | None) -> None:
    """Refuse an update made for another kernel: another release, or another build of it."""
    if manifest.kernel_release != release:
        raise WrongKernelError(
            f"update {manifest.id} is for kernel {manifest.kernel_release}, "
            f"this kernel is {release}"
        )
    if manifest.target_build_id and build_id and manifest.target_build_id != build_id:
        raise WrongKernelError(
            f"update {manifest.id} is for the build {manifest.target_build_id} of {release}, "
            f"this kernel is the build {build_id}",
            hint="the same release was rebuilt; the update must be made for this build",
        )
