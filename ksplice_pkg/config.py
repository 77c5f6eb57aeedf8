"""The create configuration: built once from the user's options, then passed down unchanged.

The command line, the demo, the lab tests and the benchmark all build it through
`create_config`, so input exclusivity, patch loading, the id and the description are decided
in one place.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ksplice_pkg.build.kbuild import check_make_path, default_jobs
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import ID_RE
from ksplice_pkg.source.patch import diffext_patch, git_patch, read_patch_file
from ksplice_pkg.source.series import PreviousUpdate, load_previous
from ksplice_pkg.target.files import TargetFiles, TargetSpec
from ksplice_pkg.timestamp import build_time

ID_ALPHABET = string.ascii_lowercase + string.digits


class Mode(Enum):
    UPDATE = "update"  # build an update from a patch
    PREBUILD = "prebuild"  # build the whole kernel once with the differ's flags, then stop


@dataclass(frozen=True)
class CreateConfig:
    mode: Mode
    source: Path
    target: TargetFiles
    patch: str  # unified diff text; "" in PREBUILD mode
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


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


def work_dir_for(cache: Path, source: Path) -> Path:
    """One work dir per source tree: its prepared objects serve every update of that tree."""
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache / "work" / f"{source.resolve().name}-{key}"


def _description_from(patch: str, release: str) -> str:
    """The patch's first line (a mail's Subject), or a generic one for a bare diff."""
    first = next((ln for ln in patch.splitlines() if ln.strip()), "")
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


def create_config(
    source: Path,
    target: TargetFiles | TargetSpec,
    *,
    cache: Path,
    patch_file: Path | None = None,
    diffext: str | None = None,
    git_commit: str | None = None,
    patch: str | None = None,
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
) -> CreateConfig:
    """Check the options against each other, then find the target's files and load the patch.

    `patch` is the diff text itself (the demo's and the tests' way); the others are
    ksplice-create's options. The cheap checks come first, so a wrong option is reported as such
    before anything is read. `source` may be a tree or a distro source package (see
    distro/source.py): kernel packages are checked against its version before it is unpacked.
    """
    from ksplice_pkg.distro.source import SourceKind, identify, prepare_source

    kernel_source = identify(source)
    given = [x for x in (patch_file, diffext, git_commit, patch) if x is not None]
    if len(given) + prebuild != 1:
        raise KspliceError(
            "give exactly one of --patch, --diffext, --git or --prebuild",
            hint="e.g. ksplice-pkg create --patch fix.patch /usr/src/linux",
        )
    if update_id is not None and not ID_RE.fullmatch(update_id):
        raise KspliceError(f"--id {update_id!r}: use 1 to 32 characters of [a-z0-9]")
    if jobs is not None and jobs < 1:
        raise KspliceError(f"-j {jobs}: give a positive number of parallel jobs")
    if description is not None:
        check_description(description)
    if kernel_source.kind is SourceKind.TREE:
        check_make_path(source.resolve(), "the kernel source tree")
        check_make_path(work_dir_for(cache, source), "the work directory (under the cache)")
    if kernel_source.kind is SourceKind.TARBALL and keyring is None:
        # A bare tarball's name says no version: unpack it first, then its Makefile does.
        source = prepare_source(kernel_source, cache)
        kernel_source = identify(source)
        check_make_path(source.resolve(), "the unpacked kernel source tree")
        check_make_path(work_dir_for(cache, source), "the work directory (under the cache)")
    if isinstance(target, TargetSpec):
        target = target.resolve(cache=cache, source=kernel_source)
    if series and replace:
        raise KspliceError(
            "--series and --replace do not go together: a cumulative update stands alone",
            hint="make the cumulative patch hold every fix, and give it --replace only",
        )
    previous = tuple(load_previous(p, target.release) for p in series)
    ids = [p.manifest.id for p in previous]
    if len(set(ids)) != len(ids) or (update_id is not None and update_id in ids):
        raise KspliceError(f"--series: update ids repeat ({', '.join(ids)})")
    if kernel_source.kind is not SourceKind.TREE or keyring is not None:
        source = prepare_source(kernel_source, cache, keyring)
        check_make_path(source.resolve(), "the unpacked kernel source tree")
        check_make_path(work_dir_for(cache, source), "the work directory (under the cache)")
    text = ""
    if patch is not None:
        text = patch
    elif patch_file is not None:
        text = read_patch_file(patch_file)
    elif diffext is not None:
        text = diffext_patch(source, diffext)
    elif git_commit is not None:
        text = git_patch(source, git_commit)
    return CreateConfig(
        mode=Mode.PREBUILD if prebuild else Mode.UPDATE,
        source=source.resolve(),
        target=target,
        patch=text,
        patch_opt=patch_opt,
        id=update_id or random_id(),
        description=check_description(
            description if description is not None else _description_from(text, target.release)
        ),
        jobs=jobs or default_jobs(),
        output_dir=output_dir.resolve(),
        work_dir=work_dir_for(cache, source),
        cache=cache,
        series=previous,
        replace=replace,
        runtime_only=runtime_only,
        created=build_time(),
    )
