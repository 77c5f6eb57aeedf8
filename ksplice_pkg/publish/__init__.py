"""Publishing packages: an apt and a dnf repository in one directory, made by the distributions'
own tools (apt-ftparchive; createrepo_c and modifyrepo_c), signed with the publisher's OpenPGP
key, so that machines take new updates by `apt upgrade` / `dnf upgrade` (and the unattended
runs of both) from a source they verify.

    <repo>/apt/           apt.py
    <repo>/rpm/           dnf.py
    <repo>/signing-key.gpg, signing-key.asc   the public key (signing.py)

Publishing adds: every version published stays, and publishing a package again changes nothing
(the indexes are rewritten only when a package came in or they are not signed by the key given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ksplice_pkg.fsutil import ensure_writable_dir
from ksplice_pkg.publish import apt, dnf
from ksplice_pkg.publish.common import Placed, PublishError
from ksplice_pkg.publish.signing import Signer
from ksplice_pkg.runtime.lock import locked
from ksplice_pkg.timestamp import build_time

__all__ = ["Placed", "PublishError", "Signer", "publish"]

LOCK = ".ksplice-publish.lock"


def publish(repo: Path, packages: Sequence[Path], signer: Signer | None) -> list[Placed]:
    """Add .deb and .rpm files to the repositories under repo; returns where each one is."""
    unknown = [p for p in packages if p.suffix not in (".deb", ".rpm")]
    if unknown:
        raise PublishError(f"{unknown[0]}: neither a .deb nor an .rpm")
    ensure_writable_dir(repo, "the repository")
    debs = [p for p in packages if p.suffix == ".deb"]
    rpms = [p for p in packages if p.suffix == ".rpm"]
    # One publisher at a time: two would each index the pool without the other's packages.
    with locked(repo / LOCK, 600):
        if signer:
            signer.export(repo)
        placed = apt.add(repo, debs, signer, build_time()) if debs else []
        placed += dnf.add(repo, rpms, signer) if rpms else []
    by_input = dict(zip([*debs, *rpms], placed, strict=True))
    return [by_input[p] for p in packages]
