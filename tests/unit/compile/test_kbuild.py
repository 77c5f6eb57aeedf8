"""kbuild's flags that make a build's output independent of where the cache is."""

from __future__ import annotations

from pathlib import Path

from ksplice_pkg.compile.kbuild import DEBUG_SOURCE_DIR, DEBUG_WORK_DIR, debug_prefix_flags
from ksplice_pkg.run import run


def _compiled(cache: Path) -> bytes:
    """An object compiled with debug info as kbuild does it for an update: the source in the
    tree, the compiler run in the object dir (the compile directory DWARF records)."""
    source, objdir = cache / "sources" / "linux", cache / "work" / "linux-abc" / "pre"
    (source / "fs").mkdir(parents=True)
    objdir.mkdir(parents=True)
    (source / "fs" / "a.c").write_text("int a(void)\n{\n\treturn 42;\n}\n")
    flags = debug_prefix_flags(source, objdir).split()
    run(["gcc", "-g", "-O2", *flags, "-c", source / "fs" / "a.c", "-o", "a.o"], cwd=objdir)
    return (objdir / "a.o").read_bytes()


def test_objects_do_not_depend_on_the_cache_directory(tmp_path: Path) -> None:
    first, second = _compiled(tmp_path / "one"), _compiled(tmp_path / "elsewhere" / "two")
    assert first == second
    assert str(tmp_path).encode() not in first
    assert f"{DEBUG_SOURCE_DIR}/fs/a.c".encode() in first
    assert DEBUG_WORK_DIR.encode() in first
