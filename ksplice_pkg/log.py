"""Progress lines and verbose logging, shared by every stage."""

from __future__ import annotations

import logging
import sys
import threading
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
    if threading.current_thread() is threading.main_thread():
        logger.info("    done in %.1f s", time.monotonic() - start)
    else:  # beside another step: its own line would not say which step ended
        logger.info("    done in %.1f s: %s", time.monotonic() - start, what)


class Phases:
    """The phases of a command, each announced and timed: the figures end up in its report."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        logger.info("=== %s", name)
        start = time.monotonic()
        yield
        seconds = time.monotonic() - start
        self.timings.append((name, seconds))
        logger.info("=== %s: %.1f s", name, seconds)

    def add(self, name: str, seconds: float) -> None:
        self.timings.append((name, seconds))
