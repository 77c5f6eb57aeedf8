"""The create configuration, in two steps that only check and assemble.

`create_options` takes the options as given (KERNEL_SOURCE may be a source package, the target
kernel packages) and checks them against each other before anything is read. The first stage of
the pipeline (inputs.py, from create.gather) makes files of them; `create_config` then
assembles the configuration the pipeline runs with, passed down unchanged. The command line,
the build command, the demo, the lab tests and the scripts all go this one way, so input
exclusivity, the id and the description are decided in one place.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ksplice_pkg.compile.kbuild import default_jobs
from ksplice_pkg.distro.kernelpkg import KernelPackages
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import CVE_RE, ID_RE
from ksplice_pkg.source.patch import PatchInput
from ksplice_pkg.source.series import PreviousUpdate
from ksplice_pkg.target.files import TargetFiles, TargetSpec
from ksplice_pkg.timestamp import build_time

ID_ALPHABET = string.ascii_lowercase + string.digits


class Mode(Enum):
    UPDATE = "update"  # build an update from a patch
    PREBUILD = "prebuild"  # build the whole kernel once with the differ's flags, then stop


@dataclass(frozen=True)
class CreateOptions:
    """What `create` (or `build`) was asked for, checked but not yet read."""

    mode: Mode
    source: Path  # KERNEL_SOURCE: a tree or a distro source package
    target: TargetSpec
    packages: KernelPackages  # the target's distro packages, unpacked by the first stage
    patch: PatchInput | None  # None in PREBUILD mode
    keyring: Path | None  # checks a .dsc's signature
    cache: Path
    update_id: str | None
    description: str | None
    jobs: int | None
    output_dir: Path
    patch_opt: str
    series: tuple[Path, ...]
    replace: bool
    runtime_only: bool
    cves: tuple[str, ...] = ()  # the CVE ids the update fixes (manifest, packages, view)
    signing: Signing | None = None


@dataclass(frozen=True)
class Signing:
    """The key and certificate that sign the livepatch module, as scripts/sign-file does."""

    key: Path
    cert: Path


@dataclass(frozen=True)
class CreateConfig:
    source: Path  # the kernel tree
    target: TargetFiles
    patch: bytes  # the unified diff, its bytes as given
    patch_opt: str
    id: str
    description: str
    jobs: int
    output_dir: Path
    work_dir: Path
    cache: Path  # derived files (an extracted vmlinux) live here, keyed by their source
    series: tuple[PreviousUpdate, ...] = ()  # earlier updates this one is built on, in order
    replace: bool = False  # a cumulative update: supersedes every earlier one when applied
    runtime_only: bool = False  # leave out changes to __init code and data, listing them
    created: int = 0  # the update's creation time (epoch): SOURCE_DATE_EPOCH or now
    cves: tuple[str, ...] = ()
    signing: Signing | None = None


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


def work_dir_for(cache: Path, source: Path) -> Path:
    """One work dir per source tree: its prepared objects serve every update of that tree."""
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache / "work" / f"{source.resolve().name}-{key}"


@dataclass(frozen=True)
class PrebuildConfig:
    """`create --prebuild`: the tree built once with the differ's flags, for later updates."""

    source: Path  # the kernel tree
    target: TargetFiles
    jobs: int
    work_dir: Path
    cache: Path


def description_from(patch: bytes, release: str) -> str:
    """The patch's first line (a mail's Subject), or a generic one for a bare diff."""
    text = patch.decode("utf-8", errors="surrogateescape")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first or first.startswith(("---", "diff ", "Index:")):
        return f"livepatch update for {release}"
    # A mailed patch's subject may be in any encoding: keep what is printable text.
    text = first.removeprefix("Subject: ").strip()
    return "".join(c if c.isprintable() and not _is_surrogate(c) else "?" for c in text)[:200]


def _is_surrogate(c: str) -> bool:
    # surrogateescape carries undecodable bytes as lone surrogates: not text.
    return 0xD800 <= ord(c) <= 0xDFFF


def check_description(description: str) -> str:
    """One line of printable UTF-8: it becomes MODULE_DESCRIPTION and a package's summary."""
    if any(not c.isprintable() or _is_surrogate(c) for c in description):
        raise KspliceError(
            f"--description {description!r} must be one line of printable text",
            hint="no newlines, tabs or control characters, and UTF-8 only",
        )
    if not description.strip():
        raise KspliceError("--description is empty", hint="say in one line what the update fixes")
    return description


