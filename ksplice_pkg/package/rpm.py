"""Hotpatch .rpm packages: a generated spec built by rpmbuild.

rpmbuild runs with everything that would make its output depend on the build machine or the
clock switched off: no post-install scripts (they would strip the module, whose symbols the
livepatch loader needs), no dependency generators (the relations are ours), a fixed build host,
and SOURCE_DATE_EPOCH as build time and ceiling of every file's mtime.

rpmbuild interprets a spec as it reads it (macros, shell and Lua in %(...) and %{lua:...},
sections, conditionals, %include), so what the update says is written as data: each value one
line of printable text with every % doubled, no line of text starting with % or # (spec_lines), and
the file list, which rpmbuild expands too, only of names checked plain (file_list_of).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from ksplice_pkg.manifest import Manifest
from ksplice_pkg.package.common import (
    DEFAULT_MAINTAINER,
    FILE_MODE,
    build_epoch,
    prepare,
    script,
)
from ksplice_pkg.package.contents import UpdateContents
from ksplice_pkg.package.naming import Flavour, PackagePlan, PackagingError, Stream, one_line
from ksplice_pkg.run import run

RPMBUILD_DEFINES = {
    "use_source_date_epoch_as_buildtime": "1",
    "clamp_mtime_to_source_date_epoch": "1",
    "_buildhost": "ksplice-pkg",
    "__spec_install_post": "%{nil}",
    "debug_package": "%{nil}",
    "_build_id_links": "none",
    "_binary_payload": "w9.xzdio",
}


def spec_inline(value: str, what: str) -> str:
    """A value for the rest of a spec line whose start is ours (a tag, a changelog entry)."""
    # rpmbuild expands macros everywhere in a spec, %(...), %{lua:...} and %[...] included;
    # %% is the one spelling of a literal %.
    return one_line(value, what).replace("%", "%%")


def spec_lines(text: str, what: str, starts: tuple[str, ...] = ("%", "#")) -> list[str]:
    """Lines of text that rpmbuild must read as they are (a description, a scriptlet).

    rpmbuild expands %% to % before it looks at a line, and then takes a line that starts with a
    section name (%pre, %triggerin, %files, ...: any case) as the start of that section, and one
    that starts with a conditional or %include (%if, %endif, %include ...) as that, even after
    leading blanks; a description drops lines starting with #. So no line may start with % or
    # at all, whatever follows: the package description puts the update's words after ours, and
    this refuses anything else. A scriptlet keeps its # lines, shell comments: `starts` says
    which starts are refused.
    """
    out = []
    for line in text.split("\n"):
        if line.lstrip().startswith(starts):
            raise PackagingError(
                f"{what}: the line {line!r} would be read by rpmbuild as a spec directive"
            )
        out.append(spec_inline(line, what))
    return out


def spec(package: PackagePlan, staged: Path, file_list: Path, maintainer: str, epoch: int) -> str:
    """The spec of `package`, whose files are in `staged` and listed in `file_list`."""
    m = package.manifest
    tags = [
        ("Name", package.name),
        ("Version", package.version),
        ("Release", package.rpm_release),
        ("Summary", package.summary),
        ("License", "GPL-2.0-only"),
        ("Group", "System Environment/Kernel"),
        ("Packager", maintainer),
        ("URL", "https://www.kernel.org/doc/html/latest/livepatch/livepatch.html"),
        # The relations below are the whole truth; rpm's generators would guess from the .ko.
        ("AutoReqProv", "no"),
        *(("Requires", r.rpm()) for r in package.depends),
        *(("Provides", r.rpm()) for r in package.provides),
        # Obsoletes match package names only (rpm and libsolv ignore virtual names there): the
        # Conflicts on the versioned virtual name reaches every older update of this kernel,
        # the Obsoletes by name let rpm -U and dnf swap the known ones in one transaction.
        *(("Conflicts", r.rpm()) for r in package.supersedes),
        *(("Obsoletes", r.rpm()) for r in package.obsoletes),
    ]
    date = time.strftime("%a %b %d %Y", time.gmtime(epoch))
    lines = [
        *(f"{tag}: {spec_inline(value, tag)}" for tag, value in tags),
        "",
        "%description",
        *spec_lines(package.description, "the description"),
        "",
        "%install",
        f"cp -a {spec_inline(shlex.quote(f'{staged}/.'), 'the staging directory')} %{{buildroot}}/",
        "",
        "%post",
        *spec_lines(script("rpm-post", package), "the %post scriptlet", ("%",)),
        "%preun",
        *spec_lines(script("rpm-preun", package), "the %preun scriptlet", ("%",)),
        # A file list read with -f is macro-expanded as the spec is: it holds only the names
        # file_list_of() checked.
        f"%files -f {spec_inline(str(file_list), 'the file list')}",
        "%defattr(-,root,root,-)",
        "",
        "%changelog",
        f"* {date} {spec_inline(maintainer, 'the maintainer')} - "
        f"{package.version}-{package.rpm_release}",
        f"- {spec_inline(package.summary, 'the summary')} "
        f"({spec_inline(m.kernel_release, 'release')})",
        # The manifest's CVE ids are CVE-YYYY-NNNN, nothing rpmbuild interprets; one an entry.
        *(f"- Fixes {spec_inline(cve, 'the CVE id')}" for cve in m.cves),
        "",
    ]
    return "\n".join(lines)


# An absolute path of plain names, none starting with a dot: nothing rpm can take for a macro,
# a glob, a directive or a way out of the install directory.
_FILE_PATH_RE = re.compile(r"(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+")


def file_list_of(package: PackagePlan, names: list[str]) -> str:
    """The %files -f list: the update's directory (and its kernel's) and its files."""
    install_dir = f"/{package.install_dir}"
    paths = [
        f"%dir {install_dir.rsplit('/', 1)[0]}",
        f"%dir {install_dir}",
        *(f"{install_dir}/{name}" for name in sorted(names)),
    ]
    for path in paths:
        if not _FILE_PATH_RE.fullmatch(path.removeprefix("%dir ")):
            raise PackagingError(f"{package.name}: {path!r} cannot be in a file list")
    return "".join(f"{path}\n" for path in paths)


def build_rpm(
    update: UpdateContents,
    output_dir: Path,
    source_date_epoch: int | None = None,
    maintainer: str = DEFAULT_MAINTAINER,
    known: tuple[Manifest, ...] = (),
    stream: Stream | None = None,
) -> Path:
    package, files = prepare(update, Flavour.RPM, known, stream)
    epoch = build_epoch(package, source_date_epoch)
    with tempfile.TemporaryDirectory(prefix="ksplice-rpm-") as tmp:
        top = Path(tmp)
        staged = top / "staged"
        base = staged / package.install_dir
        base.mkdir(parents=True)
        for name, data in files.items():
            (base / name).write_bytes(data)
            (base / name).chmod(FILE_MODE)
        # Clamping only lowers mtimes above the epoch: set them all, directories too.
        for path in [staged, *staged.rglob("*")]:
            os.utime(path, (epoch, epoch))
        file_list = top / "files.list"
        file_list.write_text(file_list_of(package, list(files)))
        spec_file = top / f"{package.name}.spec"
        spec_file.write_text(spec(package, staged, file_list, maintainer, epoch))
        defines = {"_topdir": str(top), **RPMBUILD_DEFINES}
        argv: list[str] = ["rpmbuild", "-bb", "--target", package.arch.rpm, "--quiet"]
        for key, value in defines.items():
            argv += ["--define", f"{key} {value}"]
        run([*argv, spec_file], env={"SOURCE_DATE_EPOCH": str(epoch)})
        name = f"{package.name}-{package.version}-{package.rpm_release}.{package.arch.rpm}.rpm"
        built = top / "RPMS" / package.arch.rpm / name
        out = output_dir / name
        shutil.copyfile(built, out)
    return out
