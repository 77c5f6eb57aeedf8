"""KERNEL_SOURCE as distros ship it, turned into a kernel tree with the distro's patches applied.

Accepted: a plain tree (used in place); a Debian source package (`linux_*.dsc` with its
tarballs: checksums checked with python-debian, the signature with gpgv when a keyring is
given, unpacked by `dpkg-source -x`, which applies debian/patches); a `linux-source-X.Y` .deb or
the `linux-source-X.Y.tar.*` inside it; a kernel source RPM (its %prep run by `rpmbuild -bp`
with a private _topdir, so its patch series is applied exactly as the distro's build does).

Unpacked trees are cached by the content of what was given, under `<cache>/sources/<sha256>/`:
a second update for the same source package starts from the same tree, and so from the same
prepared work directory (create keys it by the tree's path).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ksplice_pkg.cache import cache_entry_lock, mark_used
from ksplice_pkg.distro.archive import (
    DISTRO_MAX_TOTAL,
    deb_fields,
    rpm_header,
    rpm_payload,
    unpack_deb,
    unpack_tar,
)
from ksplice_pkg.errors import CommandError, InternalError, KspliceError
from ksplice_pkg.fsutil import atomic_directory, file_digest, sha256_file
from ksplice_pkg.log import logger, step
from ksplice_pkg.run import run
from ksplice_pkg.unpack import ArchiveError, MemberKind, SafeTree

_TARBALL_RE = re.compile(r"\.tar(\.(gz|xz|bz2|zst))?$")


class SourceKind(Enum):
    TREE = "tree"
    DSC = "Debian source package"
    SOURCE_DEB = "linux-source package"
    TARBALL = "source tarball"
    SRPM = "source RPM"


@dataclass(frozen=True)
class KernelSource:
    """What KERNEL_SOURCE names, identified without unpacking it."""

    path: Path
    kind: SourceKind
    # The distro's version of the source (6.1.187-1, or 6.1.187 for an RPM or a tree), when
    # known before unpacking: kernel packages are checked against it before any slow work.
    version: str | None
    arch: str | None = None  # a source RPM's arch is "src"; a .deb's is "all"

    @property
    def upstream(self) -> str | None:
        return upstream_version(self.version) if self.version else None


def upstream_version(version: str) -> str:
    """6.1.187 of 6.1.187-1, 1:6.1.187-1~deb12u1, 6.12.117+deb12 or 6.1.187."""
    version = version.split(":", 1)[-1]
    return re.split(r"[-+~]", version, maxsplit=1)[0]


def tree_version(tree: Path) -> str | None:
    """VERSION.PATCHLEVEL.SUBLEVEL from a kernel tree's top Makefile, None if it is not one."""
    makefile = tree / "Makefile"
    if not makefile.is_file() or not (tree / "Kconfig").is_file():
        return None
    head = makefile.read_text(errors="replace")[:2000]
    values = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)$", head, re.M))
    if "VERSION" not in values or "PATCHLEVEL" not in values:
        return None
    return f"{values['VERSION']}.{values['PATCHLEVEL']}.{values.get('SUBLEVEL', '0')}"


def identify(path: Path) -> KernelSource:
    """Which kind of source `path` is, and its version, from its name and metadata only."""
    if path.is_dir():
        return KernelSource(path, SourceKind.TREE, tree_version(path))
    if not path.is_file():
        raise KspliceError(f"KERNEL_SOURCE {path} does not exist")
    name = path.name
    if name.endswith(".dsc"):
        return KernelSource(path, SourceKind.DSC, _dsc(path).get("Version"))
    if name.endswith(".src.rpm"):
        header = rpm_header(path)
        if not header.is_source:
            raise KspliceError(f"{path} is a binary RPM, not a source RPM")
        if not re.fullmatch(r"(kernel|linux)([-_].*)?", header.name):
            raise KspliceError(
                f"{path} is the source RPM of {header.name!r}, not of a kernel",
                hint="give the kernel's source RPM (e.g. kernel-<version>.src.rpm)",
            )
        return KernelSource(path, SourceKind.SRPM, f"{header.version}-{header.release}", "src")
    if name.endswith(".deb"):
        fields = deb_fields(path)
        if not fields.get("Package", "").startswith("linux-source-"):
            raise KspliceError(
                f"{path} is the package {fields.get('Package')!r}, not a linux-source-X.Y one",
                hint="give linux-source-X.Y_*.deb, the kernel's .dsc, or an unpacked tree",
            )
        return KernelSource(path, SourceKind.SOURCE_DEB, fields.get("Version"), "all")
    if _TARBALL_RE.search(name):
        return KernelSource(path, SourceKind.TARBALL, None)
    raise KspliceError(
        f"KERNEL_SOURCE {path} is neither a directory nor a kernel source package",
        hint="give a kernel tree, a linux_*.dsc, a linux-source-X.Y .deb or its "
        "linux-source-X.Y.tar.xz, or a kernel .src.rpm",
    )


