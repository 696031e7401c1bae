"""Every server the bench runs, on loopback, started and always stopped together."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import proxies, upstreams
from bench.scenarios import RATE_CASES
from offline.render import render
from tests.servers import LOOPBACK, free_port, nginx_running, port_accepts, running

DOMAIN = "aixsss.localhost"


@dataclass(frozen=True)
class Stack:
    https: dict[str, int]  # edge, stock, haproxy and the rate cases' edges -> TLS port
    pids: dict[str, int]  # edge, stock, haproxy -> the server's first process (nginx's master)
    api_port: int
    web_port: int
    ca: Path
    rate_edit: str
    rate_limit: str  # the limited edge's limit_req_zone and limit_req lines
    drain_seconds: float  # how long the limited edge's zone takes to forget one address's burst


@contextlib.contextmanager
def _udp_sink() -> Iterator[str]:
    """Where the edge's status log (syslog over UDP, read by mtail when deployed: a datagram for
    each 5xx answer and each probe, none for the 200s measured here) goes: a bound socket nobody
    reads, so nginx's sends succeed and cost what they cost."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((LOOPBACK, 0))
        yield f"{LOOPBACK}:{sink.getsockname()[1]}"


def _edge(stack: contextlib.ExitStack, out: Path, nginx: str, work: Path, ports: proxies.Ports, raise_rate: bool,
          status_log: str) -> tuple[str, str, int]:  # fmt: skip
    work.mkdir()
    conf, edit = proxies.edge_conf(out, nginx, work, ports, raise_rate=raise_rate, status_log=status_log)
    master = stack.enter_context(nginx_running(nginx, work, conf, ports.https))
    return conf, edit, master.pid


@contextlib.contextmanager
def started(work: Path, nginx: str, haproxy: str) -> Iterator[Stack]:
    rendered = render("dev", "docker", work / "render", show_secrets=True)
    tls = proxies.edge_tls(rendered.out)
    with contextlib.ExitStack() as stack:
        api, web = free_port(), free_port()
        for name, conf, port in (
            ("api", upstreams.api_conf(work / "api", api), api),
            ("web", upstreams.web_conf(_web_root(work), work / "web", web), web),
        ):
            (work / name).mkdir(exist_ok=True)
            stack.enter_context(nginx_running(nginx, work / name, conf, port))
        # One edge as configured per rate-limit case: each starts with an empty zone.
        https = {name: free_port() for name in ("edge", "stock", "haproxy", *(c.name for c in RATE_CASES))}
        status_log = stack.enter_context(_udp_sink())
        edge_ports = proxies.Ports(https["edge"], free_port(), api, web)
        pids: dict[str, int] = {}
        _, rate_edit, pids["edge"] = _edge(stack, rendered.out, nginx, work / "edge", edge_ports, True, status_log)
        limited = ""
        for case in RATE_CASES:
            limited_ports = proxies.Ports(https[case.name], free_port(), api, web)
            limited, _, _ = _edge(stack, rendered.out, nginx, work / case.name, limited_ports, False, status_log)
        ports = proxies.Ports(https["stock"], 0, api, web)
        (work / "stock").mkdir()
        stock = proxies.stock_conf(work / "stock", tls, ports)
        pids["stock"] = stack.enter_context(nginx_running(nginx, work / "stock", stock, ports.https)).pid
        haproxy_ports = proxies.Ports(https["haproxy"], 0, api, web)
        pids["haproxy"] = stack.enter_context(_haproxy(haproxy, work / "haproxy", tls, haproxy_ports)).pid
        zone = next(line.strip() for line in limited.splitlines() if line.strip().startswith("limit_req_zone "))
        limit = next(line.strip() for line in limited.splitlines() if line.strip().startswith("limit_req "))
        rate, burst = re.search(r"rate=(\d+)r/s", zone), re.search(r"burst=(\d+)", limit)
        drain = int(burst.group(1)) / int(rate.group(1)) + 0.5 if rate and burst else 1.0
        yield Stack(https, pids, api, web, rendered.out / "certs/ca.crt", rate_edit, f"{zone} {limit}", drain)


def _web_root(work: Path) -> Path:
    root = work / "web-root"
    root.mkdir()
    upstreams.write_assets(root)
    return root


@contextlib.contextmanager
def _haproxy(binary: str, work: Path, tls: proxies.Tls, ports: proxies.Ports) -> Iterator[subprocess.Popen[bytes]]:
    work.mkdir()
    pem = work / "edge.pem"  # HAProxy reads the certificate and its key from one file
    pem.write_text(tls.cert.read_text() + tls.key.read_text())
    conf = work / "haproxy.cfg"
    conf.write_text(proxies.haproxy_conf(pem, ports))
    checked = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with running([binary, "-db", "-f", str(conf)], ready=port_accepts(ports.https), log=work / "haproxy.log") as p:
        yield p
