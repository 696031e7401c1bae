"""The client's address at the edge, run by the real nginx on loopback.

Behind a Gateway (kubernetes.exposure gateway) every connection to the edge comes from the
gateway's proxies: the edge's rate limit must count the client they name in X-Forwarded-For,
and believe that header and X-Forwarded-Proto from the gateway's addresses only
(kubernetes.gatewayAddresses). Here the edge's nginx.conf is the one the program puts in the
pod's ConfigMap for such a stack, with the gateway at 127.0.0.2/32 (loopback holds all of
127/8): this test, connecting from 127.0.0.2, is the gateway; from 127.0.0.3 it is any other
pod. The edits are servers.relocate()'s only (files, ports, upstreams). That nothing but the
gateway's namespace reaches the edge at all is the NetworkPolicy's part
(tests/test_network_policy.py); on a LoadBalancer the Service's externalTrafficPolicy Local
keeps the peer the client (the Service and spread tests at the end, under the mocks).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from harness import Deployment, k8s_file, run_program
from rendering import tool
from servers import (
    LOOPBACK,
    edge_cache_edit,
    exporter_edits,
    free_port,
    nginx_running,
    nginx_version,
    relocate,
    serving,
)
from throwaway_pki import issue

GATEWAY = "127.0.0.2"  # the gateway's proxy: kubernetes.gatewayAddresses [127.0.0.2/32]
OTHER_POD = "127.0.0.3"  # any other peer, forging the same headers
CLIENT_A, CLIENT_B = "198.51.100.7", "198.51.100.8"  # TEST-NET-2: two browsers behind the gateway
RATE, BURST = 1, 3  # edge.apiRatePerSecond, edge.apiRateBurst: a bucket the test empties fast
DOMAIN = "staging.aixsss.example.com"
NAMESPACE = "aixsss-staging"
CONF = "/etc/aixsss/nginx.conf"
OVERRIDES = {
    "target": "kubernetes",
    "kubernetes.exposure": "gateway",
    "kubernetes.gatewayName": "public",
    "kubernetes.gatewayAddresses": [f"{GATEWAY}/32"],
    "edge.apiRatePerSecond": RATE,
    "edge.apiRateBurst": BURST,
    # Nothing of the burst delayed: the bucket's shape (delay, pacing) is tests/test_servers.py's;
    # here only whose bucket a request counts in, shown by one client emptying it request by request.
    "edge.apiRateDelay": BURST,
}


def pod_file(d: Deployment, workload: str, path: str) -> str:
    """What the workload's pod finds at ``path``, through its volumes (harness.k8s_file)."""
    return k8s_file(d, workload, path)


@dataclass
class Upstream:
    """A stub api/web: records the headers of every request it gets and answers 200."""

    seen: list[dict[str, str]] = field(default_factory=list)


@contextlib.contextmanager
def upstream() -> Iterator[tuple[int, Upstream]]:
    record = Upstream()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # see test_servers._Stub: outrun the rate limit

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            record.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as port:
        yield port, record


@dataclass
class Edge:
    http_port: int
    https_port: int
    ca: Path
    conf: str
    api: Upstream


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    binary = tool("nginx", "/usr/sbin/nginx")
    work = tmp_path_factory.mktemp("nginx-gateway")
    text = pod_file(run_program("staging", overrides=OVERRIDES), "edge", CONF)
    # The pod's certificate is another file of its own; a throwaway one for the domain stands in.
    ca = issue("test CA")
    leaf = issue(DOMAIN, ca=ca, names=(DOMAIN,), server_auth=True)
    (work / "ca.crt").write_text(ca.cert_pem)
    (work / "tls.crt").write_text(leaf.cert_pem)
    (work / "tls.key").write_text(leaf.key_pem)
    http_port, https_port = free_port(), free_port()
    with upstream() as (api_port, api), upstream() as (web_port, _web):
        resolve = "resolve " if nginx_version(binary) >= (1, 27, 3) else ""  # see test_servers.edge_conf
        edits = {
            **exporter_edits(text),
            "listen 8080;": f"listen {LOOPBACK}:{http_port};",
            "listen 8443 ssl;": f"listen {LOOPBACK}:{https_port} ssl;",
            f"server api.{NAMESPACE}.svc.cluster.local:3001 resolve ": f"server {LOOPBACK}:{api_port} {resolve}",
            f"server web.{NAMESPACE}.svc.cluster.local:8080 resolve ": f"server {LOOPBACK}:{web_port} {resolve}",
            "resolver kube-dns.kube-system.svc.cluster.local ": f"resolver {LOOPBACK} ",
            " /tmp/": f" {work}/",
            **edge_cache_edit(),
        }
        if nginx_version(binary) < (1, 25, 1):
            edits["    http2 on;\n"] = ""
        paths = {"/etc/aixsss/tls/tls.crt": work / "tls.crt", "/etc/aixsss/tls/tls.key": work / "tls.key"}
        conf = relocate(text, paths, edits)
        with nginx_running(binary, work, conf, http_port):
            yield Edge(http_port, https_port, work / "ca.crt", conf, api)


