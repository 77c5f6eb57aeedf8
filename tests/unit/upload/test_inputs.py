"""The inputs of `--from`: the two sources unpack side by side, and a bad old source is the
error reported, with nothing half-written in the cache."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from click.testing import CliRunner

from ksplice_pkg.cli import main

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = {n}\nEXTRAVERSION =\n"


def test_a_damaged_old_source_is_the_error_while_the_new_one_unpacks(tmp_path: Path) -> None:
    tree = tmp_path / "linux-6.1.2"
    tree.mkdir()
    (tree / "Makefile").write_text(MAKEFILE.format(n=2))
    new = tmp_path / "linux-6.1.2.tar.xz"
    with tarfile.open(new, "w:xz") as tar:
        tar.add(tree, arcname=tree.name)
    old = tmp_path / "linux-6.1.1.tar.xz"
    old.write_bytes(os.urandom(4096))
    config = tmp_path / "config"
    config.mkdir()
    (config / ".config").write_text("CONFIG_X=y\n")
    (config / "System.map").write_text("ffffffff81000000 T _stext\n")
    (config / "Module.symvers").write_text("")
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, [
        "create", str(new), f"--from={old}", f"--config={config}",
        "--kernel-release=6.1.0-1-amd64", f"--cache-dir={cache}",
    ])  # fmt: skip
    assert result.exit_code not in (0, 1), result.output
    assert f"{old}: not a readable tarball" in result.output, result.output
    assert "Traceback" not in result.output
    # Each source's entry is whole or absent: no unpacking directory is left behind.
    entries = [p.name for p in (cache / "sources").iterdir() if not p.name.endswith(".lock")]
    for name in entries:
        assert len(name) == 64, entries  # a finished entry, named by the file's hash
