"""The apt repository: a pool of .deb files indexed by apt-ftparchive, Release signed by gpg.

    <repo>/apt/pool/main/<package>/<package>_<version>_<arch>.deb
    <repo>/apt/dists/ksplice/{Release,InRelease,Release.gpg}
    <repo>/apt/dists/ksplice/main/binary-<arch>/Packages{,.gz}

    deb [signed-by=/etc/apt/keyrings/ksplice.gpg] <url of repo>/apt ksplice main

apt-ftparchive rather than reprepro: bookworm's reprepro (5.3) keeps one version of a package
per distribution and deletes the older files, while the index apt-ftparchive makes of the pool
lists every version published, so that a machine can go back to an earlier version of a stream
(`apt install ksplice-updates-<release>=<version>`) and a fleet in the middle of an upgrade
finds the version it was told about.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

from ksplice_pkg.fsutil import atomic_write, make_dirs
from ksplice_pkg.package.naming import plain
from ksplice_pkg.publish.common import Placed, PublishError, place
from ksplice_pkg.publish.signing import Signer
from ksplice_pkg.run import run, run_text

SUITE = "ksplice"
COMPONENT = "main"
ORIGIN = "ksplice-pkg"
# The architectures of the hotpatch packages (package.naming's ELF machines): the index of each
# is there even when empty, so that a client of any of them reads the repository without errors.
ARCHITECTURES = ("amd64", "arm64", "i386")


def add(repo: Path, debs: list[Path], signer: Signer | None, epoch: int) -> list[Placed]:
    root = repo / "apt"
    placed = [place(deb, root / "pool" / COMPONENT, _pool_name(deb)) for deb in debs]
    dists = root / "dists" / SUITE
    current = (dists / "InRelease").is_file() if signer else (dists / "Release").is_file()
    if signer and current:
        current = signer.signs(dists / "InRelease")
    if any(p.new for p in placed) or not current:
        _index(root, signer, epoch)
    return placed


def _pool_name(deb: Path) -> tuple[str, str]:
    """(subdirectory, file name) of a .deb in the pool, from its own control fields."""
    fields = dict(
        line.split(": ", 1)
        for line in run_text(
            ["dpkg-deb", "--field", deb, "Package", "Version", "Architecture"]
        ).splitlines()
        if ": " in line
    )
    try:
        name, version, arch = (fields[f] for f in ("Package", "Version", "Architecture"))
    except KeyError as e:
        raise PublishError(f"{deb}: no {e.args[0]} field in its control file") from e
    # An epoch is not part of a Debian file name (Policy 5.6.12).
    version = version.split(":", 1)[-1]
    return plain(
        name, "package name"
    ), f"{name}_{plain(version, 'version')}_{plain(arch, 'arch')}.deb"


def _index(root: Path, signer: Signer | None, epoch: int) -> None:
    """A new dists/<suite> tree for the whole pool, swapped in for the old one."""
    new = root / "dists" / f".{SUITE}.new"
    shutil.rmtree(new, ignore_errors=True)
    for arch in ARCHITECTURES:
        # Paths in the index are relative to the repository root: cwd is that root.
        packages = run(
            ["apt-ftparchive", "--arch", arch, "packages", f"pool/{COMPONENT}"], cwd=root
        ).stdout
        binary = make_dirs(new / COMPONENT / f"binary-{arch}")
        atomic_write(binary / "Packages", packages)
        atomic_write(binary / "Packages.gz", gzip.compress(packages, mtime=0))
    fields = {
        "Origin": ORIGIN,
        "Label": ORIGIN,
        "Suite": SUITE,
        "Codename": SUITE,
        "Architectures": " ".join(ARCHITECTURES),
        "Components": COMPONENT,
        "Description": "Live kernel updates published by ksplice-pkg",
        "Date": time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(epoch)),
    }
    options = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in fields.items()]
    release = run(["apt-ftparchive", *options, "release", new]).stdout
    atomic_write(new / "Release", release)
    if signer:
        signer.clearsign(new / "Release", new / "InRelease")
        signer.detach_sign(new / "Release", new / "Release.gpg")
    live = root / "dists" / SUITE
    old = root / "dists" / f".{SUITE}.old"
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        os.rename(live, old)
    os.rename(new, live)
    shutil.rmtree(old, ignore_errors=True)
