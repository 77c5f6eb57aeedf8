"""The target described by kernel packages, through the real command line: pieces found in the
packages, one error naming every missing piece and where to get it, packages of another
architecture or version refused naming both, and a .config that does not match the map."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.distro.kernelpkg import KernelPackages, host_arch, unpack_kernel_packages
from ksplice_pkg.distro.srcpkg import identify
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.run import run
from ksplice_pkg.target.consistency import check_target
from ksplice_pkg.target.files import TargetFiles, TargetSpec
from ksplice_pkg.target.symbols import SymbolMap
from ksplice_pkg.unpack import ArchiveError
from tests.unit.distro import fixtures

KALLSYMS = "ffffffff81000000 T _text\nffffffff81000100 T a\nffffffff82000000 r __ksymtab_a\n"


def _create(tmp_path: Path, source: Path, *options: str) -> Result:
    patch = tmp_path / "fix.patch"
    patch.write_text(fixtures.FIX)
    return CliRunner().invoke(
        main,
        [
            "create",
            f"--patch={patch}",
            f"--cache-dir={tmp_path / 'cache'}",
            f"-o{tmp_path / 'out'}",
            *options,
            str(source),
        ],
    )


def _refused(result: Result, *names: str, exit_code: int = KspliceError.exit_code) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    for name in names:
        assert name in result.output, (name, result.output)
    return result.output


def _nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())
    assert not list((tmp_path / "cache").rglob("*.partial"))


def test_pieces_are_taken_from_the_packages(tmp_path: Path) -> None:
    image = fixtures.image_deb(tmp_path)
    headers = fixtures.headers_deb(tmp_path)
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    dsc = fixtures.dsc(tmp_path / "pkg")
    target = unpack_kernel_packages(
        TargetSpec(system_map=kallsyms),
        KernelPackages(kernel=image, headers=headers),
        cache=tmp_path / "cache",
        source=identify(dsc),
    ).resolve()
    assert target.release == fixtures.RELEASE
    assert target.kconfig.read_bytes() == fixtures.CONFIG
    assert target.symvers.read_bytes() == fixtures.SYMVERS
    assert target.binary is not None and target.binary.name == f"vmlinuz-{fixtures.RELEASE}"
    assert target.system_map == kallsyms  # Debian's stub System.map is not taken
    # Run-pre of a module unit reads the .ko files of the image's lib/modules/<release>.
    assert target.modules_dir is not None
    assert (target.modules_dir / "kernel/fs/nfsd/nfsd.ko").is_file()


def test_missing_pieces_are_named_in_one_error_with_where_to_get_them(tmp_path: Path) -> None:
    image = fixtures.image_deb(tmp_path)
    dsc = fixtures.dsc(tmp_path / "pkg")
    output = _refused(
        _create(tmp_path, dsc, f"--kernel-package={image}"),
        "symbol map",
        "Module.symvers",
        "--system-map",
        "--headers-package",
        "--debug-package",
        f"linux-headers-{fixtures.RELEASE}",
    )
    assert output.count("error:") == 1
    _nothing_written(tmp_path)


def test_kernel_package_of_another_architecture_is_refused_naming_both(tmp_path: Path) -> None:
    other = "arm64" if host_arch() == "x86_64" else "amd64"
    image = fixtures.image_deb(tmp_path, arch=other)
    headers = fixtures.headers_deb(tmp_path)
    dsc = fixtures.dsc(tmp_path / "pkg")
    _refused(
        _create(tmp_path, dsc, f"--kernel-package={image}", f"--headers-package={headers}"),
        other,
        host_arch(),
        image.name,
    )
    _nothing_written(tmp_path)
    # Refused before the source package was unpacked: the check costs nothing.
    assert not (tmp_path / "cache" / "sources").exists()


@pytest.mark.parametrize("source_kind", ["dsc", "srpm", "tree"])
def test_kernel_package_of_another_version_is_refused_naming_both(
    tmp_path: Path, source_kind: str
) -> None:
    image = fixtures.image_deb(tmp_path, version="6.2.9-1")
    if source_kind == "dsc":
        source = fixtures.dsc(tmp_path / "pkg")
    elif source_kind == "srpm":
        source = fixtures.srpm(tmp_path / "rpm")
    else:
        source = fixtures.kernel_tree(tmp_path / "tree")
    _refused(
        _create(tmp_path, source, f"--kernel-package={image}"),
        "6.2.9-1",
        fixtures.VERSION,
        image.name,
        source.name,
    )
    _nothing_written(tmp_path)


def test_same_upstream_other_debian_revision_is_refused(tmp_path: Path) -> None:
    """6.1.187-2's image is not built from 6.1.187-1's patches."""
    image = fixtures.image_deb(tmp_path, version=f"{fixtures.VERSION}-2")
    dsc = fixtures.dsc(tmp_path / "pkg")
    _refused(_create(tmp_path, dsc, f"--kernel-package={image}"), f"{fixtures.VERSION}-2")


def test_config_that_does_not_match_the_symbol_map_is_refused(tmp_path: Path) -> None:
    """A whole map (tens of thousands of symbols) without klp_enable_patch is not of a kernel
    whose .config enables CONFIG_LIVEPATCH."""
    kallsyms = tmp_path / "kallsyms"
    lines = [f"ffffffff81{n:06x}0 T function_{n}" for n in range(12_000)]
    kallsyms.write_text(
        "\n".join(["ffffffff81000000 T _text", *lines, "ffffffff81f00000 T register_kprobe"]) + "\n"
    )
    config = tmp_path / "config"
    config.write_bytes(fixtures.CONFIG)
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("")
    target = TargetFiles(kallsyms, config, symvers, None, fixtures.RELEASE)
    with pytest.raises(KspliceError) as e:
        check_target(target, SymbolMap.load(kallsyms), None)
    assert "CONFIG_LIVEPATCH" in e.value.message and "klp_enable_patch" in e.value.message
    assert "CONFIG_KPROBES" in e.value.message  # off in the config, present in the map
    assert str(config) in e.value.message and str(kallsyms) in e.value.message


def test_kernel_core_rpm_gives_every_piece(tmp_path: Path) -> None:
    """Fedora's kernel-core ships its System.map and symvers.xz beside vmlinuz."""
    rpm = fixtures.kernel_core_rpm(tmp_path / "rpm")
    source = identify(fixtures.srpm(tmp_path / "srpm"))
    target = unpack_kernel_packages(
        TargetSpec(), KernelPackages(kernel=rpm), cache=tmp_path / "cache", source=source
    ).resolve()
    assert target.release == fixtures.RPM_RELEASE
    assert target.symvers.read_bytes() == fixtures.SYMVERS
    assert target.system_map.read_bytes() == fixtures.REAL_MAP
    assert target.kconfig.read_bytes() == fixtures.CONFIG


