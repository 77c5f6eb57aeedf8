"""Progress lines and verbose logging, shared by every stage."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("ksplice_pkg")


def setup_logging(verbosity: int) -> None:
    """0: progress lines; 1 (-v): commands and decisions; 2 (-vv): everything."""
    level = logging.INFO if verbosity <= 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


@contextmanager
def step(what: str) -> Iterator[None]:
    """Print a progress line for a long step, then how long it took."""
    logger.info("==> %s", what)
    start = time.monotonic()
    yield
    logger.info("    done in %.1f s", time.monotonic() - start)
