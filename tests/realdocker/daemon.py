"""A dockerd of the tier's own: its own data root, exec root, pid file and socket.

Started for a test session and stopped by its pid. A second run first stops what a crashed
run left (the pid file says which process), then starts on an empty data root: every run
deploys from scratch, and only the stand-in images come back, from their cache (images.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker

# The storage driver: dockerd's own choice unless AIXSSS_TEST_DOCKER_STORAGE names one. dockerd
# tries its drivers in priority order (overlay2 before vfs, daemon/graphdriver/driver_linux.go
# `priority`) and takes the first this kernel and backing filesystem support. vfs copies a whole
# image per layer and per container: a prod deploy then needs tens of GB and minutes of copying,
# which filled a CI machine's disk; overlay2 shares the image's layers.
STORAGE_ENV = "AIXSSS_TEST_DOCKER_STORAGE"

# Subnets of this daemon's networks: away from Docker's default 172.17-31/16 pools, so a daemon
# the machine already runs does not collide with ours on routes.
ADDRESS_POOL = "base=10.213.0.0/16,size=24"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _stop(pidfile: Path, timeout: float = 30) -> None:
    """SIGTERM the daemon named by ``pidfile`` (it stops its containers), SIGKILL if it lingers."""
    if not pidfile.exists():
        return
    text = pidfile.read_text().strip()
    pid = int(text) if text.isdigit() else 0
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _wait_ready(socket: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if socket.exists():
            with contextlib.suppress(Exception):
                if docker.APIClient(base_url=f"unix://{socket}", timeout=5).ping():
                    return
        time.sleep(0.3)
    raise RuntimeError(f"dockerd did not answer on {socket} within {timeout}s:\n{log.read_text()[-3000:]}")


def _unmount_under(root: Path) -> None:
    """Unmount what a crashed daemon left mounted under ``root`` (overlay2's merged layers, its
    exec root's shm): rmtree cannot remove a mount point."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def running(root: Path, dockerd: str = "dockerd") -> Iterator[str]:
    """A daemon under ``root`` for the duration of the block; yields its DOCKER_HOST."""
    pidfile, socket, log = root / "dockerd.pid", root / "docker.sock", root / "dockerd.log"
    _stop(pidfile)
    _unmount_under(root)
    # A fresh data root each run: nothing deployed survives, so every run starts from zero.
    for sub in ("data", "exec"):
        shutil.rmtree(root / sub, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    command = [
        dockerd,
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(pidfile),
        "--host", f"unix://{socket}",
        # No default bridge: every network is one the stack declares.
        "--bridge", "none",
        "--default-address-pool", ADDRESS_POOL,
    ]  # fmt: skip
    if os.environ.get(STORAGE_ENV):
        command += ["--storage-driver", os.environ[STORAGE_ENV]]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(socket, process, log)
        yield f"unix://{socket}"
    finally:
        _stop(pidfile)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