def prepare_source(source: KernelSource, cache: Path, keyring: Path | None = None) -> Path:
    """The kernel tree of `source`: the tree itself, or its unpacked copy in the cache."""
    if source.kind is SourceKind.TREE:
        if keyring is not None:
            raise KspliceError("--keyring checks source packages; KERNEL_SOURCE is a tree")
        return source.path
    if source.kind is SourceKind.DSC:
        files = check_dsc(source.path, keyring)
        key = sha256_file(source.path)
    else:
        if keyring is not None:
            raise KspliceError(
                f"--keyring checks .dsc signatures; {source.path} is a {source.kind.value}",
                hint="check its signature with the distro's own tools (apt, rpmkeys) first",
            )
        files, key = [source.path], sha256_file(source.path)
    entry = cache / "sources" / key
    with cache_entry_lock(entry):
        if (tree := _cached_tree(entry)) is not None:
            logger.info("%s is unpacked already: %s", source.path.name, tree)
            mark_used(cache, [entry])
            return tree
        _unpack_source(source, entry, files)
    found = _cached_tree(entry)
    if found is None:  # _unpack_source checked the one tree it leaves
        raise InternalError(f"{entry}: no source tree after unpacking")
    return found


def _unpack_source(source: KernelSource, entry: Path, files: list[Path]) -> None:
    with (
        step(f"unpacking the {source.kind.value} {source.path.name}"),
        atomic_directory(entry) as tmp,
    ):
        if source.kind is SourceKind.DSC:
            _unpack_dsc(source.path, tmp)
        elif source.kind is SourceKind.SRPM:
            _prepare_srpm(source.path, tmp)
        elif source.kind is SourceKind.SOURCE_DEB:
            unpack_source_deb(source.path, tmp)
        else:
            _unpack_tarball(source.path, tmp)
        _only_tree(tmp, source.path)
        logger.debug("kernel tree of %s (from %s)", source.path, ", ".join(map(str, files)))


def _cached_tree(entry: Path) -> Path | None:
    trees = [d for d in entry.iterdir() if d.is_dir()] if entry.is_dir() else []
    return trees[0] if len(trees) == 1 and tree_version(trees[0]) else None


def _only_tree(directory: Path, origin: Path) -> Path:
    """Leave exactly one directory, the kernel tree, in `directory`."""
    trees = [d for d in directory.iterdir() if d.is_dir() and tree_version(d)]
    if len(trees) != 1:
        raise KspliceError(
            f"{origin} does not unpack to one kernel source tree "
            f"(found: {', '.join(d.name for d in directory.iterdir()) or 'nothing'})",
            hint="give the kernel's own source package",
        )
    for other in directory.iterdir():
        if other != trees[0]:
            if other.is_dir() and not other.is_symlink():
                shutil.rmtree(other)
            else:
                other.unlink()
    return trees[0]


# --- Debian source packages -------------------------------------------------------------------


def _dsc(path: Path) -> dict[str, str]:
    from debian.deb822 import Dsc

    try:
        with path.open("rb") as f:
            dsc = Dsc(f)
    except (OSError, ValueError) as e:
        raise KspliceError(f"cannot read the source package description {path}: {e}") from e
    if "Source" not in dsc or "Version" not in dsc:
        raise KspliceError(f"{path} is not a Debian source package description (.dsc)")
    return {k: v for k, v in dsc.items() if isinstance(v, str)}


def check_dsc(dsc_path: Path, keyring: Path | None) -> list[Path]:
    """The files of a .dsc, each present with the size and SHA256 (else MD5) it lists."""
    from debian.deb822 import Dsc

    with dsc_path.open("rb") as f:
        dsc = Dsc(f)
    if keyring is not None:
        try:
            run(["gpgv", "--keyring", keyring.resolve(), dsc_path])
        except CommandError as e:
            raise KspliceError(
                f"the signature of {dsc_path} is not valid for the keyring {keyring}",
                hint="check that the keyring holds the archive's or the uploader's key "
                f"(gpgv said: {e.message.splitlines()[-1].strip()})",
            ) from e
    elif "BEGIN PGP SIGNED MESSAGE" in dsc_path.read_text(errors="replace")[:100]:
        logger.info("%s is signed; give --keyring to check the signature", dsc_path.name)
    listed = dsc.get("Checksums-Sha256") or []
    algorithm = "sha256"
    if not listed:
        listed, algorithm = dsc.get("Files") or [], "md5sum"
    if not listed:
        raise KspliceError(f"{dsc_path} lists no files")
    missing, wrong, files = [], [], []
    for entry in listed:
        name = entry["name"]
        if "/" in name or name in (".", ".."):
            raise ArchiveError(
                f"{dsc_path} lists a file outside its directory: {name!r}",
                hint="the source package is damaged or hostile; download it again",
            )
        path = dsc_path.parent / name
        files.append(path)
        if not path.is_file():
            missing.append(name)
            continue
        size = entry["size"]
        if not size.isdigit():
            raise KspliceError(
                f"{dsc_path} lists {name!r} with the size {size!r}, which is not a number",
                hint="the .dsc is damaged: download the source package again",
            )
        digest = file_digest(path, "md5" if algorithm == "md5sum" else "sha256")
        if path.stat().st_size != int(size) or digest != entry[algorithm]:
            wrong.append(name)
    source, version = dsc["Source"], dsc["Version"]
    if missing:
        raise KspliceError(
            f"{dsc_path} lists files that are not beside it: {', '.join(missing)}",
            hint=f"download the whole source package: `apt-get source --download-only "
            f"{source}={version}` (with a deb-src entry), or `ksplice-pkg fetch --source-package`",
        )
    if wrong:
        raise KspliceError(
            f"{', '.join(wrong)} of {dsc_path} do not have the {algorithm} checksum or size "
            "the .dsc lists",
            hint=f"download them again: `apt-get source --download-only {source}={version}`",
        )
    return files


