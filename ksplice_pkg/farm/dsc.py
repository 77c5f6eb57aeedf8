"""The Debian source package of a hotpatch: a native `3.0 (native)` package whose debian/rules
runs `ksplice-pkg build` against the target kernel's installed packages.

Of a whole upload, debian/rules first rebuilds the two trees in the build tree from the
installed linux-source tarball and what the source package carries (farm/upload.py), then runs
`build NEW --from OLD` on them.

The binary package is the .deb `build` makes (the same bytes as a maintainer's local build
under the same SOURCE_DATE_EPOCH, which dpkg-buildpackage takes from the changelog's date), so
debian/rules registers that file with dpkg-distaddfile instead of assembling one with dh: the
control file's binary stanza only names it for dpkg-genchanges and the archive.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import textwrap
import time
from pathlib import Path

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.farm.options import (
    PATCH_FILE,
    SYMBOL_MAP_FILE,
    FarmBuild,
    InstalledTarget,
)
from ksplice_pkg.farm.upload import (
    NEW_CHANGELOG,
    OLD_CHANGELOG,
    REMOVED_FILE,
    UPLOAD_TAR,
    write_upload,
)
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.package.common import COPYRIGHT
from ksplice_pkg.run import run

# Where the build puts the .deb and its own cache, inside the unpacked source (cleaned by clean);
# the cache by its absolute path, which kbuild's O= needs.
OUT_DIR = "debian/ksplice-out"
CACHE_DIR = "debian/ksplice-cache"
# Of an upload: the two trees build compares, rebuilt in the build tree.
TREES_DIR = "debian/ksplice-trees"
OLD_TREE = f"{TREES_DIR}/old"
NEW_TREE = f"{TREES_DIR}/new"
# More CVEs than this go into one changelog item, not one item each.
_CVE_ITEMS = 3
STANDARDS_VERSION = "4.6.2"


def control(build: FarmBuild) -> str:
    t = build.target
    origin = "a patch to" if build.upload is None else "a new upload of"
    built = (
        f"Built by ksplice-pkg from {origin} the kernel's source; applied on installation, "
        "undone on removal, reapplied at boot."
    )
    depends = [f"ksplice-pkg (>= {__version__})"]
    depends += [f"{package} (= {version})" for package, version in t.build_depends()]
    return (
        f"Source: {build.name}\n"
        "Section: kernel\n"
        "Priority: optional\n"
        f"Maintainer: {build.maintainer}\n"
        f"Build-Depends: {(',' + chr(10) + '               ').join(depends)}\n"
        f"Standards-Version: {STANDARDS_VERSION}\n"
        "Rules-Requires-Root: no\n"
        "\n"
        f"Package: {build.name}\n"
        f"Architecture: {t.arch}\n"
        f"Depends: ksplice-pkg-runtime (>= {__version__}), {t.image}\n"
        f"Description: live kernel update {build.update_id} for Linux {t.release}\n"
        f"{_paragraph(f'Update {build.update_id}: {build.description}')}\n"
        " .\n"
        f"{_paragraph(built)}\n"
    )


def _paragraph(text: str) -> str:
    return "\n".join(f" {ln}" for ln in textwrap.wrap(text, 72, break_on_hyphens=False))


_DISTRIBUTION_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def check_distribution(distribution: str) -> str:
    if not _DISTRIBUTION_RE.fullmatch(distribution):
        raise KspliceError(
            f"--distribution {distribution!r} is not a suite name",
            hint="e.g. unstable, bookworm-security",
        )
    return distribution


def changelog(build: FarmBuild, distribution: str) -> str:
    """One entry; its date is the build's SOURCE_DATE_EPOCH, its items name the CVEs."""
    entry = f"Live kernel update {build.update_id} for Linux {build.target.release}: "
    items = [entry + build.description]
    if len(build.cves) > _CVE_ITEMS:
        items.append(f"Fixes {', '.join(build.cves)}.")
    else:
        items += [f"Fixes {cve}." for cve in build.cves]
    # Lines break at spaces only: a CVE id or a version is not to be split at its hyphens.
    lines = [
        textwrap.fill(
            item, 78, initial_indent="  * ", subsequent_indent="    ", break_on_hyphens=False
        )
        for item in items
    ]
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(build.epoch))
    return (
        f"{build.name} ({build.version}) {distribution}; urgency=medium\n\n"
        + "\n".join(lines)
        + f"\n\n -- {build.maintainer}  {date}\n"
    )


def _make_word(word: str) -> str:
    # make expands $ in a recipe before the shell sees it: $$ is a literal $.
    return shlex.quote(word).replace("$", "$$")


