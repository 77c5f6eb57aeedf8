"""The vmlinux inside a compressed vmlinuz (target.vmlinuz): extracted once with the source
tree's scripts/extract-vmlinux, reused while it is newer than the image. The extractor here is
a stand-in that strips a header, as the real one strips the bzImage setup and decompresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.target.vmlinuz import open_vmlinux
from tests.unit.tools import link_vmlinux

HEADER = b"COMPRESSED KERNEL\n"  # 18 bytes


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An ELF vmlinux, a vmlinuz wrapping it, and a source tree that can extract it."""
    vmlinux, _ = link_vmlinux(tmp_path / "build", {"u": "int entry(int x) { return x; }\n"})
    boot = tmp_path / "boot"
    boot.mkdir()
    vmlinuz = boot / "vmlinuz-6.1.0-56-cloud-amd64"
    vmlinuz.write_bytes(HEADER + vmlinux.read_bytes())
    tree = tmp_path / "src"
    (tree / "scripts").mkdir(parents=True)
    (tree / "scripts" / "extract-vmlinux").write_text(f'tail -c +{len(HEADER) + 1} "$1"\n')
    return vmlinux, vmlinuz, tree


def test_elf_vmlinux_is_opened_as_it_is(images: tuple[Path, Path, Path], tmp_path: Path) -> None:
    vmlinux, _, _ = images
    assert open_vmlinux(vmlinux, None, tmp_path / "cache").path == vmlinux
    assert not (tmp_path / "cache").exists()


def test_vmlinuz_is_extracted_once_into_the_cache(
    images: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    vmlinux, vmlinuz, tree = images
    cache = tmp_path / "cache"
    opened = open_vmlinux(vmlinuz, tree, cache)
    assert opened.path.is_relative_to(cache)
    assert opened.path.read_bytes() == vmlinux.read_bytes()
    assert opened.build_id() == open_vmlinux(vmlinux, None, cache).build_id()
    # Reused: no source tree needed the second time, nothing written beside the image; the
    # same file (an extraction writes a new one), marked used for `ksplice-pkg cache`.
    before = opened.path.stat()
    assert open_vmlinux(vmlinuz, None, cache).path == opened.path
    after = opened.path.stat()
    assert after.st_ino == before.st_ino and after.st_mtime_ns >= before.st_mtime_ns
    assert sorted(p.name for p in vmlinuz.parent.iterdir()) == [vmlinuz.name]
    # Another image under the same name is another entry: the content is the key.
    vmlinuz.write_bytes(HEADER + vmlinux.read_bytes() + b"\0" * 16)
    assert open_vmlinux(vmlinuz, tree, cache).path != opened.path


def test_compressed_image_without_a_source_tree_is_refused(
    images: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, vmlinuz, _ = images
    with pytest.raises(KspliceError) as e:
        open_vmlinux(vmlinuz, None, tmp_path / "cache")
    assert str(vmlinuz) in e.value.message and e.value.hint is not None


@pytest.mark.parametrize("script", ["exit 1\n", "echo not an elf\n", ": produces nothing\n"])
def test_failed_extraction_names_the_image_and_leaves_nothing(
    images: tuple[Path, Path, Path], tmp_path: Path, script: str
) -> None:
    _, vmlinuz, tree = images
    (tree / "scripts" / "extract-vmlinux").write_text(script)
    cache = tmp_path / "cache"
    with pytest.raises(KspliceError) as e:
        open_vmlinux(vmlinuz, tree, cache)
    assert type(e.value) is KspliceError  # the user's input, not a bare command failure
    assert str(vmlinuz) in e.value.message
    assert sorted(p.name for p in vmlinuz.parent.iterdir()) == [vmlinuz.name]
    assert not (cache / "vmlinux").exists() or not list((cache / "vmlinux").iterdir())
