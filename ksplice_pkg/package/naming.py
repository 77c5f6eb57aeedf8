"""Names, versions and relations of hotpatch packages, for both formats.

The scheme follows the distributions' livepatch packages (RHEL's `kpatch-patch-<kver>`, SUSE's
`kernel-livepatch-<kver>`). Two kinds:
- one package per update, `ksplice-update-<release>-<id>`, versioned by the update's creation
  stamp (`created`, UTC, as YYYYMMDD.HHMMSS), so that versions order updates by age;
- the stream of a kernel, `ksplice-updates-<release>`: one name whose version grows with each
  cumulative update for that kernel (the stamp, then a build number as the Debian revision and
  the RPM release), so that `apt upgrade` and `dnf upgrade` bring each new one. A package
  holds one update at a time, so only a cumulative (replace) update can be in a stream: the
  next version's apply supersedes the live one before its files are gone.

Relations:
- the runtime package (`ksplice-pkg-runtime`), which applies and reapplies updates;
- the exact kernel it patches: `linux-image-<release>` on Debian, `kernel-uname-r = <release>`
  (what Fedora's and RHEL's kernel-core provide) on RPM systems, or `kernel-uname-r(<release>)`
  for a release with more than one '-', which no RPM version can hold;
- for a stacked update, the packages of the updates in `depends_on` (a stream package provides
  the name of the update it holds, so updates stacked on it find it);
- every package provides `ksplice-hotpatch-<release>` at its version: apt and dnf find all
  updates of a kernel through it, and a cumulative update (a stream's included) conflicts with /
  replaces / obsoletes every provider of an older version, which is how it knows the updates it
  supersedes without naming them. Updates stacked on top of it later carry a newer stamp and
  stay. The virtual name is not the stream's: a package that provides and conflicts with its
  own name would leave the resolvers to tell an upgrade from a conflict.

Every manifest value a package carries (in its name, relations, description and maintainer
scripts) is checked here first, whatever built the Manifest: the tarball can come from anyone,
and spec files, control files and shell scripts all give some text a meaning.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

from ksplice_pkg import __version__
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import ID_RE, Manifest, content_problem
from ksplice_pkg.runtime.stream import STREAM_PREFIX, release_part

RUNTIME_PACKAGE = "ksplice-pkg-runtime"
UPDATES_DIR = "usr/lib/ksplice-pkg/updates"
NAME_PREFIX = "ksplice-update-"
VIRTUAL_PREFIX = "ksplice-hotpatch-"

# [0-9], not \d: \d also matches other scripts' digits, which no package version may hold.
_CREATED_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
# Debian Policy 5.6.1 for package names; RPM is laxer but forbids whitespace and comparison
# operators, which would read as a version constraint in a dependency.
_DEB_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_RPM_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*")
# What a maintainer script may have substituted into it: nothing the shell would interpret.
_PLAIN_RE = re.compile(r"[A-Za-z0-9._+-]+")


class PackagingError(KspliceError):
    """An update that cannot be turned into a package as it is."""


def one_line(value: str, what: str) -> str:
    """`value`, if it is one line of printable text: a line break would start a new spec line or
    control field, and no package text needs a control character. str.isprintable is false for
    every line separator Python knows (\\r, NEL, U+2028, ...), not only \\n."""
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise PackagingError(f"{what} {value!r} holds {bad!r}: expected one line of printable text")
    return value


def plain(value: str, what: str) -> str:
    """`value`, if it is a plain word, as file names and shell scripts can take it unquoted."""
    if not _PLAIN_RE.fullmatch(value):
        raise PackagingError(f"{what} {value!r} is not a plain name ([A-Za-z0-9._+-])")
    return value


def check_manifest(m: Manifest) -> None:
    """Refuse a manifest holding a value that Manifest.from_json would not accept (the packager
    is also handed manifests built in code)."""
    if problem := content_problem(m):
        raise PackagingError(f"update {m.id!r}: {problem}")


class Op(enum.Enum):
    EQ = "="
    LT = "<"
    GE = ">="


@dataclass(frozen=True)
class Relation:
    name: str
    op: Op | None = None
    version: str | None = None

    def deb(self) -> str:
        if self.op is None:
            return self.name
        op = "<<" if self.op is Op.LT else self.op.value
        return f"{self.name} ({op} {self.version})"

    def rpm(self) -> str:
        if self.op is None:
            return self.name
        return f"{self.name} {self.op.value} {self.version}"


@dataclass(frozen=True)
class Arch:
    deb: str
    rpm: str


# ELF e_machine of the module -> the architecture names of the two package formats.
_ARCHES = {62: Arch("amd64", "x86_64"), 183: Arch("arm64", "aarch64"), 3: Arch("i386", "i686")}


def module_arch(module: bytes, origin: str) -> Arch:
    if module[:4] != b"\x7fELF" or len(module) < 20:
        raise PackagingError(f"{origin}: the module is not an ELF file")
    endian = "<" if module[5] == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", module, 18)
    if machine not in _ARCHES:
        raise PackagingError(f"{origin}: no package architecture known for ELF machine {machine}")
    return _ARCHES[machine]


def version_of(manifest: Manifest) -> str:
    """The package version: the creation stamp, or 0 for an update that has none."""
    if not manifest.created:
        if manifest.replace:
            # Without a stamp a cumulative update cannot tell which updates are older.
            raise PackagingError(
                f"update {manifest.id}: a cumulative (replace) update needs its `created` stamp"
            )
        return "0"
    match = _CREATED_RE.fullmatch(manifest.created)
    if not match:
        raise PackagingError(
            f"update {manifest.id}: `created` is {manifest.created!r}, "
            "expected YYYY-MM-DDTHH:MM:SSZ"
        )
    y, mo, d, h, mi, s = match.groups()
    return f"{y}{mo}{d}.{h}{mi}{s}"


class Flavour(enum.Enum):
    DEB = "deb"
    RPM = "rpm"


def _release_part(release: str, flavour: Flavour) -> str:
    part = release_part(release, debian=flavour is Flavour.DEB)
    pattern = _DEB_NAME_RE if flavour is Flavour.DEB else _RPM_NAME_RE
    if not pattern.fullmatch(NAME_PREFIX + part):
        raise PackagingError(f"kernel release {release!r} cannot be part of a package name")
    return part


def package_name(release: str, update_id: str, flavour: Flavour) -> str:
    if not ID_RE.fullmatch(update_id):
        raise PackagingError(f"invalid update id {update_id!r} in a package name")
    return f"{NAME_PREFIX}{_release_part(release, flavour)}-{update_id}"


def virtual_name(release: str, flavour: Flavour) -> str:
    return f"{VIRTUAL_PREFIX}{_release_part(release, flavour)}"


def stream_name(release: str, flavour: Flavour) -> str:
    return f"{STREAM_PREFIX}{_release_part(release, flavour)}"


@dataclass(frozen=True)
class Stream:
    """Package updates as the stream of their kernel (`package --stream`)."""

    # The build number: a new build of the same update (a packaging fix) takes the next one.
    build: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.build < 10**9:
            raise PackagingError(f"build number {self.build}: expected 1 to 999999999")


def kernel_relation(release: str, flavour: Flavour) -> Relation:
    if flavour is Flavour.DEB:
        return Relation(f"linux-image-{release}")
    if release.count("-") <= 1:
        return Relation("kernel-uname-r", Op.EQ, release)
    # An RPM version holds at most one '-' (it separates version and release), so a release
    # like Debian's 6.1.0-56-cloud-amd64 cannot be compared; the name form carries it whole,
    # and a kernel package that wants to satisfy it provides that name.
    return Relation(f"kernel-uname-r({release})")


@dataclass(frozen=True)
class PackagePlan:
    """Everything both formats say about one hotpatch package."""

    name: str
    version: str  # Debian: the upstream version; RPM: Version
    revision: str | None  # Debian: the revision (None: a native version); RPM: Release ("1")
    arch: Arch
    summary: str
    description: str  # the update's description and what it patches, plain text
    install_dir: str  # relative to /, no leading slash
    depends: tuple[Relation, ...]
    provides: tuple[Relation, ...]
    supersedes: tuple[Relation, ...]  # Conflicts+Replaces on Debian, Conflicts on RPM
    # RPM: the packages of older updates of this kernel packaged in the same run, which a
    # cumulative update obsoletes by name (Obsoletes never match a virtual name).
    obsoletes: tuple[Relation, ...]
    manifest: Manifest

    @property
    def deb_version(self) -> str:
        return f"{self.version}-{self.revision}" if self.revision else self.version

    @property
    def rpm_release(self) -> str:
        return self.revision or "1"


def plan(
    manifest: Manifest,
    module: bytes,
    flavour: Flavour,
    origin: str,
    known: tuple[Manifest, ...] = (),
    stream: Stream | None = None,
) -> PackagePlan:
    """The package of `manifest`; `known` are the other updates packaged in the same run."""
    check_manifest(manifest)
    version = version_of(manifest)
    release = manifest.kernel_release
    virtual = virtual_name(release, flavour)
    if stream is not None and (not manifest.replace or manifest.depends_on):
        raise PackagingError(
            f"update {manifest.id} is not cumulative: a stream package holds one update at a "
            "time, and only a cumulative (replace) one takes over from the update before it",
            hint="create the update with --replace, or package it without --stream",
        )
    revision = str(stream.build) if stream else None
    # What the relations compare: the whole version of the package's own format.
    full = f"{version}-{revision}" if revision else version
    depends = [
        Relation(RUNTIME_PACKAGE, Op.GE, __version__),
        kernel_relation(release, flavour),
        *(Relation(package_name(release, dep, flavour)) for dep in manifest.depends_on),
    ]
    patched = ", ".join(
        p.name if p.object == "vmlinux" else f"{p.object}:{p.name}" for p in manifest.patched
    )
    # The update's text follows words of ours: no line of a description starts with what the
    # update says, which is what keeps it inert in a spec (rpm.py).
    text = manifest.description.strip()
    description = f"Update {manifest.id}: {text}" if text else f"Update {manifest.id}."
    description += f"\n\nPatched functions: {patched or 'none'}."
    if manifest.depends_on:
        description += f"\nApplied on top of: {', '.join(manifest.depends_on)}."
    if manifest.replace:
        description += "\nCumulative: supersedes every earlier update of this kernel."
    if manifest.cves:
        description += f"\nFixes: {', '.join(manifest.cves)}."
    own = package_name(release, manifest.id, flavour)
    provides = [Relation(virtual, Op.EQ, full)]
    if stream:
        description += "\nThe stream of this kernel: each new version is its newest update."
        provides.append(Relation(own, Op.EQ, full))
    return PackagePlan(
        name=stream_name(release, flavour) if stream else own,
        version=version,
        revision=revision,
        arch=module_arch(module, origin),
        summary=(
            f"Live kernel updates for Linux {release}: update {manifest.id}"
            if stream
            else f"Live kernel update {manifest.id} for Linux {release}"
        ),
        description=description,
        install_dir=f"{UPDATES_DIR}/{release}/{manifest.id}",
        depends=tuple(depends),
        provides=tuple(provides),
        supersedes=(Relation(virtual, Op.LT, full),) if manifest.replace else (),
        obsoletes=tuple(
            Relation(package_name(release, other.id, flavour), Op.LT, full)
            for other in sorted(known, key=lambda o: o.id)
            if manifest.replace
            and other.kernel_release == release
            and other.id != manifest.id
            and version_of(other) < version
        ),
        manifest=manifest,
    )
