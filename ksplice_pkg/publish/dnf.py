"""The dnf repository: signed RPMs, createrepo_c's metadata, an updateinfo.xml with one
advisory per update (its CVE ids as references) added by modifyrepo_c, repomd.xml signed.

    <repo>/rpm/Packages/<name>-<version>-<release>.<arch>.rpm
    <repo>/rpm/repodata/{repomd.xml,repomd.xml.asc,*-updateinfo.xml.gz,...}

    [ksplice]
    baseurl=<url of repo>/rpm
    gpgcheck=1
    repo_gpgcheck=1
    gpgkey=<url of repo>/signing-key.asc

Every version published stays in Packages/ and in the metadata: dnf upgrades to the newest and
can go back (`dnf downgrade`). `dnf updateinfo list --with-cve` and `dnf upgrade --cve=CVE-...`
read the advisories.
"""

from __future__ import annotations

import re
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ksplice_pkg import unpack
from ksplice_pkg.manifest import CREATED_FORMAT, Manifest, ManifestError
from ksplice_pkg.package.naming import UPDATES_DIR, plain
from ksplice_pkg.publish.common import Placed, PublishError, place
from ksplice_pkg.publish.signing import Signer
from ksplice_pkg.run import piped, run, run_text

# A hotpatch package's payload is its update's four files: a bound for reading one back.
_MAX_PAYLOAD = 256 << 20
_MANIFEST_RE = re.compile(re.escape(UPDATES_DIR) + r"/([^/]+)/([a-z0-9]+)/manifest\.json")
CVE_URL = "https://www.cve.org/CVERecord?id={}"


@dataclass(frozen=True)
class RpmPackage:
    path: Path
    name: str
    version: str
    release: str
    arch: str
    sourcerpm: str
    manifest: Manifest | None  # None: not a hotpatch package (the runtime, say)


def add(repo: Path, rpms: list[Path], signer: Signer | None) -> list[Placed]:
    root = repo / "rpm"
    placed = [
        place(
            rpm,
            root,
            ("Packages", _file_name(rpm)),
            same=_same_package,
            finish=signer.sign_rpm if signer else None,
        )
        for rpm in rpms
    ]
    repomd = root / "repodata" / "repomd.xml"
    current = repomd.is_file()
    if signer and current:
        current = signer.signs(repomd.with_name("repomd.xml.asc"), repomd)
    if any(p.new for p in placed) or not current:
        _index(root, signer)
    return placed


def _query(rpm: Path, fmt: str) -> str:
    return run_text(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fmt, rpm])


def _header(rpm: Path) -> tuple[str, str, str, str, str]:
    """name, version, release, arch and source RPM, as rpm reads them."""
    fields = _query(rpm, r"%{NAME}\n%{VERSION}\n%{RELEASE}\n%{ARCH}\n%{SOURCERPM}\n")
    name, version, release, arch, source = fields.split("\n")[:5]
    return name, version, release, arch, source


def _file_name(rpm: Path) -> str:
    name, version, release, arch, source = _header(rpm)
    if source == "(none)":
        raise PublishError(f"{rpm} is a source package: a repository of these holds binary ones")
    return plain(f"{name}-{version}-{release}.{arch}.rpm", "RPM file name")


def _unsigned(rpm: Path) -> bytes:
    """The header and payload of an RPM: what a signature covers, the same before and after
    rpmsign (which rewrites only the signature header before them)."""
    data = rpm.read_bytes()
    lead = 96
    # The signature header: 16 bytes of magic and counts, 16 an index entry, then its store,
    # padded to 8 bytes.
    if len(data) < lead + 16 or data[lead : lead + 3] != b"\x8e\xad\xe8":
        raise PublishError(f"{rpm} is not an RPM package")
    entries = int.from_bytes(data[lead + 8 : lead + 12], "big")
    store = int.from_bytes(data[lead + 12 : lead + 16], "big")
    end = lead + 16 + 16 * entries + store
    return data[end + (-end % 8) :]


def _same_package(new: Path, published: Path) -> bool:
    return _unsigned(new) == _unsigned(published)


