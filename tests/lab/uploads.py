"""Debian's real kernel uploads, as the lab's `build --from` tests and benchmark use them.

Everything is discovered from the archive's apt records: the `linux-source-X.Y` versions
served, the kernel ABI built from each (the headers package of the flavour whose version is
the source's), the `.dsc` versions the deb-src view serves. From those, the pairs of uploads:

- one-fix uploads: consecutive Debian revisions of one upstream version (x.y.z-1 -> x.y.z-2),
  told apart by what the newer one's changelog entry says it fixes;
- the stable update: the two newest distinct upstream versions (the newer one's first revision,
  the one the one-fix uploads start from);
- `.dsc` pairs: an older served `.dsc` whose kernel is served, and the next served `.dsc`.

Downloads go to `<cache>/uploads/` (the source .debs, ~140 MB each) and are reused.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from dataclasses import dataclass
from functools import cache as memoized
from itertools import pairwise
from pathlib import Path

from debian.deb822 import Packages, Sources
from debian.debian_support import Version

from ksplice_pkg.distro.archive import unpack_deb
from ksplice_pkg.distro.debian import (
    DEFAULT_FLAVOUR,
    apt_record,
    available_releases,
    default_release,
    download_deb,
    download_source_package,
    source_apt_options,
)
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.run import run_text

# The one-fix uploads of the issue, by the subsystem their changelog entry names.
EXT4 = "ext4"
NFSD = "nfsd"


@dataclass(frozen=True)
class SourceUpload:
    version: str  # the Debian version of the source, e.g. 6.1.192-2
    release: str | None  # the kernel built from it, e.g. 6.1.0-56-cloud-amd64; None: not served

    @property
    def upstream(self) -> str:
        return self.version.rsplit("-", maxsplit=1)[0]


@dataclass(frozen=True)
class UploadPair:
    """OLD (what the target kernel was built from) and NEW (the upload to bring it to)."""

    old: SourceUpload
    new: SourceUpload

    @property
    def release(self) -> str:
        if self.old.release is None:
            raise KspliceError(f"no kernel of {self.old.version} is served: no target")
        return self.old.release

    def __str__(self) -> str:
        return f"{self.old.version} -> {self.new.version} ({self.old.release})"


def series(flavour: str = DEFAULT_FLAVOUR) -> str:
    """The series of the kernel Debian installs now, e.g. 6.1."""
    return ".".join(default_release(flavour).split(".")[:2])


@memoized
def _kernels(flavour: str) -> dict[str, str]:
    """Source version -> the kernel release built from it. The headers package comes from the
    `linux` source itself (the image from linux-signed-*), so its version is the source's."""
    kernels = {}
    for release in available_releases(flavour):
        headers = apt_record(f"linux-headers-{release}")
        if headers is not None:
            kernels[str(headers["Version"])] = release
    return kernels


def _source_records(flavour: str) -> dict[str, Packages]:
    package = f"linux-source-{series(flavour)}"
    text = run_text(["apt-cache", "show", package])
    return {
        str(r["Version"]): r
        for r in Packages.iter_paragraphs(text, use_apt_pkg=False)
        if "Version" in r
    }


def source_uploads(flavour: str = DEFAULT_FLAVOUR) -> list[SourceUpload]:
    """Every linux-source version of the current series the archive serves, oldest first."""
    kernels = _kernels(flavour)
    versions = sorted(_source_records(flavour), key=Version)
    return [SourceUpload(v, kernels.get(v)) for v in versions]


def one_fix_pairs(flavour: str = DEFAULT_FLAVOUR) -> list[UploadPair]:
    """Consecutive Debian revisions of the same upstream version whose older one's kernel is
    served, oldest first."""
    uploads = source_uploads(flavour)
    return [
        UploadPair(old, new)
        for old, new in pairwise(uploads)
        if old.upstream == new.upstream and old.release is not None
    ]


def stable_pair(flavour: str = DEFAULT_FLAVOUR) -> UploadPair:
    """The stable update: from the last revision of the second newest upstream version to the
    first revision of the newest (whose later revisions are the one-fix uploads)."""
    uploads = [u for u in source_uploads(flavour) if u.release is not None]
    upstreams = sorted({u.upstream for u in uploads}, key=Version)
    if len(upstreams) < 2:
        raise KspliceError(f"fewer than two upstream versions served: {upstreams}")
    older, newer = upstreams[-2], upstreams[-1]
    old = [u for u in uploads if u.upstream == older][-1]
    new = next(u for u in uploads if u.upstream == newer)
    return UploadPair(old, new)


def source_deb(cache: Path, version: str, flavour: str = DEFAULT_FLAVOUR) -> Path:
    """The linux-source .deb of version, downloaded (and checked by apt) once."""
    record = _source_records(flavour).get(version)
    if record is None:
        raise KspliceError(f"linux-source-{series(flavour)} {version} is not served")
    return download_deb(record, cache / "uploads" / "debs")


def newest_entry(deb: Path) -> str:
    """The newest entry of the changelog a linux-source .deb carries: what that upload says
    it changes."""
    with tempfile.TemporaryDirectory(prefix="ksplice-lab-changelog-") as tmp:
        unpack_deb(deb, Path(tmp), wanted=lambda n: n.endswith("/changelog.Debian.gz"))
        (found,) = Path(tmp).glob("usr/share/doc/*/changelog.Debian.gz")
        text = gzip.decompress(found.read_bytes()).decode(errors="replace")
    # An entry runs from its "linux (version) ..." line to its " -- maintainer" trailer.
    head = re.match(r"(?s)\S.*?\n -- ", text)
    if head is None:
        raise KspliceError(f"{deb.name}: its changelog has no entry")
    return head.group(0)


def one_fix_pair(cache: Path, subsystem: str, flavour: str = DEFAULT_FLAVOUR) -> UploadPair:
    """The one-fix upload whose changelog entry fixes `subsystem` (an item "* ext4: ...")."""
    for pair in one_fix_pairs(flavour):
        entry = newest_entry(source_deb(cache, pair.new.version, flavour))
        if re.search(rf"(?m)^\s+\* {re.escape(subsystem)}:", entry):
            return pair
    raise KspliceError(
        f"no served one-fix upload fixes {subsystem} "
        f"(one-fix pairs: {', '.join(map(str, one_fix_pairs(flavour))) or 'none'})"
    )


def dsc_versions(cache: Path) -> list[str]:
    """The versions of the `linux` source package the deb-src view lists, oldest first.
    A listed version's files may still be missing from the mirror."""
    text = run_text(["apt-cache", *source_apt_options(cache), "showsrc", "linux"])
    found = {
        str(s["Version"])
        for s in Sources.iter_paragraphs(text, use_apt_pkg=False)
        if "Version" in s
    }
    return sorted(found, key=Version)


def dsc(cache: Path, version: str) -> Path:
    """linux_<version>.dsc and its tarballs, downloaded once."""
    return download_source_package(cache, "linux", version, cache / "uploads" / "dsc" / version)


def dsc_pairs(cache: Path, flavour: str = DEFAULT_FLAVOUR) -> list[UploadPair]:
    """Pairs of listed `.dsc` versions of the current series, the older one's kernel served:
    each with the next listed version, oldest first (the files may not be served)."""
    kernels = _kernels(flavour)
    prefix = series(flavour) + "."
    versions = [v for v in dsc_versions(cache) if v.startswith(prefix)]
    return [
        UploadPair(SourceUpload(old, kernels[old]), SourceUpload(new, kernels.get(new)))
        for old, new in pairwise(versions)
        if old in kernels
    ]
