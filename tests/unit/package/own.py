"""Building the tool's own packages from this source tree, as a packager would: a copy of the
tree (tracked and new files, as git sees them) goes through dpkg-buildpackage or rpmbuild."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from ksplice_pkg.run import run

ROOT = Path(__file__).resolve().parents[3]
VERSION = "0.1.0"
# The distro's tools, not a developer's pyenv or venv shims: pybuild and rpmbuild run the
# system python3, which has the Debian-packaged build dependencies.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(f for f in listed.split("\0") if f and (ROOT / f).is_file())


def _env(work: Path) -> dict[str, str]:
    return {"PATH": SYSTEM_PATH, "HOME": str(work)}


def copy_tree(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in _source_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
        target.chmod((ROOT / name).stat().st_mode & 0o777)
    return dest


def build_debs(work: Path) -> list[Path]:
    """dpkg-buildpackage -us -uc -b; returns the .deb files it wrote next to the tree."""
    src = copy_tree(work / f"ksplice-pkg-{VERSION}")
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=_env(work), timeout=900)
    return sorted(work.glob("*.deb"))


def build_rpms(work: Path) -> list[Path]:
    """rpmbuild -bb of rpm/ksplice-pkg.spec from a Source0 tarball of the tree. --nodeps: the
    BuildRequires name Fedora packages, which Debian's rpm database does not hold."""
    top = work / "rpmbuild"
    sources = top / "SOURCES"
    sources.mkdir(parents=True)
    tree = copy_tree(work / f"ksplice-pkg-{VERSION}")
    with tarfile.open(sources / f"ksplice-pkg-{VERSION}.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    spec = tree / "rpm" / "ksplice-pkg.spec"
    run(["rpmbuild", "--nodeps", "-bb", "--define", f"_topdir {top}", spec], env=_env(work))
    return sorted((top / "RPMS").rglob("*.rpm"))
