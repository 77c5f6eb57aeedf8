"""An update as the commands receive it: a tarball, its unpacked directory, or an installed id.

Whatever the form, it ends up as a directory holding manifest.json, the module, description and
patch (the tarball's ksplice-<id>/ directory), checked against the running kernel and against the
module's sha256 before anything is loaded.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ksplice_pkg.manifest import ID_RE, MANIFEST_NAME, Manifest
from ksplice_pkg.runtime.errors import IntegrityError, NotFoundError, WrongKernelError
from ksplice_pkg.runtime.store import Store


@dataclass(frozen=True)
class Bundle:
    manifest: Manifest
    directory: Path
    source: str  # what the user named: a path, or "installed"

    @property
    def module_path(self) -> Path:
        return self.directory / self.manifest.module

    def text(self, name: str) -> str:
        try:
            return (self.directory / name).read_text(errors="replace")
        except OSError:
            return ""


def load_dir(directory: Path, source: str) -> Bundle:
    manifest_file = directory / MANIFEST_NAME
    try:
        data = manifest_file.read_bytes()
    except OSError as e:
        raise NotFoundError(f"{manifest_file}: {e.strerror}") from e
    return Bundle(Manifest.from_json(data, str(manifest_file)), directory, source)


def check_members(tar: tarfile.TarFile) -> str:
    """The tarball's one top directory; refuses members that are not plain files or
    directories, or whose path escapes that directory (absolute, `..`)."""
    tops: set[str] = set()
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        if not (member.isfile() or member.isdir()):
            raise IntegrityError(f"the tarball's member {member.name!r} is not a plain file")
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise IntegrityError(f"the tarball's member {member.name!r} escapes its directory")
        parts = [p for p in path.parts if p != "."]
        if parts:
            tops.add(parts[0])
    if len(tops) != 1:
        raise IntegrityError(
            f"an update tarball holds one ksplice-<id>/ directory, this one holds {sorted(tops)}"
        )
    return tops.pop()


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    # check_members() already refused links, devices and escaping paths; the "data" filter
    # (PEP 706) also drops modes that make no sense in an update, where Python has it (Debian
    # 12's python3.11 may not).
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
    else:
        tar.extractall(into)


@contextmanager
def open_update(ref: str, store: Store, release: str) -> Iterator[Bundle]:
    """The update named by ref: a tarball, a directory, or an id installed for `release`."""
    path = Path(ref)
    if path.is_dir():
        yield load_dir(path, str(path.resolve()))
    elif path.is_file():
        with tempfile.TemporaryDirectory(prefix="ksplice-pkg-") as tmp:
            try:
                with tarfile.open(path) as tar:
                    top = check_members(tar)
                    _extract(tar, Path(tmp))
            except tarfile.TarError as e:
                raise IntegrityError(f"{path}: not a readable update tarball ({e})") from e
            yield load_dir(Path(tmp) / top, str(path.resolve()))
    elif ID_RE.fullmatch(ref) and store.installed_dir(release, ref).is_dir():
        yield load_dir(store.installed_dir(release, ref), "installed")
    else:
        raise NotFoundError(
            f"{ref}: no such file, directory, or update installed for {release}",
            hint=f"installed updates live in {store.updates_dir / release}",
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


def check_module(bundle: Bundle) -> None:
    """Refuse a module whose sha256 differs from the manifest's (before it is loaded)."""
    digest = hashlib.sha256()
    try:
        with bundle.module_path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise IntegrityError(f"{bundle.module_path}: {e.strerror}") from e
    if digest.hexdigest() != bundle.manifest.module_sha256:
        raise IntegrityError(
            f"{bundle.module_path}: sha256 {digest.hexdigest()} differs from the manifest's "
            f"{bundle.manifest.module_sha256}",
            hint="the module was changed or damaged; reinstall the update",
        )