def test_kernel_rpm_of_another_architecture_is_refused_naming_both(tmp_path: Path) -> None:
    other = "aarch64" if host_arch() == "x86_64" else "x86_64"
    rpm = fixtures.kernel_core_rpm(tmp_path / "rpm", target=other)
    _refused(
        _create(tmp_path, fixtures.kernel_tree(tmp_path / "t"), f"--kernel-package={rpm}"),
        other,
        host_arch(),
        rpm.name,
    )
    _nothing_written(tmp_path)


def test_rpm_with_a_symlink_out_of_the_unpack_directory_is_refused(tmp_path: Path) -> None:
    rpm = fixtures.binary_rpm(
        tmp_path / "rpm",
        "kernel-core",
        {f"lib/modules/{fixtures.RPM_RELEASE}/config": fixtures.CONFIG},
        symlinks={f"lib/modules/{fixtures.RPM_RELEASE}/escape": "../../../../../../etc"},
    )
    output = _refused(
        _create(tmp_path, fixtures.kernel_tree(tmp_path / "t"), f"--kernel-package={rpm}"),
        "escape",
        rpm.name,
        exit_code=ArchiveError.exit_code,
    )
    assert "outside" in output or "out of" in output
    _nothing_written(tmp_path)


def test_symbol_map_from_the_debug_package(tmp_path: Path) -> None:
    image = fixtures.image_deb(tmp_path)
    headers = fixtures.headers_deb(tmp_path)
    dbg = fixtures.deb(
        tmp_path,
        f"linux-image-{fixtures.RELEASE}-dbg",
        {f"usr/lib/debug/boot/System.map-{fixtures.RELEASE}": fixtures.REAL_MAP},
    )
    target = unpack_kernel_packages(
        TargetSpec(),
        KernelPackages(kernel=image, headers=headers, debug=dbg),
        cache=tmp_path / "cache",
        source=None,
    ).resolve()
    assert target.system_map.read_bytes() == fixtures.REAL_MAP


