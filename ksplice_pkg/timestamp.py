"""The time stamped in an update and its packages: SOURCE_DATE_EPOCH when it is set (the
reproducible-builds convention: the same inputs and epoch give the same bytes), else now.

An update's `created` stamp orders the updates of a kernel (package versions, which updates a
cumulative one supersedes), so a build environment that sets SOURCE_DATE_EPOCH must move it
between updates, as dpkg-buildpackage does from the changelog's date.
"""

from __future__ import annotations

import calendar
import os
import time

from ksplice_pkg.errors import KspliceError
from ksplice_pkg.manifest import CREATED_FORMAT


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit():
        raise KspliceError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
            hint="set it to a Unix time (e.g. `date +%s`) or unset it",
        )
    return int(value)


def build_time() -> int:
    """The epoch of a new update: SOURCE_DATE_EPOCH, or the current time."""
    epoch = source_date_epoch()
    return int(time.time()) if epoch is None else epoch


def format_created(epoch: int) -> str:
    return time.strftime(CREATED_FORMAT, time.gmtime(epoch))


def parse_created(created: str) -> int:
    return calendar.timegm(time.strptime(created, CREATED_FORMAT))
