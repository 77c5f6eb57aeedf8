"""The one way ksplice-pkg runs external commands.

A clean, predictable environment (C.UTF-8 locale, stdin closed) so that tool output parses the same
everywhere, the command line logged with -v, and a typed error naming what failed and why.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

from ksplice_pkg.errors import CommandError, CommandTimeoutError, InternalError
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


# Process groups of the commands running now. Each command starts a session of its own, so
# that stopping ksplice-pkg (^C, SIGTERM) can stop everything a build started (make's gcc and
# objtool children too) before the work dir's lock is released.
_live: set[int] = set()
_live_lock = threading.Lock()
_GRACE_SECONDS = 5


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL if it is still there after a grace."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def terminate_children() -> None:
    """Stop every command still running, from any thread: each thread's run() then returns
    (the command killed by a signal) and the caller can unwind."""
    with _live_lock:
        pids = list(_live)
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)


def _start(
    argv: list[str],
    *,
    cwd: StrPath | None,
    env: Mapping[str, str] | None,
    stdin: int | IO[bytes],
    stderr: int | IO[bytes],
) -> subprocess.Popen[bytes]:
    """Start argv in a session of its own, its stdout a pipe, registered in _live (which the
    caller leaves once it is done with it)."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=clean_env(env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise CommandError(
            f"command not found: {argv[0]}",
            hint="install the package that provides it (the README's set-up command does)",
        ) from e
    with _live_lock:
        _live.add(proc.pid)
    return proc


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
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    proc = _start(argv, cwd=cwd, env=env, stdin=stdin, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        _stop_group(proc)
        out = (e.stderr or b"") + (e.stdout or b"")
        raise CommandTimeoutError(
            f"`{shlex.join(argv)}` did not finish within {timeout} s"
            + (f"; its output ended with:\n{_tail(out.decode(errors='replace'))}" if out else "")
        ) from e
    except BaseException:
        # ^C, SIGTERM (see boundary.py) or an error in this process: nothing it started outlives
        # it.
        _stop_group(proc)
        raise
    finally:
        with _live_lock:
            _live.discard(proc.pid)
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        output = stderr.decode(errors="replace") or stdout.decode(errors="replace")
        raise _failure(argv, where, proc.returncode, output)
    return result


def _failure(argv: list[str], where: str, returncode: int, output: str) -> CommandError:
    message = f"`{shlex.join(argv)}`{where} {_describe_status(returncode)}"
    if output.strip():
        message += f"; its output ended with:\n{_tail(output)}"
    return CommandError(message)


def run_text(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run cmd and return its stdout as text."""
    return run(cmd, cwd=cwd, env=env, timeout=timeout).stdout.decode()


@contextlib.contextmanager
def piped(
    cmd: Sequence[StrPath], *, stdin: IO[bytes] | None = None, cwd: StrPath | None = None
) -> Iterator[IO[bytes]]:
    """Run cmd with its stdout as a stream read while it runs: for output too big to hold in
    memory (a decompressed package). Raise CommandError once it is read, if cmd failed; and
    when reading fails because cmd did, the CommandError rather than the reader's error."""
    argv = [os.fspath(a) for a in cmd]
    where = f" (in {cwd})" if cwd else ""
    logger.debug("$ %s%s", shlex.join(argv), where)
    with tempfile.TemporaryFile() as stderr:
        proc = _start(
            argv,
            cwd=cwd,
            env=None,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stderr=stderr,
        )
        try:
            if proc.stdout is None:  # stdout=PIPE always gives one
                raise InternalError(f"no stdout pipe for {argv[0]}")
            with proc.stdout:
                try:
                    yield proc.stdout
                except BaseException as e:
                    _stop_group(proc)
                    if proc.returncode > 0:  # it failed on its own before it was stopped
                        raise _failure(argv, where, proc.returncode, _stderr(stderr)) from e
                    raise
            if proc.wait() != 0:
                raise _failure(argv, where, proc.returncode, _stderr(stderr))
        finally:
            with _live_lock:
                _live.discard(proc.pid)


def _stderr(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    return stderr.read().decode(errors="replace")
