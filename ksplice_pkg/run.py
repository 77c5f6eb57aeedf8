"""The one way ksplice-pkg runs external commands.

A clean, predictable environment (C.UTF-8 locale, stdin closed) so that tool output parses the same
everywhere, the command line logged with -v, and a typed error naming what failed and why.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence

from ksplice_pkg.errors import CommandError, CommandTimeoutError
from ksplice_pkg.log import logger

StrPath = str | os.PathLike[str]

# Variables passed through from the caller's environment; everything else is dropped.
_KEPT_ENV = ("PATH", "HOME", "TMPDIR", "http_proxy", "https_proxy", "no_proxy")
_TAIL_LINES = 25


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-_TAIL_LINES:]
    return "\n".join("    " + line for line in lines)


def run(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run cmd, capturing stdout and stderr; raise CommandError on failure when check is set."""
    argv = [os.fspath(a) for a in cmd]
    where = f" (in {cwd})" if cwd else ""
    logger.debug("$ %s%s", shlex.join(argv), where)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=clean_env(env),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise CommandError(
            f"command not found: {argv[0]}",
            hint="install the package that provides it (the README's set-up command does)",
        ) from e
    except subprocess.TimeoutExpired as e:
        out = (e.stderr or b"") + (e.stdout or b"")
        raise CommandTimeoutError(
            f"`{shlex.join(argv)}` did not finish within {timeout} s"
            + (f"; its output ended with:\n{_tail(out.decode(errors='replace'))}" if out else "")
        ) from e
    if check and proc.returncode != 0:
        output = proc.stderr.decode(errors="replace") or proc.stdout.decode(errors="replace")
        message = f"`{shlex.join(argv)}`{where} {_describe_status(proc.returncode)}"
        if output.strip():
            message += f"; its output ended with:\n{_tail(output)}"
        raise CommandError(message)
    return proc


def run_text(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run cmd and return its stdout as text."""
    return run(cmd, cwd=cwd, env=env, timeout=timeout).stdout.decode()
