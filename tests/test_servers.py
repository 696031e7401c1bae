"""The generated nginx, Redis and Postgres settings, run by the real servers on loopback.

Each server gets the rendered files of the dev stack (`make render --show-secrets`), with
only two kinds of edits (servers.relocate): file paths point at the rendered copies, and
listeners bind a free 127.0.0.1 port. Upstreams are small stub servers started here. One
negative control (old_tls_edge) runs an explicitly mutated copy instead, to show a test fails
when the generated setting is weakened.

Each fixture waits until its server answers the way the tests' clients talk to it (the same
socket, protocol and credentials), not merely until a port listens: that gap made CI flaky.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.client
import json
import math
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from http2 import ConnectionClosed, Http2
from redis.backoff import NoBackoff
from redis.retry import Retry
from rendering import rendered, tool
from servers import (
    LOOPBACK,
    Cache,
    Database,
    EdgePorts,
    PostgresServer,
    free_port,
    nginx_running,
    redis_client_password,
    rendered_database,
    rendered_redis,
    serving,
    superuser_psql,
)
from servers import (
    edge_conf as relocated_edge,
)

from offline.engine import reveal
from offline.render import Rendered

DOMAIN_KEY = "aixsss:domain"
HASHED_ASSET = "/assets/index-B4xK9q2Z.js"
ASSET_BODY = ("export const hello = () => console.log('hello from the web stub');\n" * 40).encode()
# 1,200 requests on one connection: past nginx's default of 1,000.
KEEPALIVE_BATCHES = 12
# What the image ships beside it (gzip -9 -n): the edge must pass these exact bytes on.
ASSET_GZ = gzip.compress(ASSET_BODY, compresslevel=9, mtime=0)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("servers"), "dev", "docker", show_secrets=True)


def config_int(result: Rendered, key: str) -> int:
    return int(result.deployment.config[f"aixsss:{key}"])


# --------------------------------------------------------------------------- nginx


class _Stub(BaseHTTPRequestHandler):
    """The api answers /api/* (echoing X-Forwarded-Proto); the web serves the SPA and hashed
    assets as web_server.py's nginx does (gzip_static): the precompressed copy to a request that
    asks for gzip, the file itself otherwise, Vary: Accept-Encoding on both. Every request is
    recorded in ``hits`` (stub_server gives each server its own list)."""

    hits: list[Hit] = []

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle plus delayed ACKs add 40 ms
    # per request, too slow to outrun the rate limit.
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, cache: str | None = None,
              extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if cache:
            self.send_header("Cache-Control", cache)
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.hits.append(Hit(time.monotonic(), self.path, self.headers.get("Accept-Encoding")))
        if self.path.startswith("/api/"):
            body = json.dumps({"ok": True, "path": self.path, "proto": self.headers["X-Forwarded-Proto"]})
            self._send(200, body.encode(), "application/json")
        elif self.path.startswith("/assets/missing-"):
            # An old web replica mid-rollout, asked for the new release's asset.
            self._send(404, b"not found", "text/plain", cache="no-cache")
        elif self.path.startswith("/assets/"):
            # The app says no-cache; the edge replaces it for hashed assets only.
            vary = (("Vary", "Accept-Encoding"),)
            if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                encoded = (("Content-Encoding", "gzip"), *vary)
                self._send(200, ASSET_GZ, "application/javascript", cache="no-cache", extra=encoded)
            else:
                self._send(200, ASSET_BODY, "application/javascript", cache="no-cache", extra=vary)
        else:
            self._send(200, b"<!doctype html><title>aixsss</title>", "text/html", cache="no-cache")


@dataclass(frozen=True)
class Hit:
    at: float  # time.monotonic()
    path: str
    accept_encoding: str | None


@contextlib.contextmanager
def stub_server(hits: list[Hit] | None = None) -> Iterator[int]:
    class Recorded(_Stub):
        pass

    Recorded.hits = [] if hits is None else hits
    with serving(Recorded) as port:
        yield port


@dataclass
class Edge:
    http_port: int
    https_port: int
    domain: str
    ca: Path
    conf: str
    body_limit_mb: int
    burst: int
    rate: int  # requests per second per client, after the burst
    delay: int  # requests of a burst past the first served at once
    api_hits: list[Hit]
    web_hits: list[Hit]


# OpenSSL settings for the nginx under test that allow TLS 1.0 and 1.1 (protocol floor TLSv1,
# security level 0). Debian's OpenSSL is built with security level 2, which refuses them by
# itself; under it, the old-TLS test would pass whatever nginx.conf says. Under these settings
# the only thing left to refuse an old handshake is the generated `ssl_protocols` line (the
# control test shows nginx then accepts one once that line allows it).
PERMISSIVE_OPENSSL_CNF = """\
openssl_conf = openssl_init

[openssl_init]
ssl_conf = ssl_section

[ssl_section]
system_default = system_default_section

[system_default_section]
MinProtocol = TLSv1
CipherString = DEFAULT:@SECLEVEL=0
"""
GENERATED_SSL_PROTOCOLS = "ssl_protocols TLSv1.2 TLSv1.3;"
OLD_TLS = {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}


def edge_conf(dev: Rendered, binary: str, work: Path, http_port: int, https_port: int, api_port: int,
              web_port: int, stub_status: str | None = None, status_log: str | None = None) -> str:  # fmt: skip
    """The dev stack's rendered edge nginx.conf, relocated into ``work`` and onto the given
    loopback ports (the exporters' listeners onto ``stub_status`` and ``status_log``, or free
    ports): servers.edge_conf."""
    ports = EdgePorts(http_port, https_port, api_port, web_port)
    edge_dir = dev.out / "config/aixsss-dev-edge"
    return relocated_edge(edge_dir, binary, work, ports, stub_status=stub_status, status_log=status_log)


@contextlib.contextmanager
def nginx(binary: str, work: Path, conf: str, https_port: int) -> Iterator[None]:
    """nginx running ``conf`` under PERMISSIVE_OPENSSL_CNF, after `nginx -t` accepted it."""
    (work / "openssl.cnf").write_text(PERMISSIVE_OPENSSL_CNF)
    with nginx_running(binary, work, conf, https_port, env=os.environ | {"OPENSSL_CONF": str(work / "openssl.cnf")}):
        yield


@pytest.fixture(scope="module")
def edge(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    binary = tool("nginx", "/usr/sbin/nginx")
    work = tmp_path_factory.mktemp("nginx")
    http_port, https_port = free_port(), free_port()
    api_hits: list[Hit] = []
    web_hits: list[Hit] = []
    with stub_server(api_hits) as api_port, stub_server(web_hits) as web_port:
        conf = edge_conf(dev, binary, work, http_port, https_port, api_port, web_port)
        with nginx(binary, work, conf, https_port):
            yield Edge(
                http_port,
                https_port,
                dev.deployment.config[DOMAIN_KEY],
                dev.out / "certs/ca.crt",
                conf,
                config_int(dev, "edge.clientMaxBodySizeMb"),
                config_int(dev, "edge.apiRateBurst"),
                config_int(dev, "edge.apiRatePerSecond"),
                config_int(dev, "edge.apiRateDelay"),
                api_hits,
                web_hits,
            )


# The edge as it was before the rate limit delayed and HTTP/2 connections outlived 1,000 requests
# (nginx's default); written out, so the control stands whatever the generated lines say.
OLD_LIMIT = (re.compile(r"limit_req zone=api burst=\d+ (delay=\d+|nodelay);"), "limit_req zone=api burst=20 nodelay;")
OLD_KEEPALIVE = (re.compile(r"keepalive_requests \d+;"), "keepalive_requests 1000;")


@pytest.fixture(scope="module")
def old_edge(dev: Rendered, edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """The control: the edge's exact setup, but with the generated limit_req and
    keepalive_requests lines replaced by what the edge had before (burst=20 nodelay, nginx's
    default of 1,000 requests per connection). Nothing else differs. Its api stub is its own."""
    binary = tool("nginx", "/usr/sbin/nginx")
    work = tmp_path_factory.mktemp("nginx-old-limits")
    http_port, https_port = free_port(), free_port()
    api_hits: list[Hit] = []
    with stub_server(api_hits) as api_port:
        conf = edge_conf(dev, binary, work, http_port, https_port, api_port, free_port())
        mutated, limits = OLD_LIMIT[0].subn(OLD_LIMIT[1], conf)
        mutated, keepalives = OLD_KEEPALIVE[0].subn(OLD_KEEPALIVE[1], mutated)
        assert limits == 1 and keepalives == 1
        with nginx(binary, work, mutated, https_port):
            yield dataclasses.replace(edge, http_port=http_port, https_port=https_port, conf=mutated,
                                      api_hits=api_hits, web_hits=[])  # fmt: skip


@pytest.fixture(scope="module")
def old_tls_edge(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The control: the edge's exact setup, but a mutated copy of nginx.conf whose
    ssl_protocols also allows TLS 1.0 and 1.1 (the one edit beyond relocate(); nothing else
    differs). Yields its HTTPS port. The upstreams are never reached: only handshakes."""
    binary = tool("nginx", "/usr/sbin/nginx")
    work = tmp_path_factory.mktemp("nginx-old-tls")
    http_port, https_port = free_port(), free_port()
    conf = edge_conf(dev, binary, work, http_port, https_port, free_port(), free_port())
    assert conf.count(GENERATED_SSL_PROTOCOLS) == 1
    mutated = conf.replace(GENERATED_SSL_PROTOCOLS, "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;")
    with nginx(binary, work, mutated, https_port):
        yield https_port


def tls_context(ca: Path | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if version is not None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old protocols at all
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def connect(edge: Edge, source: str = LOOPBACK) -> http.client.HTTPSConnection:
    """A keep-alive HTTPS connection to the edge, verifying its certificate for the domain."""
    raw = socket.create_connection((LOOPBACK, edge.https_port), timeout=10, source_address=(source, 0))
    conn = http.client.HTTPSConnection(edge.domain, edge.https_port, timeout=10)
    conn.sock = tls_context(edge.ca).wrap_socket(raw, server_hostname=edge.domain)
    return conn


def https(edge: Edge, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          conn: http.client.HTTPSConnection | None = None) -> http.client.HTTPResponse:  # fmt: skip
    conn = conn or connect(edge)
    conn.request(method, path, headers=headers or {})
    return conn.getresponse()


def _security_headers_present(response: http.client.HTTPResponse) -> None:
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in (response.getheader("Content-Security-Policy") or "")
    assert response.getheader("Server") == "nginx"  # server_tokens off: no version


def test_nginx_accepts_the_generated_configuration(edge: Edge) -> None:
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in edge.conf  # the fixture ran `nginx -t` on it


def test_https_api_health_reaches_the_api_through_a_verified_certificate(edge: Edge) -> None:
    response = https(edge, "/api/health")
    body = json.loads(response.read())
    assert response.status == 200
    assert body == {"ok": True, "path": "/api/health", "proto": "https"}
    _security_headers_present(response)


def test_http_redirects_to_https(edge: Edge) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, edge.http_port, timeout=10)
    conn.request("GET", "/api/health?x=1", headers={"Host": edge.domain})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{edge.domain}/api/health?x=1"
    conn = http.client.HTTPConnection(LOOPBACK, edge.http_port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_an_oversized_body_gets_413(edge: Edge) -> None:
    too_big = (edge.body_limit_mb + 1) * 1024 * 1024
    response = https(edge, "/api/upload", method="POST", headers={"Content-Length": str(too_big)})
    assert response.status == 413
    fits = https(edge, "/api/health", method="GET", headers={"Content-Length": "0"})
    assert fits.status == 200


def h2(edge: Edge, source: str = LOOPBACK) -> Http2:
    """One HTTP/2 connection to the edge from ``source``, as a browser tab holds one."""
    return Http2(edge.https_port, edge.domain, edge.ca, source)


def burst(edge: Edge, source: str, count: int, tag: str) -> tuple[list[int], float]:
    """``count`` API requests from ``source`` sent in one write on one HTTP/2 connection (the edge
    reads them in the same millisecond); their statuses, and the seconds from sending until the
    last refusal came back (0 if none), which bounds how much the rate refilled meanwhile."""
    conn = h2(edge, source)
    started = time.monotonic()
    try:
        responses = conn.request_all([f"/api/{tag}?i={i}" for i in range(count)])
    finally:
        conn.close()
    refused = [r.done_at - started for r in responses if r.status == 429]
    return [r.status for r in responses], max(refused, default=0.0)


def test_a_burst_up_to_the_limit_is_served_the_first_at_once_the_rest_paced_past_it_429(edge: Edge) -> None:
    # Its own source address (127.0.0.2): the limit is per client, and other tests keep theirs.
    # The whole bucket and 4 more, at once: what the app's export does with a large project.
    extra = 4
    statuses, refusing = burst(edge, "127.0.0.2", edge.burst + 1 + extra, "burst")
    # The first request and `burst` more are served; the rest refused, unless the rate refilled the
    # bucket while the edge was still reading them (`rate` per second, rounded up).
    served = statuses.count(200)
    assert edge.burst + 1 <= served <= edge.burst + 1 + math.ceil(edge.rate * refusing)
    assert statuses.count(429) == len(statuses) - served
    # What the api saw: the first `delay`+1 at once, then no faster than `rate` per second.
    arrivals = sorted(h.at for h in edge.api_hits if h.path.startswith("/api/burst?"))
    assert len(arrivals) == served
    first = arrivals[0]
    assert arrivals[edge.delay] - first < 1.0, "the first delay+1 requests were not served at once"
    for k, at in enumerate(arrivals):
        # k+1 requests by `at`: at most delay+1, plus what the rate allows since (plus rounding).
        assert k + 1 <= edge.delay + 1 + edge.rate * (at - first) + 1, f"request {k} came too early"
    # The api received everything at the rate, not earlier: the burst beyond `delay` waited.
    assert arrivals[-1] - first >= (served - edge.delay - 2) / edge.rate


def test_control_the_old_limit_refuses_the_same_burst(old_edge: Edge) -> None:
    # burst=20 nodelay: a burst the size of the new bucket is mostly refused at once, which the
    # test above would have seen; its passing depends on the generated limit_req line.
    statuses, _ = burst(old_edge, "127.0.0.2", old_edge.burst + 1, "old-burst")
    assert statuses.count(200) <= 21 + 1 and statuses.count(429) >= old_edge.burst - 21


def test_an_http2_connection_carries_more_than_1000_requests(edge: Edge) -> None:
    conn = h2(edge)
    try:
        for _ in range(KEEPALIVE_BATCHES):
            assert {r.status for r in conn.request_all(["/healthz"] * 100)} == {200}
    finally:
        conn.close()


def test_control_nginx_default_closes_an_http2_connection_after_1000_requests(old_edge: Edge) -> None:
    conn = h2(old_edge)
    try:
        with pytest.raises(ConnectionClosed):
            for _ in range(KEEPALIVE_BATCHES):
                conn.request_all(["/healthz"] * 100)
    finally:
        conn.close()


def asset_hits(edge: Edge, path: str) -> list[str | None]:
    """The Accept-Encoding of each request web got for ``path``."""
    return [h.accept_encoding for h in edge.web_hits if h.path == path]


def test_a_hashed_asset_is_passed_on_precompressed_and_cached_for_a_year(edge: Edge) -> None:
    response = https(edge, HASHED_ASSET, headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Vary") == "Accept-Encoding"
    # Web's .gz byte for byte: the edge neither decompressed nor compressed it again.
    assert response.read() == ASSET_GZ
    _security_headers_present(response)
    page = https(edge, "/", headers={"Accept-Encoding": "gzip"})
    page.read()
    assert page.getheader("Cache-Control") == "no-cache"


GZIP_CLIENTS = ["gzip, deflate, br, zstd", "gzip", "br;q=1.0, gzip;q=0.8, *;q=0.1", "GZIP"]
IDENTITY_CLIENTS = [None, "identity", "gzip;q=0, identity", "br", "gzip;q=0.0"]


def test_a_hashed_asset_reaches_web_once_per_encoding_and_each_client_gets_its_own(edge: Edge) -> None:
    path = "/assets/cached-C4ch3d01.js"
    for _ in range(3):
        for accept in GZIP_CLIENTS + IDENTITY_CLIENTS:
            response = https(edge, path, headers={"Accept-Encoding": accept} if accept else {})
            body = response.read()
            assert response.status == 200
            if accept in GZIP_CLIENTS:
                assert response.getheader("Content-Encoding") == "gzip", accept
                assert body == ASSET_GZ, accept
            else:
                assert response.getheader("Content-Encoding") is None, accept
                assert body == ASSET_BODY, accept
            assert response.getheader("Vary") == "Accept-Encoding"
    # 27 requests, two fetches: one per encoding, asked for as exactly gzip or nothing.
    hits = asset_hits(edge, path)
    assert len(hits) == 2 and set(hits) == {"gzip", None}


def test_concurrent_misses_for_one_asset_reach_web_once(edge: Edge) -> None:
    path = "/assets/locked-L0ck3d01.js"
    conn = h2(edge)
    try:
        responses = conn.request_all([path] * 20, {"accept-encoding": "gzip"})
    finally:
        conn.close()
    assert all(r.status == 200 and r.body == ASSET_GZ for r in responses)
    assert asset_hits(edge, path) == ["gzip"]  # proxy_cache_lock: one fetch, 19 waited for it


def test_a_missing_hashed_asset_is_asked_for_again(edge: Edge) -> None:
    # Only a 200 is kept: a 404 (the asset is on the other replica, mid-rollout) must not stick.
    path = "/assets/missing-M1ss1ng0.js"
    for _ in range(2):
        response = https(edge, path, headers={"Accept-Encoding": "gzip"})
        response.read()
        assert response.status == 404
    assert asset_hits(edge, path) == ["gzip", "gzip"]


def test_index_html_and_deep_links_are_never_cached_at_the_edge(edge: Edge) -> None:
    for path in ["/", "/index.html", "/projects/42"]:
        before = [h.path for h in edge.web_hits].count(path)
        for _ in range(3):
            response = https(edge, path, headers={"Accept-Encoding": "gzip"})
            response.read()
            assert response.status == 200
        assert [h.path for h in edge.web_hits].count(path) == before + 3, path


def old_tls_handshake(port: int, version: ssl.TLSVersion, domain: str) -> str:
    """A handshake at exactly ``version``; the client itself allows old protocols and ciphers."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        tls_context(None, version).wrap_socket(raw, server_hostname=domain) as tls,
    ):
        return str(tls.version())


@pytest.mark.parametrize("version", list(OLD_TLS))
def test_old_tls_versions_are_refused(edge: Edge, version: ssl.TLSVersion) -> None:
    # nginx runs under OpenSSL settings that allow TLS 1.0/1.1 (PERMISSIVE_OPENSSL_CNF), so
    # this refusal is the generated ssl_protocols line's and nothing else's.
    assert GENERATED_SSL_PROTOCOLS in edge.conf
    with pytest.raises(ssl.SSLError):
        old_tls_handshake(edge.https_port, version, edge.domain)


@pytest.mark.parametrize("version", list(OLD_TLS))
def test_control_the_same_nginx_accepts_old_tls_once_ssl_protocols_allows_it(
    old_tls_edge: int, dev: Rendered, version: ssl.TLSVersion
) -> None:
    # Were the program to allow TLS 1.0/1.1, the test above would see this handshake succeed
    # and fail: it depends on the generated line, not on this machine's OpenSSL defaults.
    assert old_tls_handshake(old_tls_edge, version, dev.deployment.config[DOMAIN_KEY]) == OLD_TLS[version]


# --------------------------------------------------------------------------- redis


@pytest.fixture(scope="module")
def cache(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    binary = tool("redis-server", "/usr/bin/redis-server")
    with rendered_redis(
        binary, dev.out / "config/aixsss-dev-redis", tmp_path_factory.mktemp("redis"), redis_client_password(dev)
    ) as cache:
        yield cache


def redis_client(
    cache: Cache, *, password: str | None, tls: bool = True, ca: Path | None = None, fail_fast: bool = False
) -> redis.Redis:
    """A client of the server under test. ``fail_fast`` is for errors a test expects: redis-py
    retries ConnectionError (AuthenticationError and TLS failures among them) 10 times with
    back-off by default, seconds spent re-proving an expected refusal; such a client tries once."""
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if tls:
        options |= {"ssl": True, "ssl_ca_certs": str(ca or cache.ca), "ssl_cert_reqs": "required"}
    if fail_fast:
        options |= {"retry": Retry(NoBackoff(), retries=0)}
    return redis.Redis(host=LOOPBACK, port=cache.port, password=password, **options)


def test_redis_refuses_a_command_without_auth(cache: Cache) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis_client(cache, password=None, fail_fast=True).ping()
    with pytest.raises(redis.AuthenticationError):
        redis_client(cache, password="not-the-password", fail_fast=True).ping()


def test_redis_tls_client_trusting_the_rendered_ca_authenticates(cache: Cache) -> None:
    client = redis_client(cache, password=cache.password)
    assert client.ping() is True
    client.set("aixsss:probe", "1")
    assert client.get("aixsss:probe") == b"1"


def test_redis_certificate_is_checked_against_the_ca(cache: Cache, dev: Rendered) -> None:
    # A client that trusts another CA (here: the server's own leaf) is refused by TLS itself.
    with pytest.raises(redis.ConnectionError):
        redis_client(cache, password=cache.password, ca=dev.out / "certs/redis.crt", fail_fast=True).ping()


def test_redis_refuses_plain_text(cache: Cache) -> None:
    with pytest.raises(redis.ConnectionError):
        redis_client(cache, password=cache.password, tls=False, fail_fast=True).ping()
    settings = redis_client(cache, password=cache.password).config_get("port")
    assert settings == {"port": "0"}  # no plain-text listener at all


def test_redis_persists_and_never_evicts(cache: Cache) -> None:
    client = redis_client(cache, password=cache.password)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    with pytest.raises(redis.ResponseError):
        client.execute_command("FLUSHALL")  # renamed away


# --------------------------------------------------------------------------- postgres


@pytest.fixture(scope="module")
def database(dev: Rendered, postgres_server: PostgresServer) -> Iterator[Database]:
    with rendered_database(dev, postgres_server) as db:
        yield db


def _container_env(result: Rendered, service: str) -> list[str]:
    container = result.deployment.named(service, "docker:index/container:Container")
    return list(reveal(container.inputs)["envs"])


def pg_connect(db: Database, **options: str) -> psycopg.Connection:
    params = {"host": LOOPBACK, "port": db.port, "user": db.user, "dbname": db.database, "password": db.password}
    params |= {"sslmode": "verify-full", "sslrootcert": str(db.ca), "connect_timeout": "5"}
    return psycopg.connect(**(params | options))


def test_postgres_refuses_a_connection_without_tls(database: Database) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        pg_connect(database, sslmode="disable")


def test_postgres_accepts_tls_with_the_generated_password_over_scram(database: Database) -> None:
    # channel_binding=require succeeds only with SCRAM over TLS.
    with pg_connect(database, channel_binding="require") as conn:
        # Logged in as this generation's role; acting as the owner (what it creates is the owner's).
        assert conn.execute("SELECT session_user, current_user").fetchone() == (database.user, "aixsss")
        assert database.user == "aixsss_g0"
        # Seen by the superuser (through the socket): the session, acting as the owner, may read
        # neither its login role's row of pg_stat_ssl nor pg_authid.
        row = superuser_psql(database, f"SELECT ssl, version FROM pg_stat_ssl WHERE pid = {conn.info.backend_pid}")
        assert row.strip() in ("t|TLSv1.2", "t|TLSv1.3")
    passwords = superuser_psql(database, "SELECT rolname, rolpassword ~ '^SCRAM-SHA-256\\$' FROM pg_authid"
                               " WHERE rolpassword IS NOT NULL")  # fmt: skip
    # Only the login role has a password (a SCRAM verifier): the owner never had one, and the
    # superuser's bootstrap password opened initdb only.
    assert passwords.split() == ["aixsss_g0|t"]


def test_postgres_refuses_a_wrong_password(database: Database) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(database, password="not-the-password")


def test_postgres_refuses_other_databases_even_over_tls(database: Database) -> None:
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        pg_connect(database, dbname="postgres")
