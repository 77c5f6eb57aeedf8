"""Driving the target kernel's own build system (kbuild).

The source tree stays pristine: every build goes to an object directory (`make O=...`), so one
unpacked tree serves any number of builds and is never edited by them.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.log import step
from ksplice_pkg.run import run

_PREPARED_STAMP = ".ksplice-prepared"


# make expands `$(...)` in command-line variables (O=, M=) and splits words at blanks; these
# characters also end or quote words in kbuild's generated recipes. A path with any of them
# could run commands or build elsewhere, so it is refused rather than passed on.
_MAKE_UNSAFE = re.compile(r"[\s$#:;=\\\"'`()|&<>*?\[\]{}%]")


def check_make_path(path: Path, what: str) -> Path:
    if _MAKE_UNSAFE.search(str(path)):
        raise KspliceError(
            f"{what} {str(path)!r} has characters make would interpret",
            hint="use a path of letters, digits and - _ . / + , @ ~ only",
        )
    return path


@dataclass(frozen=True)
class PreparedTree:
    """A kernel source tree with an object directory configured like the target kernel."""

    source: Path
    objdir: Path
    release: str

    def __post_init__(self) -> None:
        check_make_path(self.source, "the kernel source tree")
        check_make_path(self.objdir, "the object directory (under the cache)")

    def make_args(self, jobs: int, kcflags: str = "") -> list[str]:
        # KERNELRELEASE pins vermagic to the distro's uname -r: Debian's tree would otherwise
        # compute its own (e.g. 6.1.192) and the target kernel would refuse the module.
        flags = f"{kcflags} {debug_prefix_flags(self.source, self.objdir)}".strip()
        return [
            "make",
            "-C",
            str(self.objdir),
            f"-j{jobs}",
            f"KERNELRELEASE={self.release}",
            f"KCFLAGS={flags}",
        ]


# The names debug info gives the trees: the module's DWARF records where its sources and objects
# were (file names, the compile directory). The cache holds them under keys of the inputs' bytes
# and paths, so without these the same update built from another cache (a build farm's chroot,
# where the kernel source is the installed linux-source tarball) differs in every such path.
DEBUG_SOURCE_DIR = "/usr/src/ksplice-pkg/source"
DEBUG_WORK_DIR = "/usr/src/ksplice-pkg/work"


def debug_prefix_flags(source: Path, objdir: Path) -> str:
    """-fdebug-prefix-map options for a build of `source` into `objdir`, whose parent is the
    work directory (pre/, post/, post-src/, module/ are all in it). Debug info only: the code
    and __FILE__ (kbuild's own -fmacro-prefix-map) do not change."""
    # gcc tries the last option first: the source tree's map wins for a tree inside the work
    # directory (the patched copy).
    return (
        f"-fdebug-prefix-map={objdir.parent}={DEBUG_WORK_DIR} "
        f"-fdebug-prefix-map={source}={DEBUG_SOURCE_DIR}"
    )


def default_jobs() -> int:
    return os.cpu_count() or 1


def prepare_tree(
    source: Path, objdir: Path, *, config: Path, symvers: Path, release: str, jobs: int
) -> PreparedTree:
    """Configure objdir from the target's .config and build what external modules need."""
    if not (source / "Makefile").is_file() or not (source / "Kconfig").is_file():
        raise KspliceError(f"{source} is not a kernel source tree (no Makefile and Kconfig)")
    tree = PreparedTree(source=source, objdir=objdir, release=release)
    stamp = objdir / _PREPARED_STAMP
    wanted = f"{release}\n{config.read_text()}"
    if stamp.is_file() and stamp.read_text() == wanted:
        _install_symvers(symvers, objdir)
        return tree
    objdir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    shutil.copy2(config, objdir / ".config")
    with step(f"preparing {objdir} for {release}"):
        base = ["make", "-C", str(source), f"O={objdir}", f"KERNELRELEASE={release}"]
        run([*base, "olddefconfig"])
        run([*base, f"-j{jobs}", "modules_prepare"])
    _install_symvers(symvers, objdir)
    stamp.write_text(wanted)
    return tree


def _install_symvers(symvers: Path, objdir: Path) -> None:
    """modpost resolves the exported symbols (and their CRCs) of the distro kernel from the
    objdir's Module.symvers: it must be the one given for this run, whatever an earlier run of
    the same work dir was given (a stale one links modules the kernel rejects)."""
    installed = objdir / "Module.symvers"
    data = symvers.read_bytes()
    if not installed.is_file() or installed.read_bytes() != data:
        atomic_write(installed, data)


def build_external_module(tree: PreparedTree, moddir: Path, jobs: int) -> list[Path]:
    """Build the out-of-tree module(s) in moddir (a Kbuild/Makefile there) against tree."""
    check_make_path(moddir, "the module directory")
    run([*tree.make_args(jobs), f"M={moddir}", "modules"])
    modules = sorted(moddir.glob("*.ko"))
    if not modules:
        raise KspliceError(f"building {moddir} produced no .ko")
    return modules
