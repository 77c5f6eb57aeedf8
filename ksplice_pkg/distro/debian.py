"""Fetch a Debian kernel's image, headers and source from the apt archive and lay them out.

apt does the downloading, so every .deb is checked against the archive's signed Release file; a
.deb already in the cache is reused only when its SHA256 equals the one apt's lists give.
The layout under `<cache>/kernels/<release>/`:

    debs/            the downloaded packages
    image/           the image package unpacked (boot/vmlinuz-*, lib/modules/<release>)
    headers/         the flavour's headers package unpacked (Module.symvers)
    src/linux-source-X.Y/   the Debian-patched source tree, never modified
    target/          the target kernel's description, as `ksplice-pkg create --config` expects it:
                     .config, Module.symvers, vmlinuz, kernel.release
    artifacts.json   written last: its presence means the layout is complete
    dsc/             with `fetch --source-package`: the Debian source package (linux_*.dsc and
                     its tarballs) the kernel was built from, for `create`/`build`

The packages are unpacked by distro/archive.py (member names checked) like any other input;
the source package is downloaded through a private deb-src view kept in `<cache>/apt-src/`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from debian.deb822 import Packages
from debian.debian_support import Version

from ksplice_pkg.cache import mark_used
from ksplice_pkg.distro.archive import unpack_deb
from ksplice_pkg.distro.srcpkg import unpack_source_deb
from ksplice_pkg.errors import CommandError, KspliceError
from ksplice_pkg.fsutil import atomic_directory, atomic_write, sha256_file
from ksplice_pkg.log import logger, step
from ksplice_pkg.run import run, run_text
from ksplice_pkg.target.files import FETCHED_MARK, MODULES_DIR

DEFAULT_FLAVOUR = "cloud-amd64"
# 6.1.0-56-cloud-amd64 (ABI 6.1.0-56) or 6.12.115+deb12-cloud-amd64 (ABI 6.12.115+deb12).
_RELEASE_RE = re.compile(r"^(?P<abi>\d+\.\d+\.\d+(?:-\d+|\+deb\d+))-(?P<flavour>[a-z0-9-]+)$")
_APT_HINT = "refresh the package lists with `apt-get update` (as root) and try again"


@dataclass(frozen=True)
class KernelArtifacts:
    """A fetched distro kernel: where each piece lies in the cache."""

    release: str  # uname -r of the target kernel, e.g. 6.1.0-56-cloud-amd64
    version: str  # the Debian package version, e.g. 6.1.192-2
    root: Path

    @property
    def source_tree(self) -> Path:
        (tree,) = (self.root / "src").iterdir()
        return tree

    @property
    def target_dir(self) -> Path:
        return self.root / "target"

    @property
    def vmlinuz(self) -> Path:
        return self.target_dir / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.target_dir / ".config"

    @property
    def symvers(self) -> Path:
        return self.target_dir / "Module.symvers"

    @property
    def modules_dir(self) -> Path:
        """lib/modules/<release> of the image package, with modules.dep generated."""
        return self.root / "image" / "lib" / "modules" / self.release

    @property
    def kallsyms(self) -> Path:
        """/proc/kallsyms of this kernel booted in the lab (see vm.capture_kallsyms)."""
        return self.target_dir / "kallsyms"

    def to_json(self) -> str:
        d = asdict(self)
        d["root"] = str(self.root)
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def load(cls, root: Path) -> KernelArtifacts | None:
        stamp = root / "artifacts.json"
        if not stamp.is_file():
            return None
        d = json.loads(stamp.read_text())
        return cls(release=d["release"], version=d["version"], root=root)


def apt_record(package: str, version: str | None = None) -> Packages | None:
    """The apt record of package (at version, else the candidate), or None if apt has none."""
    spec = f"{package}={version}" if version else package
    proc = run(["apt-cache", "show", "--no-all-versions", spec], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Packages(proc.stdout.decode())


def available_releases(flavour: str) -> list[str]:
    """Kernel releases of this flavour that the apt sources offer, oldest first."""
    names = run_text(["apt-cache", "pkgnames", "linux-image-"]).split()
    abis = {
        release: m["abi"]
        for name in names
        if (m := _RELEASE_RE.match(release := name.removeprefix("linux-image-")))
        and m["flavour"] == flavour
    }
    # The ABI part (6.1.0-56, 6.12.115+deb12) orders as a Debian version does.
    return sorted(abis, key=lambda r: Version(abis[r]))


def default_release(flavour: str = DEFAULT_FLAVOUR) -> str:
    """The kernel Debian installs for this flavour: what linux-image-<flavour> depends on."""
    meta = apt_record(f"linux-image-{flavour}")
    if meta is None:
        raise KspliceError(f"apt knows no package linux-image-{flavour}", hint=_APT_HINT)
    for alternative in meta.relations.get("depends") or []:
        name = alternative[0]["name"]
        if name.startswith("linux-image-") and name.endswith(flavour):
            return str(name.removeprefix("linux-image-"))
    raise KspliceError(f"linux-image-{flavour} depends on no kernel image package")


def _not_found(what: str, release: str, flavour: str) -> KspliceError:
    offered = available_releases(flavour)
    # Releases of the same series (6.1 for 6.1.0-56) first: the likeliest intended ones.
    series = release.split(".")[:2]
    same = [r for r in offered if r.split(".")[:2] == series]
    shown = (same or offered)[-10:]
    label = f"{'.'.join(series)} {flavour}" if same else flavour
    return KspliceError(
        f"no {what} in the apt sources; {label} releases offered: "
        + (", ".join(shown) if shown else "none"),
        hint=f"pick one of those, or {_APT_HINT}",
    )


def download_deb(record: Packages, debs: Path) -> Path:
    """The .deb of record in debs/, downloaded by apt unless a verified copy is already there."""
    filename = Path(record["Filename"]).name
    deb = debs / filename
    if deb.is_file() and sha256_file(deb) == record["SHA256"]:
        logger.debug("reusing %s", deb)
        return deb
    debs.mkdir(parents=True, exist_ok=True)
    # apt drops privileges to _apt for downloads, which cannot write into a root-owned cache.
    run(
        [
            "apt-get",
            "download",
            "-o",
            "APT::Sandbox::User=root",
            f"{record['Package']}={record['Version']}",
        ],
        cwd=debs,
    )
    if not deb.is_file():
        raise KspliceError(f"apt-get download did not produce {deb}")
    return deb


def _unpack_deb(deb: Path, dest: Path) -> None:
    with atomic_directory(dest) as tmp:
        unpack_deb(deb, tmp)


def _unpack_source(source_deb: Path, dest: Path) -> None:
    """Unpack the linux-source tarball that the linux-source-X.Y package carries."""
    with atomic_directory(dest) as tmp:
        unpack_source_deb(source_deb, tmp)


_DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
_ONE_LINE_SOURCES = Path("/etc/apt/sources.list")
_SYSTEM_LISTS = Path("/var/lib/apt/lists")


def source_apt_options(cache: Path) -> list[str]:
    """apt options for a private deb-src view of the system's Debian sources.

    The system's apt configuration is left alone: the deb-src entries (a `Types: deb-src` copy
    of its sources) and their package lists live under the cache, fetched with the same
    archive keys, so apt checks the .dsc and its tarballs against the signed Sources index.
    """
    state = cache / "apt-src"
    parts = state / "sources.list.d"
    lists = state / "lists"
    options = {
        "APT::Sandbox::User": "root",
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": str(parts),
        "Dir::State::Lists": str(lists),
        "Dir::Cache": str(state / "cache"),
    }
    argv = [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    stamp = lists / "updated"
    # The view is refreshed whenever the system's own lists are newer (`apt-get update`, as
    # scripts/setup runs it): a new security upload's source is then seen too.
    system = [p.stat().st_mtime for p in _SYSTEM_LISTS.glob("*Release")]
    stale = not stamp.is_file() or (bool(system) and max(system) > stamp.stat().st_mtime)
    if stale or not any(parts.glob("debian-src.*")):
        if _DEBIAN_SOURCES.is_file():  # Debian 12's deb822 sources
            text = re.sub(r"(?m)^Types:.*$", "Types: deb-src", _DEBIAN_SOURCES.read_text())
            atomic_write(parts / "debian-src.sources", text)
        elif _ONE_LINE_SOURCES.is_file():  # the older one-line format
            lines = _ONE_LINE_SOURCES.read_text().splitlines()
            text = "".join(f"deb-src{ln[3:]}\n" for ln in lines if ln.startswith("deb "))
            atomic_write(parts / "debian-src.list", text)
        else:
            raise KspliceError(
                f"neither {_DEBIAN_SOURCES} nor {_ONE_LINE_SOURCES} exists: no Debian archive "
                "to take sources from",
                hint="give the .dsc and its files yourself (apt-get source --download-only)",
            )
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        with step("reading the archive's source package lists (deb-src)"):
            run(["apt-get", "-q", *argv, "update"])
        atomic_write(stamp, "")
    return argv


def fetch_source_package(cache: Path, release: str) -> Path:
    """Download the Debian source package (.dsc and tarballs) that `release` was built from;
    returns the .dsc. The version is the headers package's: the image comes from
    linux-signed-*, whose own version is not the source's."""
    m = _RELEASE_RE.match(release)
    if not m:
        raise KspliceError(f"{release!r} is not a Debian kernel release")
    headers = apt_record(f"linux-headers-{release}")
    if headers is None:
        raise _not_found(f"package linux-headers-{release}", release, m["flavour"])
    name = str(headers.get("Source", headers["Package"])).split()[0]
    version = str(headers["Version"])
    return download_source_package(cache, name, version, cache / "kernels" / release / "dsc")


