"""The cpio writer, checked against GNU cpio's reading of what it wrote."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from ksplice_pkg.vm.initramfs import Initramfs


def test_cpio_lists_and_extracts_what_was_written(tmp_path: Path) -> None:
    ramfs = Initramfs()
    ramfs.add_file("lab/files/a.txt", b"hello\n")
    ramfs.add_file("init", b"#!/bin/sh\n", 0o755)
    ramfs.add_file("bin/sh", b"#!busybox\n", 0o755)
    ramfs.add_file("odd", b"x" * 5)  # forces padding after the data
    raw = gzip.decompress(ramfs.to_bytes())
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=raw, capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == [
        "lab",
        "lab/files",
        "lab/files/a.txt",
        "init",
        "bin",
        "bin/sh",
        "odd",
    ]
    subprocess.run(
        ["cpio", "-id", "--quiet"], input=raw, cwd=tmp_path, capture_output=True, check=True
    )
    assert (tmp_path / "lab/files/a.txt").read_bytes() == b"hello\n"
    assert (tmp_path / "init").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin/sh").read_bytes() == b"#!busybox\n"
    assert (tmp_path / "odd").read_bytes() == b"xxxxx"


def test_archive_is_reproducible() -> None:
    def make() -> bytes:
        r = Initramfs()
        r.add_file("a/b", b"1")
        return r.to_bytes()

    assert make() == make()
