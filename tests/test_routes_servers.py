"""The edge's routes on Docker (platforms/docker_routes.py, spec.Routes), run by real nginx.

The dev stack's rendered edge (relocated onto loopback with servers.edge_conf, its route files in
a directory of the test's) runs under the platform's watcher, in a PID namespace of its own as in
its container (the reload waits on its workers' titles in /proc). The route containers' script
writes the files. What is checked:
- the edge serves what the routes name, and says so (`loaded`) only once it does;
- a new instance announced before it serves is not taken until it answers its check;
- then, with a slow call in flight on the old instance, the edge says it took the new one within
  the watch interval plus its two reloads, every later call goes to the new one, and the slow
  call still finishes on the old instance after the first reload (nginx's old worker kept it);
- the control: routes nginx refuses (an invalid port) are never said to be loaded, and the edge
  keeps serving the set it had.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from rendering import Rendered, rendered, tool
from servers import LOOPBACK, EdgePorts, edge_conf, free_port, nginx_version, serving

from components import load_balancer
from components.conf import nginx
from components.platforms import docker_routes
from components.spec import Routes

SLOW_SECONDS = 3.0
# The watcher looks every WATCH_INTERVAL_SECONDS, then reloads onto old and new, and after
# RESOLVE_SECONDS onto the new alone, each time waiting for the old workers.
SWITCH_WITHIN_SECONDS = docker_routes.WATCH_INTERVAL_SECONDS + docker_routes.RESOLVE_SECONDS + 4
# How long a switch may take on a loaded CI machine (the suite runs beside the Docker tier): the
# waits for what must happen end as soon as it does; the figure printed is the time it took.
TAKEN_WITHIN_SECONDS = 30


def _instance(name: str) -> type[BaseHTTPRequestHandler]:
    class Instance(BaseHTTPRequestHandler):
        """An api instance: its name in every answer; /api/slow after SLOW_SECONDS."""

        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/api/slow"):
                time.sleep(SLOW_SECONDS)
            body = json.dumps({"instance": name}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Instance


@dataclass
class Edge:
    https_port: int
    domain: str
    context: ssl.SSLContext
    routes: Routes
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPSConnection(LOOPBACK, self.https_port, context=self.context, timeout=30)
        sock = ssl.SSLContext.wrap_socket(
            self.context,
            __import__("socket").create_connection((LOOPBACK, self.https_port), 10),
            server_hostname=self.domain,
        )
        connection.sock = sock
        try:
            connection.request("GET", path, headers={"Host": self.domain})
            response = connection.getresponse()
            body = response.read().decode()
            return response.status, (json.loads(body)["instance"] if response.status == 200 else body)
        finally:
            connection.close()

    def loaded(self, mark: str) -> bool:
        """``mark`` is among what the watcher recorded as live."""
        loaded = Path(self.routes.directory) / docker_routes.LOADED
        return loaded.exists() and mark in loaded.read_text().splitlines()

    def announced_is_loaded(self, upstream: str) -> bool:
        """The route container's own health check: what it wrote is loaded."""
        return subprocess.run(docker_routes.loaded_check(self.routes, upstream)).returncode == 0


@contextlib.contextmanager
def announced(routes: Routes, upstream: str, ports: list[int], checked: int | None = None) -> Iterator[str]:
    """The route container's script writing ``upstream``'s routes (instances on loopback
    ``ports``, each checked at /api/health on its port or on ``checked``); yields their mark."""
    text = docker_routes.file_for(
        routes, upstream, [(f"{LOOPBACK}:{p}", f"http://{LOOPBACK}:{checked or p}/api/health") for p in ports]
    )
    process = subprocess.Popen(
        [*docker_routes.announcing(routes, upstream), text], start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        yield text.splitlines()[0]  # its `# routes` line, what `loaded` records
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its sleep too, as its container's end would
        process.wait(timeout=10)


def until(condition: object, seconds: float) -> float:
    """Seconds until ``condition()`` holds (polled every 50 ms); fails after ``seconds``."""
    began = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - began < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("routes"), "dev", "docker", show_secrets=True)


