"""The target kernel's description (target.files): a config directory with single-file
overrides; its release from the option or from the image's own version string."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.files import TargetSpec, resolve_target, version_string

RELEASE = "6.1.0-56-cloud-amd64"


def _config_dir(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text(name + "\n")
    return root


def bzimage(path: Path, version: str) -> Path:
    """A bzImage's setup header as the boot protocol lays it out: "HdrS" at 0x202, and at
    0x20e the offset (minus 0x200) of the kernel version string."""
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x300 - 0x200)
    text = f"{version} (debian-kernel@lists.debian.org) #1 SMP\0".encode()
    data[0x300 : 0x300 + len(text)] = text
    path.write_bytes(bytes(data))
    return path


def test_config_dir_gives_every_file(tmp_path: Path) -> None:
    d = _config_dir(tmp_path / "t", "kallsyms", ".config", "Module.symvers")
    bzimage(d / "vmlinuz", RELEASE)
    files = TargetSpec(d).resolve()
    assert (files.system_map, files.kconfig, files.symvers) == (
        d / "kallsyms",
        d / ".config",
        d / "Module.symvers",
    )
    assert (files.binary, files.release) == (d / "vmlinuz", RELEASE)


def test_system_map_is_preferred_and_options_override(tmp_path: Path) -> None:
    d = _config_dir(tmp_path / "t", "System.map", "kallsyms", ".config", "Module.symvers")
    other = _config_dir(tmp_path / "o", "my.config")
    files = resolve_target(
        d,
        system_map=None,
        kconfig=other / "my.config",
        symvers=None,
        binary=None,
        release="6.1.0-9-amd64",
    )
    assert (files.system_map, files.kconfig, files.binary) == (
        d / "System.map",
        other / "my.config",
        None,
    )
    assert files.release == "6.1.0-9-amd64"


def test_missing_files_are_named(tmp_path: Path) -> None:
    d = _config_dir(tmp_path / "t", "System.map")
    with pytest.raises(KspliceError) as e:
        TargetSpec(d, release=RELEASE).resolve()
    assert ".config" in e.value.message and "Module.symvers" in e.value.message
    assert str(d) in e.value.message


def test_release_must_be_known(tmp_path: Path) -> None:
    d = _config_dir(tmp_path / "t", "System.map", ".config", "Module.symvers")
    with pytest.raises(KspliceError) as e:
        TargetSpec(d).resolve()
    assert e.value.hint is not None and "--kernel-release" in e.value.hint


def test_version_string_of_a_bzimage_and_a_vmlinux(tmp_path: Path) -> None:
    assert version_string(bzimage(tmp_path / "vmlinuz", RELEASE)) == RELEASE
    elf = tmp_path / "vmlinux"
    elf.write_bytes(b"\x7fELF\0\0" + f"Linux version {RELEASE} (gcc 12) #1".encode() + b"\0")
    assert version_string(elf) == RELEASE
    (tmp_path / "other").write_bytes(b"nothing here")
    assert version_string(tmp_path / "other") is None