def test_tarball_source_is_checked_against_the_kernel_package_once_unpacked(
    tmp_path: Path,
) -> None:
    """A linux-source tarball's name carries no version: its Makefile does."""
    tree = fixtures.kernel_tree(tmp_path / "src", "linux-source-6.1")
    tarball = tmp_path / "linux-source-6.1.tar.xz"
    run(["tar", "-C", tree.parent, "-cJf", tarball, tree.name])
    image = fixtures.image_deb(tmp_path, version="6.2.9-1")
    _refused(_create(tmp_path, tarball, f"--kernel-package={image}"), "6.2.9-1", fixtures.VERSION)


def test_headers_of_another_release_are_refused_naming_both(tmp_path: Path) -> None:
    image = fixtures.image_deb(tmp_path)
    other = "6.1.0-52-cloud-amd64"
    headers = fixtures.deb(
        tmp_path,
        f"linux-headers-{other}",
        {f"usr/src/linux-headers-{other}/Module.symvers": fixtures.SYMVERS},
    )
    _refused(
        _create(
            tmp_path,
            fixtures.dsc(tmp_path / "pkg"),
            f"--kernel-package={image}",
            f"--headers-package={headers}",
        ),
        other,
        fixtures.RELEASE,
    )
    _nothing_written(tmp_path)


def test_build_refuses_a_dsc_with_a_missing_file_and_writes_nothing(tmp_path: Path) -> None:
    """`build` goes through the same checks as `create`, before any unpacking."""
    dsc = fixtures.dsc(tmp_path / "pkg")
    (orig,) = dsc.parent.glob("*.orig.tar.*")
    orig.unlink()
    image = fixtures.image_deb(tmp_path)
    headers = fixtures.headers_deb(tmp_path)
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    patch = tmp_path / "fix.patch"
    patch.write_text(fixtures.FIX)
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(dsc),
            f"--patch={patch}",
            f"--kernel-package={image}",
            f"--headers-package={headers}",
            f"--system-map={kallsyms}",
            f"--cache-dir={tmp_path / 'cache'}",
            f"-o{tmp_path / 'out'}",
        ],
    )
    _refused(result, orig.name, "apt-get source")
    _nothing_written(tmp_path)
    assert not (tmp_path / "cache" / "sources").exists() or not [
        p for p in (tmp_path / "cache" / "sources").iterdir() if p.is_dir()
    ]


def test_compressed_symvers_is_streamed_capped_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ksplice_pkg.distro import kernelpkg

    monkeypatch.setattr(kernelpkg, "_MAX_SYMVERS", 1000)
    bomb = tmp_path / "bomb" / "symvers.xz"
    bomb.parent.mkdir()
    bomb.write_bytes(lzma.compress(b"0" * 10_000))
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        kernelpkg._decompressed(bomb)
    assert sorted(p.name for p in bomb.parent.iterdir()) == ["symvers.xz"]
    damaged = tmp_path / "damaged" / "symvers.gz"
    damaged.parent.mkdir()
    damaged.write_bytes(gzip.compress(fixtures.SYMVERS)[:-12])
    with pytest.raises(ArchiveError, match="not readable gz data"):
        kernelpkg._decompressed(damaged)
    assert sorted(p.name for p in damaged.parent.iterdir()) == ["symvers.gz"]