def rules(build: FarmBuild, paths: InstalledTarget) -> str:
    deb = f"{build.name}_{build.version}_{build.target.arch}.deb"
    words = build.build_argv(paths, "deb", OUT_DIR, trees=(OLD_TREE, NEW_TREE))
    argv = " \\\n\t    ".join(_make_word(a) for a in words)
    # build's exit status 6 is a partial update: made, some changes of the upload left out
    # (listed in the log). The package is what build made, as a local build gives it.
    accept, trees, clean = ("", "", "")
    if build.upload is not None:
        accept, trees, clean = " || [ $$? -eq 6 ]", _trees_rule(paths), f" {TREES_DIR}"
    return f"""#!/usr/bin/make -f
# Live kernel update {build.update_id} for Linux {build.target.release}, built by ksplice-pkg
# against the kernel's installed packages (Build-Depends). `ksplice-pkg build` prints each
# phase and its time into the build log; the update's manifest is printed after it.

DEB := {deb}
JOBS := $(or $(patsubst parallel=%,%,$(filter parallel=%,$(DEB_BUILD_OPTIONS))),1)

build: build-arch build-indep
build-indep:
build-arch: {OUT_DIR}/$(DEB)

{OUT_DIR}/$(DEB):{" " + NEW_TREE if build.upload else ""}
\tksplice-pkg --version
\t{argv} \\
\t    --jobs=$(JOBS) --cache-dir=$(CURDIR)/{CACHE_DIR}{accept}
\ttar -xzOf {OUT_DIR}/ksplice-{build.update_id}.tar.gz \\
\t    ksplice-{build.update_id}/manifest.json
{trees}
binary: binary-arch binary-indep
binary-indep:
binary-arch: build-arch
\tcp {OUT_DIR}/$(DEB) ../$(DEB)
\tdpkg-distaddfile $(DEB) kernel optional

clean:
\trm -rf {OUT_DIR} {CACHE_DIR}{clean} debian/files

.PHONY: build build-arch build-indep binary binary-arch binary-indep clean
"""


def _trees_rule(paths: InstalledTarget) -> str:
    """The make rule that rebuilds the upload's two trees: OLD from the installed tarball and
    OLD's changelog; NEW a hard-linked copy of it with the upload over it. Whatever NEW changes
    is unlinked first (rm, tar --unlink-first), never written through a link into OLD."""
    tmp = f"{NEW_TREE}.tmp"
    return f"""
{NEW_TREE}:
\trm -rf {TREES_DIR}
\tmkdir -p {OLD_TREE}
\ttar -xf {_make_word(paths.source)} --strip-components=1 -C {OLD_TREE}
\tmkdir -p {OLD_TREE}/debian
\tcp {OLD_CHANGELOG} {OLD_TREE}/debian/changelog
\tcp -al {OLD_TREE} {tmp}
\trm {tmp}/debian/changelog
\tcp {NEW_CHANGELOG} {tmp}/debian/changelog
\twhile IFS= read -r path; do rm -f "{tmp}/$$path"; done < {REMOVED_FILE}
\ttar -xf {UPLOAD_TAR} -C {tmp} --unlink-first
\tmv {tmp} {NEW_TREE}
"""


def write_dsc(
    build: FarmBuild,
    output_dir: Path,
    paths: InstalledTarget | None = None,
    distribution: str = "unstable",
) -> Path:
    """The .dsc and its tarball in output_dir, made by dpkg-source -b, and the source-only
    .changes an upload takes; returns the .dsc."""
    paths = paths or InstalledTarget.of(build.target)
    top_name = f"{build.name}-{build.version}"
    files = {
        "debian/control": (control(build), 0o644),
        "debian/rules": (rules(build, paths), 0o755),
        "debian/changelog": (changelog(build, distribution), 0o644),
        "debian/copyright": (COPYRIGHT.format(release=build.target.release), 0o644),
        "debian/source/format": ("3.0 (native)\n", 0o644),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ksplice-dsc-", dir=output_dir) as tmp:
        top = Path(tmp) / top_name
        for name, (text, mode) in files.items():
            _write(top / name, text.encode(), mode, build.epoch)
        if build.patch is not None:
            _write(top / PATCH_FILE, build.patch, 0o644, build.epoch)
        if build.upload is not None:
            write_upload(build.upload, top, build.epoch)
        _write(top / SYMBOL_MAP_FILE, build.symbol_map, 0o644, build.epoch)
        for directory in [top, *(p for p in top.rglob("*") if p.is_dir())]:
            os.utime(directory, (build.epoch, build.epoch))
        env = {"SOURCE_DATE_EPOCH": str(build.epoch)}
        run(["dpkg-source", "--build", top_name], cwd=Path(tmp), env=env)
        # The source-only .changes: what debsign signs and dput uploads to the farm's queue.
        changes = f"{build.name}_{build.version}_source.changes"
        run(["dpkg-genchanges", "--build=source", f"-O../{changes}"], cwd=top, env=env)
        made = [p for p in Path(tmp).iterdir() if p.is_file()]
        for path in made:
            atomic_write(output_dir / path.name, path.read_bytes())
    return output_dir / f"{build.name}_{build.version}.dsc"


def _write(path: Path, data: bytes, mode: int, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (epoch, epoch))
