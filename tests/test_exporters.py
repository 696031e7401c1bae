"""The exporters (components/conf/exporters.py) against the real servers, scraped as Prometheus would.

The rendered dev PostgreSQL, Redis and nginx edge run on loopback as in tests/test_servers.py;
Debian's builds of postgres_exporter, redis_exporter, nginx-prometheus-exporter and mtail run
with the command lines and environment the renderers give, and their /metrics is read:
- postgres_exporter reaches PostgreSQL over verified TLS with the stack CA (pg_up 1), and a CA
  that did not sign the server's certificate is refused (pg_up 0);
- redis_exporter speaks TLS with the CA and the password (redis_up 1; a wrong password or CA: 0),
  and reports maxmemory as rendered;
- nginx-prometheus-exporter reads the rendered edge's stub_status listener (dev on Docker renders
  it with monitoring on; only its port moves) (nginx_up 1); that listener refuses any address but
  loopback;
- mtail counts the edge's 5xx answers from its status log, exactly the 502s the test caused, and
  nothing of its 200s and redirects; it counts the probes (/healthz, stub_status scrapes), so
  stub_status's request count less them is exactly the traffic the test sent;
- every metric the Docker alerting rules read appears in these scrapes, except the one
  pgbackrest_exporter exports (no Debian package: the real-daemon tier scrapes a stand-in).

Version differences: Debian 12 ships postgres_exporter 0.11.1, redis_exporter 1.45.0,
nginx-prometheus-exporter 0.11.0 and mtail 3.0.0~rc50; the images are 0.20.1, 1.88.0, 1.5.3 and
3.0.9. The names scraped here exist under the same names in both (exporters.py says where).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from rendering import rendered, tool
from servers import (
    LOOPBACK,
    Cache,
    Database,
    free_port,
    redis_client_password,
    rendered_database,
    rendered_redis,
    running,
    superuser_psql,
)
from test_servers import Edge, edge_conf, https, nginx, stub_server

from components.conf import alerts, exporters
from offline.render import Rendered

Samples = dict[str, list[tuple[dict[str, str], float]]]
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Exported by pgbackrest_exporter only, which Debian does not package (exporters.py).
NOT_RUN_HERE = {"pgbackrest_backup_since_last_completion_seconds"}


def parse(text: str) -> Samples:
    """Prometheus's text format: name → [(labels, value)]."""
    samples: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            samples.setdefault(name, []).append((dict(LABEL.findall(labels or "")), float(value)))
    return samples


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


def one(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lbl, v in samples.get(name, []) if labels.items() <= lbl.items()]
    assert len(found) == 1, f"{name}{labels}: {found} in {sorted(samples)}"
    return found[0]


