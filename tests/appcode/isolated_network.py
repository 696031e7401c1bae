"""A network namespace of its own for Chromium, with the edge's ports forwarded into it.

Why: Chromium watches the machine's interfaces (netlink) and aborts every in-flight load and
socket whenever one gains or loses an address (``ERR_NETWORK_CHANGED``, and a request caught on
a closed HTTP/2 session fails ``ERR_SOCKET_NOT_CONNECTED``). The real-daemon tier runs beside
this suite and adds and removes Docker bridges all the time, so pages failed to render at random
(CI, stops 20 and 21). Retrying one error name only moved the failure to another. In a namespace
whose only interface is its own loopback, Chromium sees no change at all.

The namespace is created with iproute2 (``ip netns add``, as root: CI runs as root). Its
loopback ``127.0.0.1:<port>`` is forwarded to the host's ``127.0.0.1:<port>``, so URLs, the
Host header and SNI stay what they were, and the edge sees a loopback client as before. The
forwarder is a few threads in the test process: the listening socket is made by a thread that
has joined the namespace (setns(2) moves only the calling thread; the socket keeps its
namespace), connections upstream by threads that have not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from servers import LOOPBACK

CLONE_NEWNET = 0x40000000  # <sched.h>
CHUNK = 65536
T = TypeVar("T")


@dataclass(frozen=True)
class IsolatedNetwork:
    name: str

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def wrapper(self, binary: str, into: Path) -> str:
        """An executable that runs ``binary`` with its arguments inside the namespace (for
        Playwright's ``executable_path``; it talks to Chromium over a pipe, not the network)."""
        script = into / f"{Path(binary).name}-in-{self.name}"
        script.write_text(f'#!/bin/sh\nexec nsenter --net={self.path} {binary} "$@"\n')
        script.chmod(0o755)
        return str(script)

    def inside(self, action: Callable[[], T]) -> T:
        """``action()`` run by a thread that has joined the namespace (and then ends)."""
        box: dict[str, object] = {}

        def run() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if _libc().setns(fd, CLONE_NEWNET) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, f"setns({self.path}): {os.strerror(errno)}")
                finally:
                    os.close(fd)
                box["value"] = action()
            except BaseException as error:  # re-raised in the caller's thread
                box["error"] = error

        thread = threading.Thread(target=run, name=f"enter-{self.name}")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    @contextlib.contextmanager
    def forwarding(self, port: int) -> Iterator[None]:
        """The namespace's ``127.0.0.1:port`` forwarded to the host's ``127.0.0.1:port``."""
        listener = self.inside(lambda: socket.create_server((LOOPBACK, port)))
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except OSError:
                    return  # closed
                threading.Thread(target=_join, args=(client, port), daemon=True).start()

        acceptor = threading.Thread(target=accept, name=f"forward-{port}", daemon=True)
        acceptor.start()
        try:
            yield
        finally:
            stop.set()
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            acceptor.join(timeout=5)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _join(client: socket.socket, port: int) -> None:
    """One connection: bytes both ways until each side has closed its half."""
    try:
        upstream = socket.create_connection((LOOPBACK, port))
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def isolated_network(name: str) -> Iterator[IsolatedNetwork]:
    """A new network namespace whose only interface is its loopback, up; removed afterwards.
    Needs root (CAP_SYS_ADMIN) and iproute2."""
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, text=True)
        yield IsolatedNetwork(name)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
