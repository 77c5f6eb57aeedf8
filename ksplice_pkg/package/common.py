"""What the .deb and .rpm writers share: the files a package ships, maintainer-script templates,
the doc files, the maintainer's form and the timestamp every file of a package gets."""

from __future__ import annotations

import re
from importlib import resources

from ksplice_pkg.manifest import MANIFEST_NAME, Manifest
from ksplice_pkg.package.contents import UpdateContents
from ksplice_pkg.package.naming import (
    Flavour,
    PackagePlan,
    PackagingError,
    Stream,
    plain,
    plan,
)
from ksplice_pkg.timestamp import parse_created

DEFAULT_MAINTAINER = "ksplice-pkg <ksplice-pkg@localhost>"
# `Name <email>`, as Debian Policy 5.6.2 and rpm's Packager want it; the brackets and the
# email's characters are refused inside, so the field reads back as one name and one address.
_MAINTAINER_RE = re.compile(r"[^<>\s](?:[^<>]*[^<>\s])? <[^<>\s@]+@[^<>\s@]+>")
# Every file ships with this mode: they are data, the module included, whatever the tarball said.
FILE_MODE = 0o644

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Comment: A live update of the Linux kernel {release}, built by ksplice-pkg from a patch to
 that kernel's source; the module is a derived work of Linux.

Files: *
Copyright: The Linux kernel authors
License: GPL-2
 On Debian systems, the complete text of the GNU General Public License version 2 can be
 found in /usr/share/common-licenses/GPL-2.
"""


def check_maintainer(maintainer: str) -> str:
    if maintainer.isprintable() and _MAINTAINER_RE.fullmatch(maintainer):
        return maintainer
    raise PackagingError(
        f"the maintainer {maintainer!r} is not one line of the form `Name <email>`",
        hint="give --maintainer 'Jane Doe <jane@example.org>' (or set DEBFULLNAME and DEBEMAIL)",
    )


def prepare(
    update: UpdateContents,
    flavour: Flavour,
    known: tuple[Manifest, ...] = (),
    stream: Stream | None = None,
) -> tuple[PackagePlan, dict[str, bytes]]:
    """The update's package plan and the files it ships, name -> data.

    The files are those runtime/store.py installs, named by the manifest: whatever else the
    tarball holds is not shipped, and its names never reach a spec's file list.
    """
    m = update.manifest
    held = {f.path: f.data for f in update.files}
    names = sorted({MANIFEST_NAME, m.module, "description", "patch"})
    missing = [name for name in names if name not in held]
    if missing:
        raise PackagingError(
            f"{update.origin}: the update has no {' or '.join(repr(n) for n in missing)}"
        )
    package = plan(m, held[m.module], flavour, str(update.origin), known, stream)
    return package, {name: held[name] for name in names}


def script(template: str, package: PackagePlan) -> str:
    """A maintainer script from its template in ksplice_pkg/package/scripts/; the values
    substituted are plain words, which the shell takes as they are."""
    m = package.manifest
    return script_of(template, package.name, m.id, m.kernel_release, m.module_name)


def script_of(template: str, package: str, update_id: str, release: str, module: str) -> str:
    """The maintainer script of a package named `package` for an update not read yet (a
    source RPM's, whose update the farm builds)."""
    text = (resources.files("ksplice_pkg.package") / "scripts" / template).read_text()
    for key, value in {
        "@PACKAGE@": package,
        "@ID@": update_id,
        "@RELEASE@": release,
        "@MODULE@": module,
    }.items():
        text = text.replace(key, plain(value, key.strip("@").lower()))
    return text


def build_epoch(package: PackagePlan, source_date_epoch: int | None) -> int:
    """The timestamp of every file and header: SOURCE_DATE_EPOCH when given, else the update's
    own creation time, so that packaging the same tarball twice gives the same bytes."""
    if source_date_epoch is not None:
        return source_date_epoch
    if package.manifest.created:
        return parse_created(package.manifest.created)
    return 0