def metrics_answer(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return probe


@contextlib.contextmanager
def exporter(
    command: list[str], work: Path, name: str, port: int, env: Mapping[str, str] | None = None
) -> Iterator[int]:
    """An exporter with only ``env`` (and PATH) in its environment, until its /metrics answers."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} | dict(env or {})
    with running(command, ready=metrics_answer(port), log=work / f"{name}.log", env=clean):
        yield port


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("exporters"), "dev", "docker", show_secrets=True)


# ------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def database(dev: Rendered) -> Iterator[Database]:
    with rendered_database(dev) as db:
        yield db


def postgres_scrape(db: Database, work: Path, ca: Path) -> Samples:
    binary = tool("prometheus-postgres-exporter", "/usr/bin/prometheus-postgres-exporter")
    env = exporters.postgres_exporter_env(LOOPBACK, port=db.port, database=db.database, user=db.user, ca_path=str(ca))
    env[exporters.POSTGRES_PASSWORD_ENV] = db.password
    port = free_port()
    command = [binary, *exporters.postgres_exporter_args(f"{LOOPBACK}:{port}")]
    with exporter(command, work, "postgres-exporter", port, env):
        return scrape(port)


@pytest.fixture(scope="module")
def postgres_metrics(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Samples:
    assert superuser_psql(database, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{database.user}'").strip() == "f"
    return postgres_scrape(database, tmp_path_factory.mktemp("pg-exporter"), database.ca)


def test_postgres_exporter_connects_over_verified_tls(postgres_metrics: Samples) -> None:
    assert one(postgres_metrics, "pg_up") == 1
    # It logs in as the clients' login role, no superuser and no pg_monitor: every default
    # collector still reads what it needs (a permission error would make one report 0).
    collectors = {lbl["collector"]: v for lbl, v in postgres_metrics["pg_scrape_collector_success"]}
    assert collectors and set(collectors.values()) == {1.0}, collectors
    # pg_stat_archiver has its one row whether or not archive_mode is on: the WAL rule's inputs.
    assert one(postgres_metrics, "pg_stat_archiver_failed_count") == 0
    assert "pg_stat_archiver_archived_count" in postgres_metrics


def test_postgres_exporter_refuses_a_server_the_ca_did_not_sign(
    database: Database, dev: Rendered, tmp_path: Path
) -> None:
    # sslmode=verify-full with another CA (here the server's own leaf): no connection, pg_up 0.
    metrics = postgres_scrape(database, tmp_path, dev.out / "certs/redis.crt")
    assert one(metrics, "pg_up") == 0


def test_postgres_exporter_env_shape() -> None:
    env = exporters.postgres_exporter_env("postgres")
    assert env == {
        "DATA_SOURCE_URI": "postgres:5432/aixsss?sslmode=verify-full&sslrootcert=/etc/aixsss/tls/ca.crt",
        "DATA_SOURCE_USER": "aixsss",
    }
    assert exporters.POSTGRES_PASSWORD_ENV not in env  # the platform adds it as a secret


# ------------------------------------------------------------------------------------ Redis


@pytest.fixture(scope="module")
def cache(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    binary = tool("redis-server", "/usr/bin/redis-server")
    with rendered_redis(
        binary, dev.out / "config/aixsss-dev-redis", tmp_path_factory.mktemp("redis"), redis_client_password(dev)
    ) as cache:
        yield cache


def redis_scrape(cache: Cache, work: Path, *, password: str, ca: Path) -> Samples:
    binary = tool("prometheus-redis-exporter", "/usr/bin/prometheus-redis-exporter")
    port = free_port()
    env = exporters.redis_exporter_env(LOOPBACK, port=cache.port, ca_path=str(ca), listen=f"{LOOPBACK}:{port}")
    env[exporters.REDIS_PASSWORD_ENV] = password
    with exporter([binary], work, "redis-exporter", port, env):
        return scrape(port)


@pytest.fixture(scope="module")
def redis_metrics(cache: Cache, tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return redis_scrape(cache, tmp_path_factory.mktemp("redis-exporter"), password=cache.password, ca=cache.ca)


def test_redis_exporter_connects_over_tls_with_the_password(redis_metrics: Samples, dev: Rendered) -> None:
    assert one(redis_metrics, "redis_up") == 1
    conf = (dev.out / "config/aixsss-dev-redis/etc/aixsss/redis.conf").read_text()
    maxmemory_mb = int(re.search(r"^maxmemory (\d+)mb$", conf, re.M).group(1))  # type: ignore[union-attr]
    assert one(redis_metrics, "redis_memory_max_bytes") == maxmemory_mb * 1024 * 1024
    assert 0 < one(redis_metrics, "redis_memory_used_bytes") < maxmemory_mb * 1024 * 1024
    assert one(redis_metrics, "redis_evicted_keys_total") == 0


@pytest.mark.parametrize("wrong", ["password", "ca"])
def test_redis_exporter_reports_down_with_a_wrong_password_or_ca(
    cache: Cache, dev: Rendered, tmp_path: Path, wrong: str
) -> None:
    password = "not-the-password" if wrong == "password" else cache.password
    ca = dev.out / "certs/postgres.crt" if wrong == "ca" else cache.ca
    assert one(redis_scrape(cache, tmp_path, password=password, ca=ca), "redis_up") == 0


# ------------------------------------------------------------------------------------ nginx


@dataclass
class EdgeRun:
    nginx: Samples
    mtail: Samples
    status_port: int
    sent: dict[str, int]  # traffic by status class, and "probes": the /healthz requests


def plain_get(port: int, path: str, host: str) -> int:
    """A request to the edge's plain-HTTP listener (Docker's healthcheck asks /healthz there)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def wait_for(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def edge_run(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeRun]:
    """The rendered edge plus the two snippets, its api upstream a closed port (so /api/ is a
    real 502 from nginx), mtail on the status log and the nginx exporter on stub_status: 502s,
    200s, redirects and probes sent, then both exporters read once mtail has every line."""
    nginx_bin = tool("nginx", "/usr/sbin/nginx")
    mtail_bin = tool("mtail", "/usr/bin/mtail")
    nginx_exporter_bin = tool("prometheus-nginx-exporter", "/usr/bin/prometheus-nginx-exporter")
    work = tmp_path_factory.mktemp("edge-exporters")
    http_port, https_port, dead_api = free_port(), free_port(), free_port()
    status_port, syslog_port, mtail_port, exporter_port = free_port(), free_port(), free_port(), free_port()
    (work / "progs").mkdir()
    (work / "progs/edge.mtail").write_text(exporters.mtail_program())
    syslog = f"{LOOPBACK}:{syslog_port}"
    mtail_args = exporters.mtail_args(str(work / "progs"), status_log_listen=syslog, port=mtail_port, address=LOOPBACK)
    mtail_command = [mtail_bin, *mtail_args]
    status_uri = f"http://{LOOPBACK}:{status_port}{exporters.STUB_STATUS_PATH}"
    exporter_command = [
        nginx_exporter_bin,
        *exporters.nginx_exporter_args(status_uri, listen=f"{LOOPBACK}:{exporter_port}"),
    ]
    with stub_server() as web_port:
        # The rendered edge (dev on Docker, monitoring on) already has both snippets; only their
        # loopback ports move, as every other listener of the test's nginx does.
        conf = edge_conf(dev, nginx_bin, work, http_port, https_port, dead_api, web_port,
                         stub_status=f"{LOOPBACK}:{status_port}", status_log=syslog)  # fmt: skip
        assert f"listen {LOOPBACK}:{status_port};" in conf and f"syslog:server={syslog}," in conf
        # mtail first: a datagram sent before it listens is lost.
        with (
            exporter(mtail_command, work, "mtail", mtail_port),
            nginx(nginx_bin, work, conf, https_port),
            exporter(exporter_command, work, "nginx-exporter", exporter_port),
        ):
            # Only https() reads it: no limits, no hit counters (the web stub here counts nothing).
            edge = Edge(http_port, https_port, dev.deployment.config["aixsss:domain"], dev.out / "certs/ca.crt", conf,
                        0, 0, 0, 0, [], [])  # fmt: skip
            domain = dev.deployment.config["aixsss:domain"]
            sent = {"5xx": 0, "2xx": 0, "3xx": 0, "probes": 0}
            for path, expected, status_class in [("/api/health", 502, "5xx")] * 4 + [("/", 200, "2xx")] * 7:
                response = https(edge, path)
                response.read()
                assert response.status == expected
                sent[status_class] += 1
            for _ in range(2):  # plain HTTP's redirect to https: traffic, not a 5xx
                assert plain_get(http_port, "/", domain) == 301
                sent["3xx"] += 1
            for _ in range(3):  # the probes: Docker's healthcheck on plain HTTP, Kubernetes' on either
                assert plain_get(http_port, "/healthz", domain) == 200
                response = https(edge, "/healthz")
                response.read()
                assert response.status == 200
                sent["probes"] += 2
            # Its scrape of stub_status counts there (and is a probe line, sent once answered).
            nginx_metrics = scrape(exporter_port)
            requests = one(nginx_metrics, exporters.EDGE_REQUESTS_METRIC)
            traffic = sent["5xx"] + sent["2xx"] + sent["3xx"]

            def counted() -> bool:
                mtail = scrape(mtail_port)
                fives = sum(v for _, v in mtail.get(exporters.EDGE_RESPONSES_METRIC, []))
                probes = sum(v for _, v in mtail.get(exporters.EDGE_PROBES_METRIC, []))
                return fives >= sent["5xx"] and probes >= requests - traffic

            # Not an assertion: a wrong count is the tests' to report, with the figures.
            with contextlib.suppress(AssertionError):
                wait_for(counted, timeout=5)
            yield EdgeRun(nginx_metrics, scrape(mtail_port), status_port, sent)


def test_nginx_exporter_reads_the_stub_status_listener(edge_run: EdgeRun) -> None:
    assert one(edge_run.nginx, "nginx_up") == 1
    assert one(edge_run.nginx, "nginx_connections_active") >= 1  # the exporter's own request
    # The test's requests and probes, and the exporter's scrapes.
    assert one(edge_run.nginx, exporters.EDGE_REQUESTS_METRIC) > sum(edge_run.sent.values())


def test_stub_status_answers_loopback_only(edge_run: EdgeRun) -> None:
    # From 127.0.0.2 (another address, same listener): `allow 127.0.0.1; deny all;` refuses.
    raw = socket.create_connection((LOOPBACK, edge_run.status_port), timeout=10, source_address=("127.0.0.2", 0))
    conn = http.client.HTTPConnection(LOOPBACK, edge_run.status_port, timeout=10)
    conn.sock = raw
    conn.request("GET", exporters.STUB_STATUS_PATH)
    assert conn.getresponse().status == 403
    conn = http.client.HTTPConnection(LOOPBACK, edge_run.status_port, timeout=10)
    conn.request("GET", exporters.STUB_STATUS_PATH)
    response = conn.getresponse()
    assert response.status == 200 and b"Active connections" in response.read()


def test_mtail_counts_the_edges_5xx_and_only_those(edge_run: EdgeRun) -> None:
    # The 200s and the redirects send no status line: the total is stub_status's.
    counts = {labels["status_class"]: v for labels, v in edge_run.mtail[exporters.EDGE_RESPONSES_METRIC]}
    assert counts == {"5xx": edge_run.sent["5xx"]}


def test_stub_status_less_the_probes_is_the_traffic(edge_run: EdgeRun) -> None:
    """What the 5xx alert divides by: every request stub_status counted but the /healthz probes
    and its own scrapes, which mtail counted from their probe lines."""
    requests = one(edge_run.nginx, exporters.EDGE_REQUESTS_METRIC)
    probes = one(edge_run.mtail, exporters.EDGE_PROBES_METRIC)
    traffic = edge_run.sent["5xx"] + edge_run.sent["2xx"] + edge_run.sent["3xx"]
    assert probes > edge_run.sent["probes"]  # the scrapes too (the exporter's, at least this one)
    assert (requests, requests - probes) == (requests, traffic)


def test_status_log_lines_are_what_nginx_and_mtail_agree_on() -> None:
    lines = "\n".join(exporters.status_log())
    # Each format spans two lines: its value ends in the newline mtail splits on.
    assert "  log_format aixsss_status 'status=$status\n';" in lines
    assert "  log_format aixsss_probe 'probe\n';" in lines
    assert lines.endswith(
        "  access_log syslog:server=127.0.0.1:5140,tag=aixsss_edge,nohostname aixsss_status if=$aixsss_status_logged;"
    )
    assert exporters.probe_log() == "access_log syslog:server=127.0.0.1:5140,tag=aixsss_edge,nohostname aixsss_probe;"


# ----------------------------------------------------------------------- what the rules read

PROMQL_WORDS = {"time", "vector", "increase", "rate", "sum", "min", "max", "absent", "label_replace", "by", "and"}


def metric_names(spec: dict[str, object]) -> set[str]:
    """The metric names in the rules' expressions: identifiers that are not PromQL's own words,
    label names in matchers or ``by``, or strings."""
    names: set[str] = set()
    for group in spec["groups"]:  # type: ignore[attr-defined]
        for rule in group["rules"]:
            expr = re.sub(r'"[^"]*"', "", rule["expr"])  # label values, label_replace's arguments
            expr = re.sub(r"\w+\s*=", "", expr)  # label names in matchers
            expr = re.sub(r"by \([^)]*\)", "", expr)
            expr = re.sub(r"\[\w+\]", "", expr)  # range durations
            names |= {w for w in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr) if w not in PROMQL_WORDS}
    return names


def test_every_metric_the_docker_rules_read_is_exported(
    postgres_metrics: Samples, redis_metrics: Samples, edge_run: EdgeRun
) -> None:
    read = metric_names(alerts.docker_rules())
    assert "pg_stat_archiver_failed_count" in read and "redis_evicted_keys_total" in read  # the parser works
    exported = {*postgres_metrics, *redis_metrics, *edge_run.nginx, *edge_run.mtail}
    assert read - exported == NOT_RUN_HERE
