"""Hostile and mismatched input to `create`, one case per class, without a kernel.

Every case runs the real command line against a small stand-in tree and target directory, and
checks three things: the exit status (by error type, see errors.py), that the message names the
offending input, and that nothing was written outside the cache and -o. Cases that need the
real kernel (files of another build, the next valid run loading) are in tests/lab/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ksplice_pkg.cli import main
from ksplice_pkg.errors import KspliceError, RefusedError
from ksplice_pkg.source.patch import file_changes, read_patch_file
from ksplice_pkg.source.tree import make_post_tree
from tests.unit.tools import bzimage_header

C_FILE = "int a(void)\n{\n\treturn 1;\n}\n"
GOOD_PATCH = (
    "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,4 +1,4 @@\n"
    " int a(void)\n {\n-\treturn 1;\n+\treturn 2;\n }\n"
)
RELEASE = "--kernel-release=6.1.0-1-amd64"
USAGE_STATUS = 1  # KspliceError.exit_code: a wrong option or input file


@dataclass(frozen=True)
class Bench:
    """A stand-in source tree, target directory, cache and output dir, all under one root."""

    root: Path
    tree: Path
    target: Path
    cache: Path
    out: Path

    def files(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if p.is_file()}

    def create(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            main,
            [
                "create",
                f"--config={self.target}",
                f"--cache-dir={self.cache}",
                f"-o{self.out}",
                *args,
                str(self.tree),
            ],
            env=env,
        )

    def written_outside(self, before: set[Path]) -> set[Path]:
        """Files that appeared outside the cache and -o since `before`."""
        return {
            p
            for p in self.files() - before
            if not p.is_relative_to(self.cache) and not p.is_relative_to(self.out)
        }


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    tree = tmp_path / "linux"
    (tree / "fs").mkdir(parents=True)
    (tree / "fs" / "a.c").write_text(C_FILE)
    (tree / "Kconfig").write_text("")
    (tree / "Makefile").write_text("all:\n")
    target = tmp_path / "target"
    target.mkdir()
    (target / "kallsyms").write_text(
        "ffffffff81000000 T _text\nffffffff81000100 T a\nffffffff82000000 r __ksymtab_a\n"
    )
    (target / ".config").write_text("CONFIG_LIVEPATCH=y\nCONFIG_SMP=y\n")
    (target / "Module.symvers").write_text("0x12345678\ta\tvmlinux\tEXPORT_SYMBOL\t\n")
    (tmp_path / "fix.patch").write_text(GOOD_PATCH)
    return Bench(tmp_path, tree, target, tmp_path / "cache", tmp_path / "out")


def refused(result: Result, *names: str, status: int = USAGE_STATUS) -> str:
    """The error output of a refused run, checked for its status and the names it must say."""
    assert result.exit_code == status, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    for name in names:
        assert name in result.output, (name, result.output)
    return result.output


def fake_bzimage(path: Path, version: bytes) -> Path:
    path.write_bytes(bzimage_header(version))
    return path


# --- Shell and make injection ----------------------------------------------------------------


@pytest.mark.parametrize("release", ["6.1.0-1-amd64 $(touch PWNED)", "`id`", "a;b", "x y", ""])
def test_kernel_release_that_is_not_one_is_refused(bench: Bench, release: str) -> None:
    before = bench.files()
    output = refused(
        bench.create(f"--patch={bench.root / 'fix.patch'}", f"--kernel-release={release}")
    )
    assert "kernel release" in output
    assert bench.written_outside(before) == set()
    assert not list(bench.root.rglob("PWNED"))


def test_release_from_a_hostile_vmlinuz_header_is_refused(bench: Bench) -> None:
    image = fake_bzimage(bench.target / "vmlinuz", b"1.0$(touch${IFS}PWNED) #1 SMP\0")
    before = bench.files()
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}"))
    assert str(image) in output and "not a kernel release" in output
    assert bench.written_outside(before) == set()
    assert not list(bench.root.rglob("PWNED"))


def test_release_that_differs_from_the_vmlinuz_names_both(bench: Bench) -> None:
    fake_bzimage(bench.target / "vmlinuz", b"6.1.0-56-cloud-amd64 (x) #1 SMP\0")
    output = refused(
        bench.create(f"--patch={bench.root / 'fix.patch'}", "--kernel-release=6.1.0-55-amd64")
    )
    assert "6.1.0-56-cloud-amd64" in output and "6.1.0-55-amd64" in output


def test_git_commit_cannot_become_an_option(bench: Bench) -> None:
    subprocess.run(["git", "init", "-q", str(bench.tree)], check=True)
    victim = bench.root / "written-by-git"
    before = bench.files()
    output = refused(bench.create(f"--git=--output={victim}", RELEASE))
    assert "--output=" in output
    assert not victim.exists()
    assert bench.written_outside(before) - {p for p in bench.files() if ".git" in p.parts} == set()


@pytest.mark.parametrize(
    "path",
    ["-j1000", "fs/a=b.c", "../outside.c", "fs/../../outside.c", "/etc/passwd", "fs/$(id).c"],
)
def test_patch_paths_that_are_not_plain_tree_paths_are_refused(path: str) -> None:
    patch = f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x\n+y\n"
    with pytest.raises(KspliceError) as e:
        file_changes(patch.encode(), 1)
    assert path.lstrip("/") in e.value.message or path in e.value.message


@pytest.mark.parametrize("ext", ["*", "?", "[ab]", "/x", "..", ""])
def test_diffext_that_is_not_an_extension_is_refused(bench: Bench, ext: str) -> None:
    before = bench.files()
    output = refused(bench.create(f"--diffext={ext}", RELEASE))
    assert "--diffext" in output
    assert bench.written_outside(before) == set()


# --- Options and files that are wrong on their own -------------------------------------------


@pytest.mark.parametrize(
    "description", ["two\nlines", "tab\there", "bell\a", "\udce9 not utf-8", "   "]
)
def test_description_must_be_one_printable_line(bench: Bench, description: str) -> None:
    output = refused(
        bench.create(
            f"--patch={bench.root / 'fix.patch'}",
            RELEASE,
            f"--description={description}",
        )
    )
    assert "--description" in output


@pytest.mark.parametrize("jobs", ["-1", "0"])
def test_jobs_must_be_positive(bench: Bench, jobs: str) -> None:
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE, "-j", jobs))
    assert f"-j {jobs}" in output


def test_binary_module_symvers_is_refused(bench: Bench) -> None:
    (bench.target / "Module.symvers").write_bytes(bytes(range(256)) * 40)
    before = bench.files()
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE))
    assert "Module.symvers" in output and "not text" in output
    assert bench.written_outside(before) == set()


def test_binary_config_is_refused(bench: Bench) -> None:
    (bench.target / ".config").write_bytes(b"\xff\xfe" * 100)
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE))
    assert ".config" in output


def test_config_without_livepatch_is_refused(bench: Bench) -> None:
    (bench.target / ".config").write_text("CONFIG_SMP=y\n# CONFIG_LIVEPATCH is not set\n")
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE))
    assert "CONFIG_LIVEPATCH" in output


def test_symvers_and_symbol_map_of_different_kernels_are_refused(bench: Bench) -> None:
    (bench.target / "Module.symvers").write_text("0x1\tother_export\tvmlinux\tEXPORT_SYMBOL\t\n")
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE))
    assert "other_export" in output and "different kernels" in output


def test_fetch_target_without_kallsyms_says_to_capture_it(bench: Bench) -> None:
    (bench.target / "kallsyms").unlink()
    (bench.target / "kernel.release").write_text("6.1.0-1-amd64\n")
    output = refused(bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE))
    assert "--kallsyms" in output


def test_unwritable_output_is_refused_before_building(bench: Bench) -> None:
    blocker = bench.root / "blocker"
    blocker.write_text("a file, where -o wants a directory above it")
    output = refused(
        bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE, f"-o{blocker / 'out'}")
    )
    assert str(blocker / "out") in output and "not writable" in output
    # The check came first: no work dir was prepared.
    assert not (bench.cache / "work").exists() or not any((bench.cache / "work").rglob("pre"))


def test_unwritable_cache_is_refused_before_building(bench: Bench) -> None:
    blocker = bench.root / "blocker"
    blocker.write_text("a file, where the cache wants a directory above it")
    output = refused(
        bench.create(f"--patch={bench.root / 'fix.patch'}", RELEASE, f"--cache-dir={blocker / 'c'}")
    )
    assert str(blocker / "c") in output and "not writable" in output


# --- Patches --------------------------------------------------------------------------------


def test_non_utf8_patch_keeps_its_bytes(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    (tree / "fs").mkdir(parents=True)
    (tree / "fs" / "a.c").write_bytes(b"/* Fran\xe7ois */\nint a(void)\n{\n\treturn 1;\n}\n")
    patch_file = tmp_path / "latin1.patch"
    patch_file.write_bytes(
        b"From: Fran\xe7ois <f@example.org>\nSubject: fix a\n\n"
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,5 +1,5 @@\n /* Fran\xe7ois */\n int a(void)\n {\n"
        b"-\treturn 1;\n+\treturn 2; /* Andr\xe9 */\n }\n"
    )
    post = make_post_tree(tree, tmp_path / "post", read_patch_file(patch_file), "-p1")
    assert (post.post / "fs" / "a.c").read_bytes() == (
        b"/* Fran\xe7ois */\nint a(void)\n{\n\treturn 2; /* Andr\xe9 */\n}\n"
    )


@pytest.mark.parametrize(
    ("header", "verb"),
    [
        ("--- /dev/null\n+++ b/fs/new.c\n@@ -0,0 +1 @@\n+int n;\n", "adds"),
        (
            "--- a/fs/a.c\n+++ /dev/null\n@@ -1,4 +0,0 @@\n-int a(void)\n-{\n-\treturn 1;\n-}\n",
            "deletes",
        ),
    ],
)
def test_patch_that_adds_or_deletes_a_c_file_is_refused(
    tmp_path: Path, header: str, verb: str
) -> None:
    tree = tmp_path / "src"
    (tree / "fs").mkdir(parents=True)
    (tree / "fs" / "a.c").write_text(C_FILE)
    with pytest.raises(RefusedError) as e:
        make_post_tree(tree, tmp_path / "post", header.encode(), "-p1")
    assert verb in e.value.message and ".c" in e.value.message
    assert not (tmp_path / "post").exists()


# --- Signals: nothing the build started outlives it ------------------------------------------


def _slow_bench(bench: Bench, marker: str) -> None:
    """A tree whose kbuild `olddefconfig` never ends: create is stuck preparing it."""
    (bench.tree / "Makefile").write_text(
        f"olddefconfig:\n\tsh -c 'sleep 300; : {marker}' & sleep 300 # {marker}\n"
    )


def _still_running(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_build_it_started(bench: Bench, sig: signal.Signals, status: int) -> None:
    marker = f"ksplice-signal-test-{os.getpid()}-{sig.name}"
    _slow_bench(bench, marker)
    cmd = [
        sys.executable,
        "-m",
        "ksplice_pkg",
        "create",
        f"--config={bench.target}",
        f"--cache-dir={bench.cache}",
        f"-o{bench.out}",
        f"--patch={bench.root / 'fix.patch'}",
        RELEASE,
        str(bench.tree),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _still_running(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _still_running(marker), "the stand-in build never started"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert _still_running(marker) == []


@pytest.mark.parametrize("name", ["linux $(touch PWNED)", "linux;id", "linux`id`", "a=b"])
def test_paths_that_make_would_interpret_are_refused(tmp_path: Path, name: str) -> None:
    bench = Bench(
        tmp_path, tmp_path / name, tmp_path / "target", tmp_path / "cache", tmp_path / "out"
    )
    (bench.tree / "fs").mkdir(parents=True)
    (bench.tree / "fs" / "a.c").write_text(C_FILE)
    (bench.tree / "Makefile").write_text("olddefconfig:\n\ttouch PWNED-BY-MAKE\n")
    (bench.tree / "Kconfig").write_text("")
    bench.target.mkdir()
    (tmp_path / "fix.patch").write_text(GOOD_PATCH)
    before = bench.files()
    output = refused(bench.create(f"--patch={tmp_path / 'fix.patch'}", RELEASE))
    assert "make would interpret" in output
    assert bench.written_outside(before) == set()
    assert not list(tmp_path.rglob("PWNED*"))
