"""Fixtures of the lab tests: the real Debian kernel, fetched once per session into the cache.

The cache ($KSPLICE_PKG_CACHE, else ~/.cache/ksplice-pkg) may be deleted at any time; the first
test to need a piece rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksplice_pkg.compile.kbuild import PreparedTree
from ksplice_pkg.distro.debian import KernelArtifacts, fetch
from ksplice_pkg.elf.vmlinux import Vmlinux
from ksplice_pkg.log import setup_logging
from ksplice_pkg.paths import cache_dir
from ksplice_pkg.target.symbols import SymbolMap
from ksplice_pkg.target.vmlinuz import open_vmlinux
from tests.lab.kernel import prepared_tree
from tests.lab.sample import build_sample_livepatch


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def cache() -> Path:
    setup_logging(0)
    return cache_dir()


@pytest.fixture(scope="session")
def artifacts(cache: Path) -> KernelArtifacts:
    # KSPLICE_PKG_RELEASE pins a release; by default Debian's current kernel, as users get it.
    return fetch(cache, os.environ.get("KSPLICE_PKG_RELEASE") or None)


@pytest.fixture(scope="session")
def tree(artifacts: KernelArtifacts) -> PreparedTree:
    return prepared_tree(artifacts)


@pytest.fixture(scope="session")
def sample_ko(tree: PreparedTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_livepatch(tree, tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def kallsyms(artifacts: KernelArtifacts) -> Path:
    """The target's real symbol map: /proc/kallsyms of the kernel booted in the lab."""
    if not artifacts.kallsyms.is_file():
        from ksplice_pkg.vm.capture import capture_kallsyms

        capture_kallsyms(artifacts)
    return artifacts.kallsyms


@pytest.fixture(scope="session")
def symbols(kallsyms: Path) -> SymbolMap:
    return SymbolMap.load(kallsyms)


@pytest.fixture(scope="session")
def vmlinux(artifacts: KernelArtifacts, cache: Path) -> Vmlinux:
    """The ELF vmlinux extracted from Debian's vmlinuz."""
    return open_vmlinux(artifacts.vmlinuz, artifacts.source_tree, cache)