def _unpack_dsc(dsc_path: Path, dest: Path) -> None:
    # dpkg-source checks the listed files again and applies debian/patches (format 3.0 quilt).
    # --skip-debianization is not used: debian/ is harmless to kbuild and tells what was applied.
    # Without a target dir it unpacks into <source>-<upstream version>, e.g. linux-6.1.187.
    run(["dpkg-source", "--no-copy", "-x", dsc_path.resolve()], cwd=dest)


# --- linux-source packages and tarballs ---------------------------------------------------------


def unpack_source_deb(deb: Path, dest: Path) -> None:
    """The linux-source-X.Y tree of a linux-source .deb, unpacked into dest."""
    inner = dest / "deb"
    unpack_deb(deb, inner, wanted=lambda name: name.startswith("usr/src/"))
    tarballs = sorted((inner / "usr" / "src").glob("linux-source-*.tar*"))
    if len(tarballs) != 1:
        raise KspliceError(f"{deb} does not hold one linux-source tarball")
    unpack_tar(tarballs[0], dest)
    shutil.rmtree(inner)


def _unpack_tarball(tarball: Path, dest: Path) -> None:
    unpack_tar(tarball, dest)


# --- source RPMs ----------------------------------------------------------------------------------


def _prepare_srpm(srpm: Path, dest: Path) -> None:
    """Run the spec's %prep with a private _topdir, as `rpmbuild -bp` does for the distro.

    The payload is unpacked here rather than by `rpm -i`, so its member names are checked.
    %prep is the spec's own shell code: as with rpmbuild, give only source RPMs you trust.
    """
    top = dest / "rpmbuild"
    sources = top / "SOURCES"
    sources.mkdir(parents=True)
    with rpm_payload(srpm) as members:
        tree = SafeTree(sources, str(srpm), max_total=DISTRO_MAX_TOTAL)
        for member in members:
            # Checked before the member is written: rpmbuild is given files only, no
            # directory or link of the package's making.
            if member.kind is not MemberKind.FILE or "/" in member.name:
                what = "in a subdirectory" if "/" in member.name else f"a {member.kind.value}"
                raise ArchiveError(
                    f"{srpm}: member {member.name!r} is {what}: a source RPM's payload is "
                    "plain files, side by side",
                    hint="the package is damaged or hostile, or not a source RPM",
                )
            tree.add(member)
    specs = sorted(sources.glob("*.spec"))
    if len(specs) != 1:
        raise KspliceError(f"{srpm} holds {len(specs)} spec files, not one")
    build = top / "BUILD"
    build.mkdir(parents=True)
    (top / "tmp").mkdir()
    try:
        run(
            [
                "rpmbuild",
                "-bp",
                "--nodeps",
                "--define",
                f"_topdir {top}",
                "--define",
                f"_sourcedir {sources}",
                "--define",
                f"_builddir {build}",
                # rpmbuild writes each section's script under _tmppath (/var/tmp by default):
                # nothing goes outside the cache.
                "--define",
                f"_tmppath {top / 'tmp'}",
                specs[0],
            ]
        )
    except CommandError as e:
        raise KspliceError(
            f"the %prep of {srpm.name} failed: {e.message}",
            hint="the spec's patches must apply to its sources; see rpmbuild's output above",
        ) from e
    # %prep unpacks into BUILD/<something>[/<something>]: find the kernel tree in it.
    candidates = [d for d in build.rglob("Kconfig") if d.parent.joinpath("Makefile").is_file()]
    trees = sorted(
        {c.parent for c in candidates if tree_version(c.parent)}, key=lambda p: len(p.parts)
    )
    if not trees:
        raise KspliceError(f"the %prep of {srpm.name} left no kernel source tree")
    trees[0].rename(dest / trees[0].name)
    shutil.rmtree(top)