def download_source_package(cache: Path, name: str, version: str, dest: Path) -> Path:
    """The source package name=version (.dsc and tarballs) downloaded into dest, unless a
    complete download is there; returns the .dsc."""
    dsc = dest / f"{name}_{version.rsplit(':', maxsplit=1)[-1]}.dsc"
    if dsc.is_file() and (dest / "complete").is_file():
        return dsc
    argv = source_apt_options(cache)
    dest.mkdir(parents=True, exist_ok=True)
    with step(f"downloading the source package {name} {version}"):
        try:
            # apt checks every file against the signed Sources index as it downloads it.
            run(
                ["apt-get", "-q", *argv, "source", "--download-only", f"{name}={version}"], cwd=dest
            )
        except CommandError as e:
            raise KspliceError(
                f"the archive does not serve the source package {name} {version}: "
                f"{e.message.splitlines()[-1].strip()}",
                hint="mirrors keep only some versions; pick a release whose source is served "
                "(`apt-cache showsrc linux` with a deb-src entry), or give the .dsc yourself",
            ) from e
    if not dsc.is_file():
        raise KspliceError(f"apt-get source did not produce {dsc}")
    atomic_write(dest / "complete", version + "\n")
    return dsc


def fetch(cache: Path, release: str | None = None) -> KernelArtifacts:
    """Download and lay out the image, headers and source of a Debian kernel release."""
    flavour = DEFAULT_FLAVOUR
    if release is None:
        release = default_release(flavour)
    else:
        m = _RELEASE_RE.match(release)
        if not m:
            raise KspliceError(
                f"{release!r} is not a Debian kernel release",
                hint="give one as `uname -r` prints it, e.g. Debian's current one: "
                + default_release(flavour),
            )
        flavour = m["flavour"]

    root = cache / "kernels" / release
    if (done := KernelArtifacts.load(root)) is not None:
        logger.info("kernel %s (%s) is already in %s", release, done.version, root)
        mark_used(cache, [root])
        return done

    image = apt_record(f"linux-image-{release}")
    if image is None:
        raise _not_found(f"package linux-image-{release}", release, flavour)
    headers = apt_record(f"linux-headers-{release}", image["Version"])
    if headers is None:
        raise _not_found(f"package linux-headers-{release} at {image['Version']}", release, flavour)
    # The image comes from the signed source package; the headers' version is the linux version.
    version = headers["Version"]
    series = ".".join(version.split(".")[:2])
    source_pkg = f"linux-source-{series}"
    source = apt_record(source_pkg, version)
    if source is None:
        raise KspliceError(
            f"no {source_pkg} at version {version} (the source of {release}) in the apt sources",
            hint=f"`apt-cache policy {source_pkg}` lists the versions offered; {_APT_HINT}",
        )

    debs = root / "debs"
    with step(f"downloading kernel {release} ({version}): image, headers, source"):
        image_deb = download_deb(image, debs)
        headers_deb = download_deb(headers, debs)
        source_deb = download_deb(source, debs)
    with step("unpacking"):
        _unpack_deb(image_deb, root / "image")
        _unpack_deb(headers_deb, root / "headers")
        _unpack_source(source_deb, root / "src")
    _lay_out_target(root, release)
    # The image package leaves modules.dep to its postinst; the lab needs it to load modules.
    run(["depmod", "-b", root / "image", release])
    artifacts = KernelArtifacts(release=release, version=version, root=root)
    atomic_write(root / "artifacts.json", artifacts.to_json())
    return artifacts


def _lay_out_target(root: Path, release: str) -> None:
    target = root / "target"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    boot = root / "image" / "boot"
    shutil.copy2(boot / f"config-{release}", target / ".config")
    shutil.copy2(boot / f"vmlinuz-{release}", target / "vmlinuz")
    symvers = root / "headers" / "usr" / "src" / f"linux-headers-{release}" / "Module.symvers"
    if not symvers.is_file():
        raise KspliceError(f"the headers package of {release} holds no Module.symvers")
    shutil.copy2(symvers, target / "Module.symvers")
    (target / MODULES_DIR).symlink_to(Path("../image/lib/modules") / release)
    (target / FETCHED_MARK).write_text(release + "\n")