def read_package(rpm: Path) -> RpmPackage:
    files = _query(rpm, r"[%{FILENAMES}\n]").splitlines()
    manifest = None
    if any(_MANIFEST_RE.fullmatch(f.lstrip("/")) for f in files):
        manifest = _manifest(rpm)
    return RpmPackage(rpm, *_header(rpm), manifest=manifest)


def _manifest(rpm: Path) -> Manifest:
    """The manifest a hotpatch RPM installs, checked as the runtime checks it."""
    with piped(["rpm2cpio", rpm]) as stream:
        for member in unpack.iter_cpio(stream, str(rpm), max_total=_MAX_PAYLOAD):
            match = _MANIFEST_RE.fullmatch(member.name)
            if match is None or member.kind is not unpack.MemberKind.FILE:
                continue
            with member.open() as f:
                data = f.read()
            try:
                m = Manifest.from_json(data, f"{rpm}: {member.name}")
            except ManifestError as e:
                raise PublishError(e.message) from e
            if (m.kernel_release, m.id) != match.groups():
                raise PublishError(f"{rpm}: {member.name} is the manifest of another update")
            return m
    raise PublishError(f"{rpm}: no update manifest in its payload")


def updateinfo(packages: list[RpmPackage]) -> bytes:
    """One advisory per update (a kernel release and an update id), naming every package
    published of it (a per-update package and the stream's version, each architecture)."""
    by_update: dict[tuple[str, str], list[RpmPackage]] = {}
    for p in packages:
        if p.manifest is not None:
            by_update.setdefault((p.manifest.kernel_release, p.manifest.id), []).append(p)
    updates = ET.Element("updates")
    for (release, update_id), published in sorted(by_update.items()):
        m = published[0].manifest
        assert m is not None
        kind = "security" if m.cves else "bugfix"
        update = ET.SubElement(
            updates,
            "update",
            {"from": "ksplice-pkg", "status": "final", "type": kind, "version": "1"},
        )
        ET.SubElement(update, "id").text = f"KSPLICE-{release}-{update_id}"
        ET.SubElement(update, "title").text = f"Live kernel update {update_id} for Linux {release}"
        if m.created:
            issued = time.strptime(m.created, CREATED_FORMAT)
            ET.SubElement(update, "issued", {"date": time.strftime("%Y-%m-%d %H:%M:%S", issued)})
        ET.SubElement(update, "description").text = m.description
        references = ET.SubElement(update, "references")
        for cve in m.cves:
            ET.SubElement(
                references,
                "reference",
                {"href": CVE_URL.format(cve), "id": cve, "type": "cve", "title": cve},
            )
        pkglist = ET.SubElement(update, "pkglist")
        collection = ET.SubElement(pkglist, "collection", {"short": f"ksplice-{release}"})
        ET.SubElement(collection, "name").text = f"Live kernel updates for Linux {release}"
        for p in sorted(published, key=lambda p: p.path.name):
            package = ET.SubElement(
                collection,
                "package",
                {
                    "name": p.name,
                    "version": p.version,
                    "release": p.release,
                    "epoch": "0",
                    "arch": p.arch,
                    "src": p.sourcerpm,
                },
            )
            ET.SubElement(package, "filename").text = p.path.name
    ET.indent(updates)
    text: bytes = ET.tostring(updates, encoding="UTF-8", xml_declaration=True)
    return text + b"\n"


def _index(root: Path, signer: Signer | None) -> None:
    run(["createrepo_c", "--quiet", "--update", root])
    packages = [read_package(p) for p in sorted((root / "Packages").glob("*.rpm"))]
    with tempfile.TemporaryDirectory(prefix="ksplice-updateinfo-") as tmp:
        info = Path(tmp) / "updateinfo.xml"
        info.write_bytes(updateinfo(packages))
        run(
            ["modifyrepo_c", "--mdtype=updateinfo", "--compress-type=gz", info,
             root / "repodata"]
        )  # fmt: skip
    if signer:
        repomd = root / "repodata" / "repomd.xml"
        signer.detach_sign(repomd, repomd.with_name("repomd.xml.asc"))
