"""What the .deb and .rpm writers share: maintainer-script templates, the doc files and the
timestamp every file of a package gets."""

from __future__ import annotations

from importlib import resources

from ksplice_pkg.package.naming import PackagePlan
from ksplice_pkg.timestamp import parse_created

DEFAULT_MAINTAINER = "ksplice-pkg <ksplice-pkg@localhost>"

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


def script(template: str, package: PackagePlan) -> str:
    """A maintainer script from its template in ksplice_pkg/package/scripts/."""
    text = (resources.files("ksplice_pkg.package") / "scripts" / template).read_text()
    m = package.manifest
    for key, value in {
        "@PACKAGE@": package.name,
        "@ID@": m.id,
        "@RELEASE@": m.kernel_release,
        "@MODULE@": m.module_name,
    }.items():
        text = text.replace(key, value)
    return text


def build_epoch(package: PackagePlan, source_date_epoch: int | None) -> int:
    """The timestamp of every file and header: SOURCE_DATE_EPOCH when given, else the update's
    own creation time, so that packaging the same tarball twice gives the same bytes."""
    if source_date_epoch is not None:
        return source_date_epoch
    if package.manifest.created:
        return parse_created(package.manifest.created)
    return 0
