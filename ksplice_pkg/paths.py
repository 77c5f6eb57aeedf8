"""Where ksplice-pkg keeps what it downloads and builds.

Everything under the cache directory can be deleted at any time: it is rebuilt on demand.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if env := os.environ.get("KSPLICE_PKG_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ksplice-pkg"