def create_options(
    source: Path,
    target: TargetSpec,
    *,
    cache: Path,
    packages: KernelPackages | None = None,
    patch_file: Path | None = None,
    diffext: str | None = None,
    git_commit: str | None = None,
    patch: bytes | None = None,
    prebuild: bool = False,
    update_id: str | None = None,
    description: str | None = None,
    jobs: int | None = None,
    output_dir: Path = Path("."),
    patch_opt: str = "-p1",
    series: Sequence[Path] = (),
    replace: bool = False,
    runtime_only: bool = False,
    keyring: Path | None = None,
    cves: Sequence[str] = (),
    signing: Signing | None = None,
) -> CreateOptions:
    """Check the options against each other before anything is read.

    `patch` is the diff itself (the demo's and the tests' way); the others are ksplice-create's
    options. `source` may be a tree or a distro source package (see distro/srcpkg.py).
    """
    given = PatchInput(patch_file, diffext, git_commit, patch)
    if len(given.given()) + prebuild != 1:
        raise KspliceError(
            "give exactly one of --patch, --diffext, --git or --prebuild",
            hint="e.g. ksplice-pkg create --patch fix.patch /usr/src/linux",
        )
    _check_choices(update_id, jobs, description, series, replace)
    for cve in cves:
        if not CVE_RE.fullmatch(cve):
            raise KspliceError(f"--cve {cve!r} is not a CVE id", hint="e.g. --cve CVE-2024-26581")
    return CreateOptions(
        mode=Mode.PREBUILD if prebuild else Mode.UPDATE,
        source=source,
        target=target,
        packages=packages or KernelPackages(),
        patch=None if prebuild else given,
        keyring=keyring,
        # Absolute: the work dirs under it are kbuild's O= and M=, which make takes relative to
        # the tree (a farm's debian/rules passes a cache inside the build tree).
        cache=cache.absolute(),
        update_id=update_id,
        description=description,
        jobs=jobs,
        output_dir=output_dir,
        patch_opt=patch_opt,
        series=tuple(series),
        replace=replace,
        runtime_only=runtime_only,
        cves=tuple(cves),
        signing=signing,
    )


def _check_choices(
    update_id: str | None,
    jobs: int | None,
    description: str | None,
    series: Sequence[object],
    replace: bool,
) -> None:
    if update_id is not None and not ID_RE.fullmatch(update_id):
        raise KspliceError(f"--id {update_id!r}: use 1 to 32 characters of [a-z0-9]")
    if jobs is not None and jobs < 1:
        raise KspliceError(f"-j {jobs}: give a positive number of parallel jobs")
    if description is not None:
        check_description(description)
    if series and replace:
        raise KspliceError(
            "--series and --replace do not go together: a cumulative update stands alone",
            hint="make the cumulative patch hold every fix, and give it --replace only",
        )


def create_config(
    options: CreateOptions,
    tree: Path,
    target: TargetFiles,
    series: Sequence[PreviousUpdate],
    patch: bytes,
) -> CreateConfig:
    """The configuration of an update, from the options and what the first stage made of them:
    the kernel tree, the target's files, the earlier updates and the patch."""
    _check_choices(options.update_id, options.jobs, options.description, series, options.replace)
    ids = [p.manifest.id for p in series]
    if len(set(ids)) != len(ids) or (options.update_id is not None and options.update_id in ids):
        raise KspliceError(f"--series: update ids repeat ({', '.join(ids)})")
    description = options.description
    return CreateConfig(
        source=tree.resolve(),
        target=target,
        patch=patch,
        patch_opt=options.patch_opt,
        id=options.update_id or random_id(),
        description=check_description(
            description if description is not None else description_from(patch, target.release)
        ),
        jobs=options.jobs or default_jobs(),
        output_dir=options.output_dir.resolve(),
        work_dir=work_dir_for(options.cache, tree),
        cache=options.cache,
        series=tuple(series),
        replace=options.replace,
        runtime_only=options.runtime_only,
        created=build_time(),
        cves=options.cves,
        signing=options.signing,
    )


def prebuild_config(options: CreateOptions, tree: Path, target: TargetFiles) -> PrebuildConfig:
    return PrebuildConfig(
        source=tree.resolve(),
        target=target,
        jobs=options.jobs or default_jobs(),
        work_dir=work_dir_for(options.cache, tree),
        cache=options.cache,
    )
