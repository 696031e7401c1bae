"""The api's draining front on Docker (components/conf/drain_front.py), run by real nginx.

The front is the first of an old api set that `pulumi up` deletes, stopped with SIGQUIT (its
container's stop signal). What that buys is checked here with the dev stack's rendered front
(moved onto loopback with servers.relocate, nothing else changed) before a slow upstream standing
in for the api: the requests in flight, a GET and a POST, finish with their whole answers; a new
connection is refused at once (the edge then tries the next instance, having sent nothing); nginx
exits once those requests are done. The control stops it with SIGTERM (nginx's fast shutdown,
Docker's default signal): the same requests fail, so the signal is what keeps them."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from harness import CONTAINER, delivered, run_program, stack_overrides
from rendering import tool
from servers import LOOPBACK, free_port, port_accepts, relocate, running, serving

from components import api
from components.platforms.docker import FRONT_CONF

# How long the stand-in api takes to answer /slow: long enough to signal nginx mid-request and
# to see it refuse new connections meanwhile.
SLOW_SECONDS = 3.0
GET_BODY = bytes(range(256)) * 1024  # 256 KiB: more than one socket buffer
POST_BODY = os.urandom(128 * 1024)
# "Right after SIGQUIT": nginx's master closes its listeners as soon as it handles the signal.
REFUSED_WITHIN_SECONDS = 1.0
POST_ANSWER = f"{len(POST_BODY)} {hashlib.sha256(POST_BODY).hexdigest()}".encode()


@functools.cache
def rendered_front() -> str:
    d = run_program("dev", overrides=stack_overrides("dev", "docker"))
    return delivered(d, d.named("api-front", CONTAINER))[FRONT_CONF]["content"]


class _SlowApi(BaseHTTPRequestHandler):
    """/fast at once; /slow (GET: GET_BODY; POST: the body's length and digest) after
    SLOW_SECONDS. Each /slow request is counted in ``arrived`` when it reaches the handler."""

    protocol_version = "HTTP/1.1"
    arrived: threading.Semaphore

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        with contextlib.suppress(OSError):  # the control's nginx is gone by then
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.arrived.release()
            time.sleep(SLOW_SECONDS)
            self._answer(GET_BODY)
        else:
            self._answer(b"fast")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.arrived.release()
        time.sleep(SLOW_SECONDS)
        self._answer(f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())


@dataclass
class Outcome:
    status: int | None = None
    body: bytes = b""
    error: str = ""
    done_at: float = 0.0


def _call(port: int, method: str, path: str, body: bytes | None, outcome: Outcome) -> None:
    try:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=SLOW_SECONDS + 20)
        conn.request(method, path, body=body)
        response = conn.getresponse()
        outcome.status, outcome.body = response.status, response.read()
        conn.close()
    except (OSError, http.client.HTTPException) as e:
        outcome.error = f"{type(e).__name__}: {e}"
    outcome.done_at = time.monotonic()


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return False
    except ConnectionRefusedError:
        return True


@dataclass
class Front:
    port: int
    process: subprocess.Popen[bytes]
    arrived: threading.Semaphore
    log: Path


@contextlib.contextmanager
def front(tmp_path: Path) -> Iterator[Front]:
    """The rendered front on a free loopback port, before the slow stand-in api."""
    binary = tool("nginx", "/usr/sbin/nginx")
    arrived = threading.Semaphore(0)

    class Api(_SlowApi):
        pass

    Api.arrived = arrived
    port = free_port()
    with serving(Api) as upstream:
        text = rendered_front()
        conf = relocate(
            text,
            {},
            {
                f"listen {api.PORT};": f"listen {LOOPBACK}:{port};",
                f"server 127.0.0.1:{api.APP_PORT};": f"server {LOOPBACK}:{upstream};",
                " /tmp/": f" {tmp_path}/",
            },
        )
        path = tmp_path / "front.conf"
        path.write_text(conf)
        command = [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(path), "-g", "daemon off;"]
        checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        log = tmp_path / "nginx.log"
        with running(command, ready=port_accepts(port), log=log) as process:
            yield Front(port, process, arrived, log)


def _in_flight(f: Front) -> tuple[Outcome, Outcome, list[threading.Thread]]:
    """A slow GET and a slow POST through the front, both at the stand-in api when this returns."""
    get, post = Outcome(), Outcome()
    threads = [
        threading.Thread(target=_call, args=(f.port, "GET", "/slow", None, get)),
        threading.Thread(target=_call, args=(f.port, "POST", "/slow", POST_BODY, post)),
    ]
    for t in threads:
        t.start()
    for _ in threads:
        assert f.arrived.acquire(timeout=10), "a slow request never reached the stand-in api"
    return get, post, threads


def test_sigquit_finishes_the_requests_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    with front(tmp_path) as f:
        fast = Outcome()
        _call(f.port, "GET", "/fast", None, fast)
        assert (fast.status, fast.body) == (200, b"fast"), fast.error
        get, post, threads = _in_flight(f)
        signalled = time.monotonic()
        os.kill(f.process.pid, signal.SIGQUIT)
        while not _refuses(f.port):
            assert time.monotonic() - signalled < REFUSED_WITHIN_SECONDS, "still accepting after SIGQUIT"
            time.sleep(0.02)
        refused_after = time.monotonic() - signalled
        # Refused while the requests run on, not because nginx is gone.
        assert f.process.poll() is None and not get.done_at and not post.done_at
        for t in threads:
            t.join(timeout=SLOW_SECONDS + 30)
        assert (get.status, get.error, len(get.body)) == (200, "", len(GET_BODY)) and get.body == GET_BODY
        assert (post.status, post.error, post.body) == (200, "", POST_ANSWER)
        assert _refuses(f.port)
        # nginx exits once they are done, by itself.
        f.process.wait(timeout=10)
        exited = time.monotonic()
        assert f.process.returncode == 0, f.log.read_text()[-2000:]
        assert exited >= max(get.done_at, post.done_at)
        assert exited - signalled >= SLOW_SECONDS * 0.8, "it waited for the requests"
        print(f"refused {refused_after:.2f}s after SIGQUIT; exited {exited - signalled:.2f}s after it")


def test_control_sigterm_fails_the_requests_in_flight(tmp_path: Path) -> None:
    # nginx's fast shutdown: what Docker would send without the front's stop signal.
    with front(tmp_path) as f:
        get, post, threads = _in_flight(f)
        signalled = time.monotonic()
        os.kill(f.process.pid, signal.SIGTERM)
        f.process.wait(timeout=10)
        assert time.monotonic() - signalled < SLOW_SECONDS, "nginx did not wait for its requests"
        for t in threads:
            t.join(timeout=SLOW_SECONDS + 30)
        for outcome, whole in ((get, GET_BODY), (post, POST_ANSWER)):
            assert (outcome.status, outcome.body) != (200, whole), outcome.status
            assert outcome.error, outcome.status
        print(f"in flight at SIGTERM: GET {get.error}; POST {post.error}")
