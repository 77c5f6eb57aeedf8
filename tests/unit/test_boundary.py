"""The error boundary's messages for errors from the file system."""

from __future__ import annotations

import errno
import os
import shutil

import click
from click.testing import CliRunner

from ksplice_pkg.boundary import BoundaryCommand


def failing(error: OSError) -> click.Command:
    @click.command(cls=BoundaryCommand)
    def command() -> None:
        raise error

    return command


def test_a_full_file_system_says_so_and_what_to_do() -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/x/guard.json")
    result = CliRunner().invoke(failing(error))
    assert result.exit_code == 1
    assert "cannot access /var/lib/x/guard.json: No space left on device" in result.output
    assert "free space" in result.output


def test_a_failed_copytree_names_the_first_file_not_a_list() -> None:
    why = "[Errno 28] No space left on device: '/usr/lib/u/.a.x/a.ko'"
    result = CliRunner().invoke(failing(shutil.Error([("/tmp/a.ko", "/usr/lib/u/.a.x/a.ko", why)])))
    assert result.exit_code == 1
    assert "cannot write /usr/lib/u/.a.x/a.ko: No space left on device" in result.output
    assert "[(" not in result.output