def plain(edge: Edge, source: str) -> http.client.HTTPConnection:
    """A keep-alive connection to the edge's HTTP listener (the one the HTTPRoute names) from
    ``source``."""
    conn = http.client.HTTPConnection(LOOPBACK, edge.http_port, timeout=10)
    conn.sock = socket.create_connection((LOOPBACK, edge.http_port), timeout=10, source_address=(source, 0))
    return conn


def tls(edge: Edge, source: str) -> http.client.HTTPSConnection:
    raw = socket.create_connection((LOOPBACK, edge.https_port), timeout=10, source_address=(source, 0))
    conn = http.client.HTTPSConnection(DOMAIN, edge.https_port, timeout=10)
    conn.sock = ssl.create_default_context(cafile=str(edge.ca)).wrap_socket(raw, server_hostname=DOMAIN)
    return conn


def get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> int:
    conn.request("GET", path, headers={"Host": DOMAIN, **headers})
    response = conn.getresponse()
    response.read()
    return response.status


def via_gateway(client: str, proto: str = "https") -> dict[str, str]:
    """What the gateway's proxy adds: the client's address and the scheme it was reached by."""
    return {"X-Forwarded-For": client, "X-Forwarded-Proto": proto}


def last_request(edge: Edge) -> dict[str, Any]:
    assert edge.api.seen, "the api stub got no request"
    return edge.api.seen[-1]


def exhaust(conn: http.client.HTTPConnection, headers: dict[str, str]) -> list[int]:
    """Requests until the first 429 (bounded): a loaded machine refills the bucket meanwhile."""
    statuses: list[int] = []
    for _ in range(BURST + 200):
        statuses.append(get(conn, "/api/health", headers))
        if statuses[-1] == 429:
            break
    return statuses


def test_the_edge_trusts_only_the_gateways_addresses(edge: Edge) -> None:
    assert f"set_real_ip_from {GATEWAY}/32;" in edge.conf  # the fixture ran `nginx -t` on it
    assert "set_real_ip_from 0.0.0.0/0;" not in edge.conf


def test_each_client_behind_the_gateway_has_its_own_bucket(edge: Edge) -> None:
    gateway = plain(edge, GATEWAY)
    statuses = exhaust(gateway, via_gateway(CLIENT_A))
    assert statuses[:BURST] == [200] * BURST and statuses[-1] == 429
    # The same proxy and connection, at once, for another client: a bucket of its own (keyed on
    # the peer, as before, B would share A's empty one).
    assert get(gateway, "/api/health", via_gateway(CLIENT_B)) == 200
    # The api is told the client, once: not the gateway, not the client twice.
    assert last_request(edge)["x-forwarded-for"] == CLIENT_B and last_request(edge)["x-real-ip"] == CLIENT_B


def test_a_client_cannot_choose_its_address_through_the_gateway(edge: Edge) -> None:
    # The gateway appends the peer it saw to what the client sent: the edge takes the rightmost
    # address that is not the gateway's, so the client's own prefix counts for nothing.
    client = "198.51.100.9"
    assert get(plain(edge, GATEWAY), "/api/echo", via_gateway(f"203.0.113.66, {client}")) == 200
    assert last_request(edge)["x-forwarded-for"] == client and last_request(edge)["x-real-ip"] == client


