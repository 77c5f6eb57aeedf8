"""The target's binary (target.vmlinuz, elf.vmlinux): Debian's vmlinuz extracted once into an
ELF vmlinux whose build-id is the booted kernel's."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.distro.debian import KernelArtifacts
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.vmlinuz import open_vmlinux

LINK_TEXT = 0xFFFFFFFF81000000


def test_vmlinux_from_debian_vmlinuz(
    artifacts: KernelArtifacts, vmlinux: Vmlinux, cache: Path
) -> None:
    # Extracted into the cache, never beside the user's image.
    assert vmlinux.path.is_relative_to(cache) and vmlinux.path.parent != artifacts.vmlinuz.parent
    assert vmlinux.text_address == LINK_TEXT
    build_id = vmlinux.build_id()
    assert build_id is not None and len(build_id) == 40
    # The booted kernel's /sys/kernel/notes, saved when kallsyms was captured.
    recorded = artifacts.target_dir / "build-id"
    if recorded.is_file():
        assert build_id == recorded.read_text().strip()
    # The extracted ELF is reused, not extracted again: the same file (an extraction writes a
    # new one), with no source tree given.
    inode = vmlinux.path.stat().st_ino
    again = open_vmlinux(artifacts.vmlinuz, None, cache)
    assert again.path == vmlinux.path and vmlinux.path.stat().st_ino == inode
    assert open_vmlinux(vmlinux.path, None, cache).build_id() == build_id
    with pytest.raises(KspliceError, match=r"\b0x100000000000\b"):
        vmlinux.read(0x1000_0000_0000, 16)


def test_extraction(artifacts: KernelArtifacts, vmlinux: Vmlinux, tmp_path: Path) -> None:
    images, cache = tmp_path / "images", tmp_path / "cache"
    images.mkdir()
    copy = images / "vmlinuz"
    copy.write_bytes(artifacts.vmlinuz.read_bytes())
    with pytest.raises(KspliceError) as e:
        open_vmlinux(copy, None, cache)
    assert e.value.hint is not None and "extract-vmlinux" in e.value.hint
    # Debian's image is LZ4-compressed: this goes through extract-vmlinux and lz4 -d.
    extracted = open_vmlinux(copy, artifacts.source_tree, cache)
    assert extracted.path.is_relative_to(cache)
    assert extracted.build_id() == vmlinux.build_id()
    # Nothing is written beside the user's image.
    assert sorted(p.name for p in images.iterdir()) == ["vmlinuz"]
    # Another image under the same name is another cache entry: content is the key.
    copy.write_bytes(b"not a kernel at all" * 100)
    with pytest.raises(KspliceError):
        open_vmlinux(copy, artifacts.source_tree, cache)
    assert sorted(p.name for p in images.iterdir()) == ["vmlinuz"]
    # The failed extraction left nothing that the next valid run would pick up.
    copy.write_bytes(artifacts.vmlinuz.read_bytes())
    assert open_vmlinux(copy, artifacts.source_tree, cache).build_id() == vmlinux.build_id()
    assert len(list((cache / "vmlinux").iterdir())) == 1
