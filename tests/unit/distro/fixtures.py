"""Small distro packages made in the test with the distro's own tools (dpkg-source, dpkg-deb,
rpmbuild): a stand-in kernel tree with a Debian patch series or an RPM spec around it, and
image/headers packages holding a stand-in vmlinuz, config and Module.symvers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from ksplice_pkg.run import run
from tests.unit.tools import bzimage_header

VERSION = "6.1.187"
DEB_VERSION = f"{VERSION}-1"
RELEASE = "6.1.0-53-cloud-amd64"
C_FILE = "int a(void)\n{\n\treturn 1;\n}\n"
FIX = (
    "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,4 +1,4 @@\n"
    " int a(void)\n {\n-\treturn 1;\n+\treturn 42;\n }\n"
)


def kernel_tree(where: Path, name: str = f"linux-{VERSION}") -> Path:
    tree = where / name
    (tree / "fs").mkdir(parents=True)
    major, minor, sub = VERSION.split(".")
    (tree / "Makefile").write_text(
        f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = {sub}\nEXTRAVERSION =\n"
    )
    (tree / "Kconfig").write_text('mainmenu "Linux"\n')
    (tree / "fs" / "a.c").write_text(C_FILE)
    return tree


def dsc(where: Path, version: str = DEB_VERSION) -> Path:
    """linux_<version>.dsc (3.0 quilt): an orig tarball and a debian tarball whose
    debian/patches/series changes fs/a.c."""
    where.mkdir(parents=True, exist_ok=True)
    upstream = version.split("-", maxsplit=1)[0]
    tree = kernel_tree(where, f"linux-{upstream}")
    run(["tar", "-C", where, "-cJf", where / f"linux_{upstream}.orig.tar.xz", tree.name])
    debian = tree / "debian"
    (debian / "source").mkdir(parents=True)
    (debian / "patches").mkdir()
    (debian / "source" / "format").write_text("3.0 (quilt)\n")
    (debian / "patches" / "fix.patch").write_text(FIX)
    (debian / "patches" / "series").write_text("fix.patch\n")
    (debian / "control").write_text(
        "Source: linux\nSection: kernel\nPriority: optional\n"
        "Maintainer: Lab <lab@example.org>\nStandards-Version: 4.6.2\n\n"
        "Package: linux-lab\nArchitecture: all\nDescription: stand-in\n stand-in kernel\n"
    )
    (debian / "changelog").write_text(
        f"linux ({version}) unstable; urgency=medium\n\n  * Stand-in.\n\n"
        " -- Lab <lab@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n"
    )
    run(["dpkg-source", "-b", tree.name], cwd=where)
    return where / f"linux_{version}.dsc"


def deb(
    where: Path,
    package: str,
    files: dict[str, bytes],
    arch: str = "amd64",
    version: str = DEB_VERSION,
    *,
    symlinks: dict[str, str] | None = None,
    compression: str = "gzip",
) -> Path:
    root = where / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: Lab <lab@example.org>\nDescription: stand-in\n"
    )
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name, target in (symlinks or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    out = where / f"{package}_{version}_{arch}.deb"
    run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "-b", root, out])
    return out


def fake_bzimage(release: str) -> bytes:
    return bzimage_header(f"{release} (lab@example.org) #1 SMP Debian {DEB_VERSION}\0".encode())


CONFIG = b"CONFIG_LIVEPATCH=y\nCONFIG_SMP=y\n"
SYMVERS = b"0x12345678\ta\tvmlinux\tEXPORT_SYMBOL\t\n"
STUB_MAP = b"ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"


def image_deb(where: Path, arch: str = "amd64", version: str = DEB_VERSION) -> Path:
    return deb(
        where,
        f"linux-image-{RELEASE}",
        {
            f"boot/vmlinuz-{RELEASE}": fake_bzimage(RELEASE),
            f"boot/config-{RELEASE}": CONFIG,
            f"boot/System.map-{RELEASE}": STUB_MAP,
            f"lib/modules/{RELEASE}/kernel/fs/nfsd/nfsd.ko": b"\x7fELF",
        },
        arch,
        version,
    )


def headers_deb(where: Path) -> Path:
    return deb(
        where,
        f"linux-headers-{RELEASE}",
        {f"usr/src/linux-headers-{RELEASE}/Module.symvers": SYMVERS},
    )


def srpm(where: Path, name: str = "kernel") -> Path:
    """<name>-<VERSION>-1.src.rpm whose %prep unpacks the tree and applies Patch1 (fs/a.c)."""
    sources = where / "SOURCES"
    sources.mkdir(parents=True)
    tree = kernel_tree(where / "src")
    run(["tar", "-C", tree.parent, "-cJf", sources / f"linux-{VERSION}.tar.xz", tree.name])
    (sources / "fix.patch").write_text(FIX)
    spec = sources / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: {VERSION}\nRelease: 1.fc39\nSummary: stand-in\n"
        "License: GPL-2.0-only\nBuildArch: noarch\n"
        f"Source0: linux-{VERSION}.tar.xz\nPatch1: fix.patch\n\n"
        "%description\nstand-in\n\n"
        f"%prep\n%setup -q -n linux-{VERSION}\n%autopatch -p1\n\n%files\n"
    )
    return source_rpm(spec, where)


def source_rpm(spec: Path, where: Path, defines: dict[str, str] | None = None) -> Path:
    """`rpmbuild -bs` of spec, its sources beside it, the .src.rpm written into where."""
    options = {"_topdir": str(where), "_sourcedir": str(spec.parent), "_srcrpmdir": str(where)}
    options.update(defines or {})
    args = [arg for name, value in options.items() for arg in ("--define", f"{name} {value}")]
    run(["rpmbuild", "-bs", *args, spec], env={"SOURCE_DATE_EPOCH": "1700000000"})
    (found,) = where.glob(f"{spec.stem}-*.src.rpm")
    return found


def tar_with_member(path: Path, members: dict[str, bytes]) -> Path:
    """A tarball with exactly these member names: tar itself would not write `../x`."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def symlink_tarball(path: Path, link: str, target: str, through: str) -> Path:
    """A tarball whose symlink `link` -> `target` is then written through as `through`."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(link)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        tar.addfile(info)
        data = b"x"
        member = tarfile.TarInfo(through)
        member.size = 1
        tar.addfile(member, io.BytesIO(data))
    return path


def deb_with_data(where: Path, package: str, data_tar: Path) -> Path:
    """A .deb assembled with ar from a hand-made data tarball (dpkg-deb -b refuses `..`)."""
    control = where / "control.tar.gz"
    tar_with_member(
        control,
        {
            "./control": (
                f"Package: {package}\nVersion: {DEB_VERSION}\nArchitecture: all\n"
                "Maintainer: Lab <lab@example.org>\nDescription: stand-in\n"
            ).encode()
        },
    )
    (where / "debian-binary").write_text("2.0\n")
    out = where / f"{package}.deb"
    (where / "data.tar.gz").write_bytes(data_tar.read_bytes())
    run(["ar", "rc", out, "debian-binary", "control.tar.gz", "data.tar.gz"], cwd=where)
    return out


RPM_RELEASE = "6.1.187-1.fc39.x86_64"


def binary_rpm(
    where: Path,
    name: str,
    files: dict[str, bytes],
    target: str = "x86_64",
    symlinks: dict[str, str] | None = None,
    *,
    hardlinks: dict[str, str] | None = None,
    devices: list[str] | None = None,
    payload_compression: str | None = None,
) -> Path:
    """A binary RPM (rpmbuild -bb) holding these files and symlinks, for `target`; also hard
    links (name -> a file above), character devices (%dev, made by rpm without mknod), and
    the payload compressed as asked (_binary_payload: "w19.zstdio", "w9.gzdio", ...)."""
    where.mkdir(parents=True, exist_ok=True)
    payload = where / f"{name}-payload"
    payload.mkdir()
    for path, data in files.items():
        (payload / path).parent.mkdir(parents=True, exist_ok=True)
        (payload / path).write_bytes(data)
    install = [f"cp -a {payload}/. %{{buildroot}}/"]
    for link, points_to in (symlinks or {}).items():
        install.append(f"mkdir -p %{{buildroot}}/{Path(link).parent}")
        install.append(f"ln -s {points_to} %{{buildroot}}/{link}")
    for link, original in (hardlinks or {}).items():
        install.append(f"ln %{{buildroot}}/{original} %{{buildroot}}/{link}")
    listed = [f"/{p}" for p in [*files, *(symlinks or {}), *(hardlinks or {})]]
    listed += [f"%dev(c, 1, 3) /{p}" for p in devices or []]
    spec = where / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: {VERSION}\nRelease: 1.fc39\nSummary: stand-in\n"
        "License: GPL-2.0-only\n\n%description\nstand-in\n\n"
        "%install\n" + "\n".join(install) + "\n\n%files\n" + "\n".join(listed) + "\n"
    )
    run(
        [
            "rpmbuild",
            "-bb",
            "--target",
            target,
            "--define",
            f"_topdir {where / 'top'}",
            "--define",
            f"_rpmdir {where}",
            "--define",
            "_build_id_links none",
            "--define",
            "__os_install_post %{nil}",
            "--define",
            "debug_package %{nil}",
            *(
                ["--define", f"_binary_payload {payload_compression}"]
                if payload_compression
                else []
            ),
            spec,
        ]
    )
    (found,) = where.rglob(f"{name}-{VERSION}-*.rpm")
    return found


def kernel_core_rpm(where: Path, target: str = "x86_64") -> Path:
    import lzma

    base = f"lib/modules/{RPM_RELEASE}"
    return binary_rpm(
        where,
        "kernel-core",
        {
            f"{base}/vmlinuz": fake_bzimage(RPM_RELEASE),
            f"{base}/config": CONFIG,
            f"{base}/System.map": REAL_MAP,
            f"{base}/symvers.xz": lzma.compress(SYMVERS),
        },
        target,
    )


REAL_MAP = b"ffffffff81000000 T _text\nffffffff81000100 T a\nffffffff82000000 r __ksymtab_a\n"