def test_the_gateways_own_hops_are_skipped(edge: Edge) -> None:
    # Two proxy tiers in the gateway's ranges (e.g. a cloud LB before the gateway's proxies): the
    # client is the rightmost address in none of them (real_ip_recursive), not the inner hop.
    client = "198.51.100.10"
    assert get(plain(edge, GATEWAY), "/api/echo", via_gateway(f"{client}, {GATEWAY}")) == 200
    assert last_request(edge)["x-forwarded-for"] == client


def test_the_gateway_decides_the_scheme(edge: Edge) -> None:
    gateway = plain(edge, GATEWAY)
    before = len(edge.api.seen)
    # Reached over plain HTTP at the gateway: redirected, never served.
    assert get(gateway, "/api/health", via_gateway("198.51.100.20", "http")) == 301
    assert get(gateway, "/api/health", {"X-Forwarded-For": "198.51.100.20"}) == 301
    assert len(edge.api.seen) == before
    assert get(gateway, "/api/health", via_gateway("198.51.100.20")) == 200
    assert last_request(edge)["x-forwarded-proto"] == "https"


def test_another_peer_forging_the_headers_gets_nothing_from_them(edge: Edge) -> None:
    before = len(edge.api.seen)
    forged = via_gateway("198.51.100.30")  # X-Forwarded-Proto https, from no gateway
    # Its X-Forwarded-Proto is not believed: the plain listener only redirects it.
    assert get(plain(edge, OTHER_POD), "/api/health", forged) == 301
    assert len(edge.api.seen) == before
    # Its X-Forwarded-For is neither its rate-limit key nor passed on: over TLS, claiming to be
    # client A, whose bucket is empty, it is counted as itself and the api is told its own address.
    conn = tls(edge, OTHER_POD)
    exhausted = exhaust(plain(edge, GATEWAY), via_gateway(CLIENT_A))
    assert exhausted[-1] == 429
    assert get(conn, "/api/health", {"X-Forwarded-For": CLIENT_A, "X-Forwarded-Proto": "http"}) == 200
    seen = last_request(edge)
    assert seen["x-forwarded-for"] == OTHER_POD and seen["x-real-ip"] == OTHER_POD
    assert seen["x-forwarded-proto"] == "https"  # the edge's own TLS, not the forged value
    assert json.dumps(seen).count(CLIENT_A) == 0


# ------------------------------------------------------------------ the Kubernetes objects (mocks)


def edge_objects(d: Deployment) -> tuple[dict[str, Any], dict[str, Any]]:
    """The edge's Service spec and its pod template's spec, as the program declares them."""
    service = d.named("edge", "kubernetes:core/v1:Service").plain["spec"]
    pod = d.named("edge", "kubernetes:apps/v1:Deployment").plain["spec"]["template"]["spec"]
    return service, pod


def test_a_load_balanced_edge_sees_the_client_and_its_pods_are_on_distinct_nodes() -> None:
    service, pod = edge_objects(run_program("prod"))  # Pulumi.prod.yaml: a LoadBalancer, 2 edge replicas
    assert service["type"] == "LoadBalancer" and service["externalTrafficPolicy"] == "Local"
    # Local sends a node's share to its own edge pods only: two on one node would leave the others
    # without one, out of the cloud LB's rotation. A hard spread, tainted nodes not counted.
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "nodeTaintsPolicy": "Honor",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "edge"}},
        }
    ]


def test_only_the_edge_spreads_hard_and_only_behind_a_load_balancer() -> None:
    prod = run_program("prod", overrides={"api.replicas": 2})
    api = prod.named("api", "kubernetes:apps/v1:Deployment").plain["spec"]["template"]["spec"]
    assert [c["whenUnsatisfiable"] for c in api["topologySpreadConstraints"]] == ["ScheduleAnyway"]
    assert prod.named("api", "kubernetes:core/v1:Service").plain["spec"].get("externalTrafficPolicy") is None
    gateway = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **OVERRIDES}
    service, pod = edge_objects(run_program("prod", overrides={**gateway, "edge.replicas": 2}))
    # Behind a Gateway the edge is a ClusterIP Service: no node path to keep, the client is in XFF.
    assert service["type"] == "ClusterIP" and "externalTrafficPolicy" not in service
    assert [c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]] == ["ScheduleAnyway"]
