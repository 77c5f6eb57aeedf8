"""What both repositories do with a package file: copy it in under its canonical name, once."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import make_dirs


class PublishError(KspliceError):
    """A package that cannot be published as it is, or a repository in the way."""


@dataclass(frozen=True)
class Placed:
    path: Path  # where it is in the repository
    new: bool  # False: the same package was there already


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def place(
    package: Path,
    directory: Path,
    where: tuple[str, str],
    same: Callable[[Path, Path], bool] = _same_bytes,
    finish: Callable[[Path], None] | None = None,
) -> Placed:
    """Copy `package` to directory/<subdir>/<name> (`where`), `finish` (signing) done on the copy
    before it takes its name. The same package published again is left as it is; another one
    under the same name and version is refused: the clients that have the first one would never
    see the second, and a repository must not change what a version is."""
    target = directory / where[0] / where[1]
    if target.exists():
        if same(package, target):
            return Placed(target, new=False)
        raise PublishError(
            f"{target.name} is already in the repository with other content",
            hint="a new build of an update needs a new version "
            "(`ksplice-pkg package --stream --build-number N`)",
        )
    make_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(package, tmp)
        os.chmod(tmp, 0o644)
        if finish:
            finish(Path(tmp))
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Placed(target, new=True)
