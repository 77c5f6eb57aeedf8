"""The source RPM of a hotpatch: a spec whose %build runs `ksplice-pkg build` against the
target kernel's installed packages (BuildRequires), for Koji, OBS or mock.

rpmbuild makes the binary package itself from %files, so the spec says what `build --format
rpm` says of the update that it knows before the build (name, version, relations, scriptlets);
the files are the update `build` made in %build. Where the kernel's files are is a macro each
(ksplice_source, ksplice_vmlinuz, ksplice_config, ksplice_symvers, ksplice_modules), defined
for the installed packages and overridable with --define. Every value goes through the same
escaping as the hotpatch spec (package/rpm.py): rpmbuild expands macros everywhere.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from pathlib import Path

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.farm.options import FarmBuild, InstalledTarget
from ksplice_pkg.fsutil import atomic_write
from ksplice_pkg.manifest import module_name_of
from ksplice_pkg.package.common import script_of
from ksplice_pkg.package.naming import (
    RUNTIME_PACKAGE,
    UPDATES_DIR,
    Flavour,
    kernel_relation,
    package_name,
    virtual_name,
)
from ksplice_pkg.package.rpm import RPMBUILD_DEFINES, spec_inline, spec_lines
from ksplice_pkg.run import run


def upload_refused() -> KspliceError:
    # The spec has no %build that rebuilds an upload's two trees yet.
    return KspliceError(
        "only the dsc form of source-package takes --from yet: a source RPM carries a patch",
        hint="use --format dsc, or build the upload locally with `ksplice-pkg build --from`",
    )


_ARCHES = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
PATCH_SOURCE = "fix.patch"
SYMBOL_MAP_SOURCE = "System.map"


def _rpm_arch(build: FarmBuild) -> str:
    return _ARCHES.get(build.target.arch, build.target.arch)


def _shell_word(word: str) -> str:
    """A word of a %build line: quoted for the shell, % doubled for rpmbuild; a macro of ours
    (%{...}) is left to rpmbuild."""
    if word.startswith("%{") or "=%{" in word:
        return word
    return spec_inline(shlex.quote(word), "the build command")


def spec(build: FarmBuild, paths: InstalledTarget) -> str:
    t = build.target
    name = package_name(t.release, build.update_id, Flavour.RPM)
    # The runtime's fixed directory (UPDATES_DIR, the same on every architecture, not %_libdir),
    # spelled with %{_usr}: rpmlint takes /usr/lib and %{_prefix}/lib for a library path.
    install_dir = f"%{{ksplice_updates}}/{t.release}/{build.update_id}"
    macros = {
        "ksplice_source": paths.source,
        "ksplice_vmlinuz": paths.vmlinuz,
        "ksplice_config": paths.config,
        "ksplice_symvers": paths.symvers,
        "ksplice_modules": paths.modules_dir,
    }
    given = InstalledTarget(*(f"%{{{m}}}" for m in macros))
    argv = build.build_argv(given, "tarball", "out", "%{SOURCE0}", "%{SOURCE1}")
    summary = f"Live kernel update {build.update_id} for Linux {t.release}"
    description = f"Update {build.update_id}: {build.description}"
    if build.cves:
        description += f"\nFixes: {', '.join(build.cves)}."
    date = time.strftime("%a %b %d %Y", time.gmtime(build.epoch))
    tarball = f"out/ksplice-{build.update_id}.tar.gz"
    lines = [
        "# A live kernel update built by ksplice-pkg against the installed kernel packages.",
        *(f"%{{!?{m}: %global {m} {spec_inline(v, m)}}}" for m, v in macros.items()),
        *(f"%global {k} {v}" for k, v in RPMBUILD_DEFINES.items()),
        f"%global ksplice_updates %{{_usr}}/{UPDATES_DIR.removeprefix('usr/')}",
        "",
        f"Name: {name}",
        f"Version: {build.version}",
        "Release: 1",
        f"Summary: {spec_inline(summary, 'the summary')}",
        "License: GPL-2.0-only",
        "URL: https://www.kernel.org/doc/html/latest/livepatch/livepatch.html",
        # Ignored by rpm >= 4.6, still expected by rpmlint and older builders.
        "BuildRoot: %{_tmppath}/%{name}-%{version}-build",
        f"ExclusiveArch: {_rpm_arch(build)}",
        f"Source0: {PATCH_SOURCE}",
        f"Source1: {SYMBOL_MAP_SOURCE}",
        f"BuildRequires: ksplice-pkg >= {__version__}",
        *(f"BuildRequires: {p} = {v}" for p, v in t.build_depends()),
        "AutoReqProv: no",
        f"Requires: {RUNTIME_PACKAGE} >= {__version__}",
        f"Requires: {kernel_relation(t.release, Flavour.RPM).rpm()}",
        f"Provides: {virtual_name(t.release, Flavour.RPM)} = {build.version}-1",
        "",
        "%description",
        *spec_lines(description, "the description"),
        "",
        "%prep",
        "",
        "%build",
        "ksplice-pkg --version",
        " ".join(_shell_word(a) for a in argv)
        + ' --jobs=%{_smp_build_ncpus} --cache-dir="$PWD/cache"',
        f"tar -xzOf {tarball} ksplice-{build.update_id}/manifest.json",
        "",
        "%install",
        f"mkdir -p %{{buildroot}}{install_dir}",
        f"tar -xzf {tarball} -C %{{buildroot}}{install_dir} --strip-components=1",
        f"chmod 0644 %{{buildroot}}{install_dir}/*",
        "",
        "%post",
        *spec_lines(_scriptlet("rpm-post", name, build), "the %post scriptlet", ("%",)),
        "%preun",
        *spec_lines(_scriptlet("rpm-preun", name, build), "the %preun scriptlet", ("%",)),
        "%files",
        f"%dir {install_dir.rsplit('/', 1)[0]}",
        install_dir,
        "",
        "%changelog",
        f"* {date} {spec_inline(build.maintainer, 'the maintainer')} - {build.version}-1",
        f"- {spec_inline(summary, 'the summary')}: {spec_inline(build.description, 'it')}",
        *(f"- Fixes {cve}" for cve in build.cves),
        "",
    ]
    return "\n".join(lines)


def _scriptlet(template: str, name: str, build: FarmBuild) -> str:
    return script_of(
        template, name, build.update_id, build.target.release, module_name_of(build.update_id)
    )


def write_srpm(build: FarmBuild, output_dir: Path, paths: InstalledTarget | None = None) -> Path:
    """The .src.rpm in output_dir, made by rpmbuild -bs; returns its path."""
    if build.patch is None:
        raise upload_refused()
    paths = paths or InstalledTarget.of(build.target)
    name = package_name(build.target.release, build.update_id, Flavour.RPM)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ksplice-srpm-", dir=output_dir) as tmp:
        top = Path(tmp)
        sources = top / "SOURCES"
        sources.mkdir()
        (sources / PATCH_SOURCE).write_bytes(build.patch)
        (sources / SYMBOL_MAP_SOURCE).write_bytes(build.symbol_map)
        spec_file = top / f"{name}.spec"
        spec_file.write_text(spec(build, paths))
        for path in [*sources.iterdir(), spec_file]:
            os.utime(path, (build.epoch, build.epoch))
        run(
            ["rpmbuild", "-bs", "--quiet", "--define", f"_topdir {top}", spec_file],
            env={"SOURCE_DATE_EPOCH": str(build.epoch)},
        )
        (made,) = (top / "SRPMS").glob("*.src.rpm")
        out = atomic_write(output_dir / made.name, made.read_bytes())
    return out