@pytest.fixture
def edge(dev: Rendered, tmp_path: Path) -> Iterator[Edge]:
    binary = tool("nginx", "/usr/sbin/nginx")
    unshare = tool("unshare", "/usr/bin/unshare")
    if os.geteuid() != 0:
        # A PID namespace of its own needs root here; CI runs as root and must run this.
        assert os.environ.get("CI") != "true", "tests/test_routes_servers.py needs root for unshare --pid"
        pytest.skip("unshare --pid needs root (CI runs as root)")
    work, routes_dir = tmp_path / "nginx", tmp_path / "routes"
    work.mkdir()
    routes_dir.mkdir()
    ports = EdgePorts(free_port(), free_port(), free_port(), free_port())
    conf = edge_conf(dev.out / "config/aixsss-dev-edge", binary, work, ports, routes=routes_dir)
    conf_path = work / "nginx.conf"
    conf_path.write_text(conf)
    here = f"{binary} -e stderr -p {work} -c {conf_path}"
    deployed = f"nginx -c {load_balancer.CONF_PATH}"
    assert deployed in load_balancer.RELOAD_SCRIPT
    # Debian 12's nginx has no `resolve` on upstream servers (1.27.3): the addresses here are
    # literal, so there is nothing to re-resolve (servers.edge_conf says the same).
    line = nginx.UPSTREAM_SERVER
    if nginx_version(binary) < (1, 27, 3):
        line = line.replace(" resolve", "")
    routes = Routes(
        directory=str(routes_dir),
        line=line,
        check=load_balancer.ROUTE_CHECK,
        reload=("/bin/sh", "-c", load_balancer.RELOAD_SCRIPT.replace(deployed, here)),
    )
    command = [*here.split(), "-g", "daemon off;"]
    log = work / "edge.log"
    with log.open("wb") as out:
        # Its own PID namespace and /proc, as in its container; --kill-child ends it with us.
        process = subprocess.Popen(
            [unshare, "--pid", "--fork", "--mount-proc", "--kill-child", *docker_routes.watching(routes, command)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    context = ssl.create_default_context(cafile=str(dev.out / "certs/ca.crt"))
    try:
        yield Edge(ports.https, dev.deployment.config["aixsss:domain"], context, routes, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def test_the_edge_takes_an_announced_set_once_it_answers_and_its_old_workers_finish_the_old_ones(
    edge: Edge,
) -> None:
    new = free_port()
    adding = Path(edge.routes.directory) / docker_routes.LIVE / "api" / "next.conf"
    with (
        serving(_instance("old")) as old,
        serving(_instance("web")) as web_port,
        announced(edge.routes, "web", [web_port]) as web_mark,
    ):
        with announced(edge.routes, "api", [old]) as old_mark:
            until(lambda: edge.loaded(old_mark) and edge.loaded(web_mark), 30)
            assert edge.get("/api/health") == (200, "old")
            assert edge.get("/") == (200, "web")
        with announced(edge.routes, "api", [new]) as new_mark:
            # Announced before it serves (its container started, its app not yet): not taken.
            time.sleep(SWITCH_WITHIN_SECONDS)
            assert not edge.loaded(new_mark) and edge.loaded(old_mark)
            assert edge.get("/api/health") == (200, "old")
            slow: list[tuple[float, int, str]] = []

            def call_slow() -> None:
                status, instance = edge.get("/api/slow")
                slow.append((time.monotonic(), status, instance))

            caller = threading.Thread(target=call_slow)
            caller.start()
            time.sleep(0.3)  # the slow call is in flight on the old instance
            with serving(_instance("new"), new):
                began = time.monotonic()
                added = began + until(adding.exists, TAKEN_WITHIN_SECONDS)  # the first reload
                took = until(lambda: edge.loaded(new_mark), TAKEN_WITHIN_SECONDS)
                assert not edge.loaded(old_mark) and not adding.exists()
                assert edge.announced_is_loaded("api") and edge.announced_is_loaded("web")
                # Every call after the edge said so goes to the new set.
                assert [edge.get("/api/health") for _ in range(8)] == [(200, "new")] * 8
                caller.join(timeout=SLOW_SECONDS + 10)
                # The call in flight at the switch finished where it began, after the edge's
                # first reload: nginx's old worker kept it.
                [(ended, status, instance)] = slow
                assert (status, instance) == (200, "old") and ended > added, (slow, added)
                print(f"took the new instance {took:.2f} s after it served, with a call in flight on the old one")

                # The control: routes nginx refuses (an instance that answers its check, listed
                # on an invalid port) are never said to be loaded; the edge keeps its set.
                with announced(edge.routes, "api", [99999], checked=new) as refused:
                    time.sleep(SWITCH_WITHIN_SECONDS)
                    assert not edge.loaded(refused) and not edge.announced_is_loaded("api")
                    assert edge.loaded(new_mark)
                    assert edge.get("/api/health") == (200, "new")
    assert "invalid port" in edge.log.read_text()
