"""Real servers on loopback for the generated configuration: start, wait, always stop."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_accepts(port: int) -> Callable[[], bool]:
    """Ready when a TCP connection to ``port`` succeeds: enough for a server whose clients only
    ever use that port and that serves from the moment it listens (nginx)."""

    def probe() -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def _wait_until_ready(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        # Ready and still ours: a server that lost its port to another process answers `ready`
        # through that process, then exits with a bind error.
        if ready() and process.poll() is None:
            return
        time.sleep(0.1)
    raise TimeoutError(f"server not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def as_user(user: str | None, command: list[str]) -> list[str]:
    """Root cannot run some servers (Postgres): run them as their own system user."""
    if user and os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *command]
    return command


def give_to(user: str | None, *paths: Path) -> None:
    if user and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for path in paths:
            for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
                os.chown(p, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in its own process group, wait until ``ready()``, stop the group on exit.

    ``ready`` must probe what the tests' clients use (the same socket, port and protocol): a
    listening TCP port says nothing about a Unix socket created later, or about a server still
    starting up behind it. The timeout is generous because CI machines are loaded; a ready
    server ends the wait at once.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        _wait_until_ready(ready, process, log, timeout)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def deployed_copy(workload_dir: Path, into: Path) -> dict[str, Path]:
    """Copy a workload's rendered files into ``into``; map each deployed path to its copy."""
    paths = {}
    for source in workload_dir.rglob("*"):
        if source.is_file():
            deployed = "/" + str(source.relative_to(workload_dir))
            target = into / source.relative_to(workload_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            paths[deployed] = target
    return paths


def relocate(text: str, paths: dict[str, Path], extra: dict[str, str] | None = None) -> str:
    """The deployed text with each deployed file path pointed at its copy, plus ``extra`` edits.

    These are the only changes a test makes to a generated file: where files live on this
    machine and which loopback port a server binds; everything else runs as generated.
    """
    mapping = {deployed: str(copy) for deployed, copy in paths.items()} | (extra or {})
    for old in extra or {}:
        assert old in text, f"expected {old!r} in the generated file"
    # One pass: a replacement is never itself rewritten by a later one.
    pattern = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
    return re.sub(pattern, lambda m: mapping[m.group(0)], text)
