"""Where the cache lives (ksplice_pkg.paths): $KSPLICE_PKG_CACHE, else the XDG cache home."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksplice_pkg.paths import cache_dir


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KSPLICE_PKG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ksplice-pkg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ksplice-pkg"
    monkeypatch.setenv("KSPLICE_PKG_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
