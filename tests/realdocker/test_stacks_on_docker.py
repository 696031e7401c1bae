"""dev, staging and prod on a real Docker daemon, as the program declares them (make test-docker).

The program runs offline (offline.engine), the applier does what pulumi-docker would with its
Docker resources (applier.py), the images are local stand-ins (images.py). Then the daemon
is asked, not the plan: what runs, what is healthy, who can reach whom, what is published.
Traffic goes only to loopback and to containers this test created.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.containers
import pytest
from rendering import SETTINGS as RENDER_SETTINGS

from components.conf import nginx
from offline.engine import Deployment, Registration, reveal, run_program
from tests.realdocker.applier import Applier, ApplyError, ApplyReport
from tests.realdocker.images import APP_OVERRIDES, ensure_images

CONTAINER = "docker:index/container:Container"
# Each stack switched to Docker as the render tests switch it (prod: one edge per host), with
# given app images instead of app.source (images.py APP_OVERRIDES: the applier builds nothing).
# prod's ACME client is pointed at loopback inside its own container, so it never leaves this
# machine (it keeps serving the bootstrap certificate).
SETTINGS: dict[str, dict[str, str]] = {
    stack: {**RENDER_SETTINGS.get((stack, "docker"), {}), **APP_OVERRIDES, **acme}
    for stack, acme in (("dev", {}), ("staging", {}), ("prod", {"tls.acmeServer": "https://127.0.0.1:14000/dir"}))
}
# The Redis TLS tunnel beside each api and worker container (components/cache.py TUNNEL).
TUNNEL = "redis-tls"
NEW_API = "ghcr.io/aixsss/api:1.4.1-replaced"
NEW_WEB = "ghcr.io/aixsss/web:1.4.1-replaced"


@dataclass
class Deployed:
    stack: str
    deployment: Deployment
    report: ApplyReport
    applier: Applier
    client: docker.DockerClient
    host: str
    # Seconds from the apply's return until the edge answered 200 for both api and web.
    edge_ready_after: float = float("nan")

    def container(self, resource: str) -> docker.models.containers.Container:
        reg = self.deployment.named(resource, CONTAINER)
        return self.client.containers.get(reveal(reg.inputs["name"]))

    @property
    def ca_pem(self) -> str:
        ca = self.deployment.named("ca", "tls:index/selfSignedCert:SelfSignedCert")
        return reveal(ca.outputs["certPem"])

    @property
    def domain(self) -> str:
        return self.deployment.config["aixsss:domain"]


def program(stack: str, prior: Deployment | None = None, **extra: str) -> Deployment:
    return run_program(stack, overrides={"target": "docker", **SETTINGS[stack], **extra}, prior=prior)


def apply(host: str, applier: Applier, deployment: Deployment, cache: Path) -> ApplyReport:
    references = {reveal(r.inputs["name"]) for r in deployment.of_type("docker:index/remoteImage:RemoteImage")}
    ensure_images(host, references, cache)
    try:
        return applier.apply(deployment)
    except ApplyError:
        # A route container waits for the edge: its log says what it waits for (docker_routes).
        client = docker.DockerClient(base_url=host)
        for edge in client.containers.list(all=True, filters={"label": "aixsss.service=edge"}):
            print(f"{edge.name}'s log:\n" + edge.logs(tail=40).decode(errors="replace"))
        raise


@pytest.fixture(scope="module", params=list(SETTINGS))
def deployed(
    request: pytest.FixtureRequest, docker_daemon: str, image_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    stack = request.param
    applier = Applier(docker_daemon, tmp_path_factory.mktemp(stack) / "state.json")
    client = docker.DockerClient(base_url=docker_daemon)
    deployment = program(stack)
    try:
        report = apply(docker_daemon, applier, deployment, image_cache)
        deployed = Deployed(stack, deployment, report, applier, client, docker_daemon)
        deployed.edge_ready_after = _edge_ready_after(deployed)
        yield deployed
    finally:
        for extra in client.containers.list(all=True, filters={"label": "aixsss-test"}):
            extra.remove(force=True)  # this test's own containers, before the stack's networks go
        applier.destroy()
        client.close()


def _containers(d: Deployed) -> list[Registration]:
    return d.deployment.of_type(CONTAINER)


def _never_started(reg: Registration) -> bool:
    return reg.plain.get("start") is False


# --------------------------------------------------------------------------- created and healthy


def test_every_container_is_created_started_and_healthy_in_declared_order(deployed: Deployed) -> None:
    d = deployed
    started = d.report.started
    for reg in _containers(d):
        c = d.container(reg.name)
        # Rotated logs on every container, as the daemon applied them (helpers included).
        log = c.attrs["HostConfig"]["LogConfig"]
        assert log == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}, (reg.name, log)
        if _never_started(reg):
            assert c.status == "created", reg.name  # a config carrier: filled, never run
            continue
        if reg.plain.get("attach"):
            # Run-once: volume owners, migrations, the bucket bootstrap.
            assert d.report.exit_codes[reg.name] == 0, (reg.name, c.logs()[-2000:])
            continue
        c.reload()
        assert c.status == "running", (reg.name, c.logs()[-2000:])
        if reg.plain.get("healthcheck"):
            # What `pulumi up` awaited is healthy now; the rest (the api and its fronts, which
            # the edge's route container checked instead) by Docker's next probe, 10 s apart.
            deadline = time.monotonic() + (0 if reg.plain.get("wait") else 30)
            while c.attrs["State"]["Health"]["Status"] != "healthy" and time.monotonic() < deadline:
                time.sleep(1)
                c.reload()
            assert c.attrs["State"]["Health"]["Status"] == "healthy", reg.name
    # Everything a container waits for (dependencies, recursively) started before it.
    containers = {r.urn: r for r in _containers(d)}
    for reg in _containers(d):
        for other in containers.values():
            if other is not reg and d.deployment.depends_on(reg, other):
                assert started.index(other.name) < started.index(reg.name), (reg.name, other.name)


def test_a_second_apply_with_unchanged_config_changes_nothing(deployed: Deployed, image_cache: Path) -> None:
    d = deployed
    ids = {c.id for c in d.client.containers.list(all=True)}
    again = apply(d.host, d.applier, program(d.stack, prior=d.deployment), image_cache)
    assert (again.created, again.replaced, again.deleted, again.updated) == ([], [], [], [])
    assert {c.id for c in d.client.containers.list(all=True)} == ids


# --------------------------------------------------------------------------- isolation


def _network(d: Deployed, zone: str) -> dict[str, Any]:
    return d.client.networks.get(f"aixsss-{d.stack}-{zone}").attrs


def _tcp_from(container: docker.models.containers.Container, address: str, port: int) -> bool:
    """Whether ``container`` opens a TCP connection to address:port (bash's /dev/tcp, 3 s)."""
    probe = f"exec 3<>/dev/tcp/{address}/{port}"
    result = container.exec_run(["timeout", "3", "bash", "-c", probe])
    return result.exit_code == 0


def test_backend_and_frontend_have_no_route_out(deployed: Deployed) -> None:
    d = deployed
    assert _network(d, "backend")["Internal"] is True and _network(d, "frontend")["Internal"] is True
    assert _network(d, "egress")["Internal"] is False
    # A listener of this test's own on the egress network: the api (egress) reaches it, postgres
    # (backend only) does not. Docker 20.10 still gives internal networks a gateway route; the
    # daemon's iptables rules drop what would leave the bridge (README: what Docker isolates).
    listener = d.client.containers.run(
        reveal(d.deployment.named("api-image").inputs["name"]),
        ["node", "-e", "require('net').createServer(s=>{s.on('error',()=>{});s.end('x')}).listen(7777)"],
        name=f"aixsss-test-{d.stack}-listener",
        network=f"aixsss-{d.stack}-egress",
        user="1000:1000",
        detach=True,
    )
    try:
        listener.reload()
        address = listener.attrs["NetworkSettings"]["Networks"][f"aixsss-{d.stack}-egress"]["IPAddress"]
        api = d.container("api" if d.stack != "prod" else "api-1")
        deadline = time.monotonic() + 20
        while not _tcp_from(api, address, 7777) and time.monotonic() < deadline:
            time.sleep(0.5)
        listener.reload()
        assert _tcp_from(api, address, 7777), ("control: the api (on egress) reaches the listener",
                                                    listener.status, listener.logs()[-1000:])  # fmt: skip
        for data in ("postgres", "redis"):
            assert not _tcp_from(d.container(data), address, 7777), f"{data} reached a host outside the backend"
    finally:
        listener.remove(force=True)


def test_only_the_edge_publishes_on_the_configured_address(deployed: Deployed) -> None:
    d = deployed
    published: dict[str, set[tuple[str, str]]] = {}
    for c in d.client.containers.list(filters={"label": "app.kubernetes.io/part-of=aixsss"}):
        # What the daemon bound (NetworkSettings), not what was asked (HostConfig.PortBindings):
        # a container on internal networks only is given its bindings and publishes nothing.
        bindings = c.attrs["NetworkSettings"]["Ports"] or {}
        found = {(b["HostIp"], b["HostPort"]) for spec in bindings.values() for b in spec or []}
        # Docker binds `::` beside each 0.0.0.0 binding where the host has IPv6: the same "all".
        found -= {("::", port) for ip, port in found if ip == "0.0.0.0"}
        if found:
            published[c.labels["aixsss.service"]] = found
        for _ip, port in found:  # and each answers on loopback
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
                pass
    edge_ip = "127.0.0.1" if d.stack == "dev" else "0.0.0.0"
    expected = {"edge": {(edge_ip, "80"), (edge_ip, "443")}}
    if d.stack == "dev":  # docker.publishDataPorts: for local tools, on loopback only
        expected |= {"postgres": {("127.0.0.1", "5432")}, "redis": {("127.0.0.1", "6379")}}
        expected |= {"minio": {("127.0.0.1", "9000")}}
    assert published == expected


# --------------------------------------------------------------------------- TLS inside the stack

APP_TLS_CHECK = r"""
const fs = require('fs'); const ca = fs.readFileSync('/etc/aixsss/tls/ca.crt');
const { Client } = require('pg'); const Redis = require('ioredis'); const https = require('https');
const u = new URL(process.env.DATABASE_URL); const r = new URL(process.env.REDIS_URL);
const pg = (password) => { const c = new Client({ host: u.hostname, port: +u.port, user: decodeURIComponent(u.username),
  password, database: u.pathname.slice(1), ssl: { ca, rejectUnauthorized: true, servername: u.hostname } });
  return c.connect().then(() => c.query('select 1')).then(() => c.end())
    .then(() => 'ok', (e) => e.code || e.message); };
// No password at connect: AUTH is sent as a command, so a refusal comes back as Redis's own error
// (and no ready check, whose INFO would be refused before AUTH). `tls` only where asked: REDIS_URL
// is plain text to the tunnel on loopback, as the app's client (host, port, password) speaks it.
const redis = (host, port, password, tls) => { const c = new Redis({ host, port, lazyConnect: true,
  enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null,
  ...(tls ? { tls: { ca, servername: host } } : {}) });
  const late = new Promise((ok) => setTimeout(() => ok('no answer within 5 s'), 5000));
  return Promise.race([late, c.connect().then(() => c.call('AUTH', password)).then(() => c.ping())
    .then((p) => p, (e) => e.message)]).finally(() => c.disconnect()); };
const s3 = () => new Promise((ok) => https.get(process.env.S3_ENDPOINT + '/minio/health/live', { ca },
  (res) => ok(String(res.statusCode))).on('error', (e) => ok(e.message)));
const pw = r.password;  // as the app passes it: WHATWG URL's, not decoded
Promise.all([pg(decodeURIComponent(u.password)), pg('wrong-password'),
  redis(r.hostname, +r.port, pw, false), redis(r.hostname, +r.port, 'wrong-password', false),
  redis('redis', 6379, pw, false), redis('redis', 6379, pw, true), s3()])
  .then((v) => { console.log(JSON.stringify(v)); process.exit(0); });
"""


def _app_containers(d: Deployed, service: str) -> list[str]:
    """The long-running containers of api or worker (not the migration job, not the tunnels)."""
    return [r.name for r in _containers(d) if re.fullmatch(rf"{service}(-\d+)?", r.name)]


def test_apps_reach_the_data_services_over_verified_tls_and_a_wrong_password_is_refused(deployed: Deployed) -> None:
    d = deployed
    api = d.container(_app_containers(d, "api")[0])
    result = api.exec_run(["node", "-e", APP_TLS_CHECK], workdir="/app")
    assert result.exit_code == 0, result.output.decode()
    answers = json.loads(result.output.decode().strip().splitlines()[-1])
    pg_ok, pg_wrong, tunnel_ok, tunnel_wrong, direct_plain, direct_tls, s3 = answers
    assert pg_ok == "ok"
    assert pg_wrong == "28P01"  # invalid_password
    # REDIS_URL is plain text to 127.0.0.1:6379, the tunnel in the api's own namespace, which
    # speaks verified TLS to Redis: the password works through it and a wrong one is Redis's refusal.
    assert re.fullmatch(r"redis://default:[^@]+@127\.0\.0\.1:6379", api_env(api)["REDIS_URL"])
    assert tunnel_ok == "PONG", answers
    assert "WRONGPASS" in tunnel_wrong, answers
    # Straight to Redis from the same container: plain text fails (Redis speaks TLS only), while
    # TLS verified against the stack's CA answers (so it is the missing TLS that fails, not the route).
    assert direct_plain not in ("PONG",) and "WRONGPASS" not in direct_plain, answers
    assert direct_tls == "PONG", answers
    assert s3 == "200"


# The stand-in schema's table (standins/node/prisma); the drill's default query reads the app's.
DRILL_QUERY = "SELECT count(*) AS marker_rows FROM \"StandIn\" WHERE id = 'restore-drill'"
ROOT = Path(__file__).resolve().parents[2]


def _pgbackrest_info(container: docker.models.containers.Container) -> dict[str, Any]:
    result = container.exec_run(["pgbackrest", "--stanza=aixsss", "--output=json", "info"])
    assert result.exit_code == 0, result.output.decode()
    return json.loads(result.output)[0]


def test_postgres_archives_and_backs_up_to_the_store_and_the_restore_drill_passes(deployed: Deployed) -> None:
    """pgBackRest on the real daemon: the scheduler beside PostgreSQL was healthy (archiving
    reached the bundled store over TLS) and took the first full backup; a row written, then a
    differential backup as the schedule runs it; `make restore-drill` restores the newest backup
    into a scratch container on no network and finds the row."""
    d = deployed
    postgres, backups = d.container("postgres"), d.container("postgres-backups")
    deadline = time.monotonic() + 180
    while not (info := _pgbackrest_info(backups))["backup"]:
        assert time.monotonic() < deadline, (info, backups.logs()[-3000:].decode())
        time.sleep(2)
    assert [b["type"] for b in info["backup"]] == ["full"] and info["status"]["code"] == 0, info
    assert info["archive"] and info["archive"][0]["max"], info  # WAL reached the repository
    # Archiving never restarted the server: with the postmaster as PID 1, archive-push's orphaned
    # asynchronous process failing before stanza-create was taken for a crashed backend
    # ("server process (PID …) exited with exit code 103 … reinitializing", pgbackrest#2016).
    assert postgres.attrs["HostConfig"]["Init"] is True
    log = postgres.logs().decode(errors="replace")
    assert "terminating any other active server processes" not in log, log[-3000:]
    write = postgres.exec_run(
        ["psql", "-X", "-h", "/var/run/postgresql", "-U", "postgres", "-d", "aixsss", "-v", "ON_ERROR_STOP=1", "-c",
         'INSERT INTO "StandIn" (id) VALUES (\'restore-drill\')'])  # fmt: skip
    assert write.exit_code == 0, write.output.decode()
    diff = backups.exec_run(["pgbackrest", "--stanza=aixsss", "--type=diff", "backup"])
    assert diff.exit_code == 0, diff.output.decode()[-3000:]
    drill = subprocess.run(
        [str(ROOT / "scripts/restore-drill.sh"), d.stack],
        env={**os.environ, "DOCKER_HOST": d.host, "CHECK_QUERY": DRILL_QUERY},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert drill.returncode == 0, drill.stderr[-4000:]
    assert re.search(r"marker_rows\s*\n-+\n\s*1\n", drill.stdout), drill.stdout
    assert "drill passed" in drill.stderr
    # The drill left nothing behind.
    assert not d.client.containers.list(all=True, filters={"name": f"aixsss-{d.stack}-restore-drill"})
    assert not d.client.volumes.list(filters={"label": "aixsss.restore-drill=true"})


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``, else None."""
    for line in text.splitlines():
        found = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)(?:\s+\d+)?", line)
        if found and all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
            return float(found.group(2))
    return None


def test_prometheus_on_the_metrics_network_scrapes_every_exporter(deployed: Deployed) -> None:
    """What the stack tells the operator's Prometheus (the ``prometheus`` output), followed by a
    container of this test's own on the metrics network: every job answers, each exporter reads its
    service (PostgreSQL and Redis over verified TLS with the services' passwords, the edge's
    stub_status and status log over loopback, pgBackRest's repository over TLS), and from there
    nothing but the exporters' namespaces is reachable."""
    d = deployed
    out = reveal(d.deployment.outputs["prometheus"])
    # Requests for stub_status to count; the backup exporter collects at start and every 10 minutes,
    # so it is restarted once the first full backup exists (the backup test above waited for it).
    for _ in range(3):
        assert _https(d, "/api/health")[0] == 200
    assert _pgbackrest_info(d.container("postgres-backups"))["backup"], "no backup yet"
    d.container("postgres-backup-exporter").restart(timeout=5)
    scraper = d.client.containers.run(
        reveal(d.deployment.named("edge-image").inputs["name"]), ["sleep", "600"],
        name=f"aixsss-test-{d.stack}-prometheus", network=out["networks"][0], user="1000:1000", detach=True,
        labels={"aixsss-test": "prometheus"},
    )  # fmt: skip
    for network in out["networks"][1:]:  # as `docker network connect` joins a running Prometheus
        d.client.networks.get(network).connect(scraper)
    scraped: dict[str, str] = {}
    deadline = time.monotonic() + 60
    for job in out["scrapeConfigs"]:
        (target,) = job["static_configs"][0]["targets"]
        while True:
            got = scraper.exec_run(["curl", "-fsS", "--max-time", "5", f"http://{target}/metrics"])
            text = got.output.decode(errors="replace")
            ready = got.exit_code == 0 and (
                not job["job_name"].endswith("backup-exporter") or "pgbackrest_backup_since" in text
            )
            if ready or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert got.exit_code == 0, (job["job_name"], text[-1000:])
        scraped[job["job_name"].removeprefix(f"aixsss-{d.stack}-")] = text
    assert _metric(scraped["postgres-pg-exporter"], "pg_up") == 1
    assert (_metric(scraped["postgres-pg-exporter"], "pg_stat_archiver_archived_count") or 0) > 0
    age = _metric(scraped["postgres-backup-exporter"], "pgbackrest_backup_since_last_completion_seconds",
                  backup_type="full", stanza="aixsss")  # fmt: skip
    assert age is not None and 0 <= age < 3600, scraped["postgres-backup-exporter"]
    assert _metric(scraped["redis-exporter"], "redis_up") == 1
    assert _metric(scraped["redis-exporter"], "redis_evicted_keys_total") == 0
    assert _metric(scraped["edge-nginx-exporter"], "nginx_up") == 1
    # The status log carries no 200s, only 5xx and probes: the healthcheck's /healthz every 10 s,
    # the exporter's stub_status scrapes. Their lines reach mtail; stub_status counts the rest.
    assert (_metric(scraped["edge-mtail"], "edge_http_probes_total") or 0) >= 1
    assert (_metric(scraped["edge-nginx-exporter"], "nginx_http_requests_total") or 0) >= 3
    # The metrics networks reach the exporters' namespaces, and nothing else of the stack.
    for name, port in (("api", 3001), ("minio", 9000), ("web", 8080)):
        assert not _tcp_from(scraper, name, port), f"{name} is reachable from the metrics networks"
    for service in ("postgres", "redis", "edge"):
        assert _network(d, f"{service}-metrics")["Internal"] is True


def api_env(container: docker.models.containers.Container) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def test_api_and_worker_share_their_tunnels_namespace_which_listens_on_loopback_only(deployed: Deployed) -> None:
    d = deployed
    for service, zones in (("api", {"frontend", "backend", "egress"}), ("worker", {"backend", "egress"})):
        for name in _app_containers(d, service):
            app, tunnel = d.container(name), d.container(f"{name}-{TUNNEL}")
            # The daemon's view: the app joined the tunnel's namespace and has no network of its own;
            # the tunnel holds the service's networks, under the service's alias.
            assert app.attrs["HostConfig"]["NetworkMode"] == f"container:{tunnel.id}", name
            assert not app.attrs["NetworkSettings"]["Networks"], (name, app.attrs["NetworkSettings"]["Networks"])
            networks = tunnel.attrs["NetworkSettings"]["Networks"]
            assert {n.rsplit("-", 1)[1] for n in networks} == zones, (name, sorted(networks))
            assert all(service in (n["Aliases"] or []) for n in networks.values()), (name, networks)
            assert tunnel.attrs["State"]["Health"]["Status"] == "healthy", name
    # The tunnel's plain-text port is on loopback only: the api's address answers on its own port
    # (3001) from the worker's namespace, and not on 6379.
    api_name, worker = _app_containers(d, "api")[0], d.container(_app_containers(d, "worker")[0])
    backend = f"aixsss-{d.stack}-backend"
    address = d.container(f"{api_name}-{TUNNEL}").attrs["NetworkSettings"]["Networks"][backend]["IPAddress"]
    assert _tcp_from(worker, address, 3001), "control: the api answers on its backend address"
    assert not _tcp_from(worker, address, 6379), "the api's Redis tunnel is reachable from another container"


def test_the_workers_health_follows_its_tunnel(deployed: Deployed) -> None:
    """The worker's probe (a PING over REDIS_URL) fails while its tunnel is frozen, in a run by hand
    within the healthcheck's timeout and in the daemon's own health log, and passes again after."""
    d = deployed
    name = _app_containers(d, "worker")[0]
    worker, tunnel = d.container(name), d.container(f"{name}-{TUNNEL}")
    check = worker.attrs["Config"]["Healthcheck"]
    assert check["Test"][0] == "CMD"
    probe, timeout = check["Test"][1:], check["Timeout"] // 10**9
    by_hand = ["timeout", str(timeout), *probe]
    assert worker.exec_run(by_hand).exit_code == 0, "control: the probe passes with the tunnel up"
    tunnel.pause()  # nginx frozen: connections are accepted by the kernel, nothing answers
    try:
        assert worker.exec_run(by_hand).exit_code != 0, "the worker's probe passed without its tunnel"
        deadline = time.monotonic() + check["Interval"] // 10**9 + timeout + 10
        streak = 0
        while time.monotonic() < deadline:
            worker.reload()
            streak = worker.attrs["State"]["Health"]["FailingStreak"]
            if streak:
                break
            time.sleep(1)
        assert streak >= 1, ("the daemon's healthcheck kept passing", worker.attrs["State"]["Health"]["Log"][-2:])
    finally:
        tunnel.unpause()
    deadline = time.monotonic() + check["Interval"] // 10**9 + timeout + 10
    while time.monotonic() < deadline:
        worker.reload()
        if worker.attrs["State"]["Health"]["FailingStreak"] == 0 and worker.exec_run(by_hand).exit_code == 0:
            break
        time.sleep(1)
    assert worker.attrs["State"]["Health"]["FailingStreak"] == 0, worker.attrs["State"]["Health"]["Log"][-2:]
    assert worker.attrs["State"]["Health"]["Status"] == "healthy"


def test_the_worker_may_take_its_grace_period_to_stop(deployed: Deployed) -> None:
    """worker.stopGraceSeconds (180 by default) is the container's own stop timeout on the daemon
    (docker stop, daemon shutdown) and what a delete waits (destroy_grace_seconds)."""
    d = deployed
    grace = int(d.deployment.config.get("aixsss:worker.stopGraceSeconds", "180"))
    for name in _app_containers(d, "worker"):
        assert d.container(name).attrs["Config"]["StopTimeout"] == grace == 180, name
    for name in _app_containers(d, "api"):
        assert d.container(name).attrs["Config"].get("StopTimeout") is None, name  # the daemon's 10 s


# --------------------------------------------------------------------------- through the edge


def _https(d: Deployed, path: str, port: int = 443) -> tuple[int, bytes]:
    context = ssl.create_default_context(cadata=d.ca_pem)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    # The certificate is checked for the stack's domain (SNI and Host), reached on loopback.
    connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), 10), server_hostname=d.domain)
    connection.request("GET", path, headers={"Host": d.domain})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def _edge_ready_after(d: Deployed, bound: float = 60) -> float:
    """How long after the apply the edge first answered 200 for /api/health and for /."""
    started = time.monotonic()
    pending = {"/api/health", "/"}
    while pending and time.monotonic() - started < bound:
        for path in sorted(pending):
            try:
                if _https(d, path)[0] == 200:
                    pending.discard(path)
            except OSError:
                pass
        if pending:
            time.sleep(0.2)
    return time.monotonic() - started if not pending else float("inf")


def test_the_edge_answers_within_its_resolver_window_after_the_deploy(deployed: Deployed) -> None:
    """The edge starts beside api and web, waiting for neither (issue 14: the deploy's critical
    path): by the time the apply returns it reaches both (their route containers waited for it to
    take them), or does within a resolver window (resolver_valid_seconds, a bound kept from when
    the edge followed their names)."""
    (window,) = [f.default for f in dataclasses.fields(nginx.EdgeSettings) if f.name == "resolver_valid_seconds"]
    print(f"{deployed.stack}: the edge answered api and web {deployed.edge_ready_after:.1f}s after the apply")
    assert deployed.edge_ready_after <= window + 2, deployed.edge_ready_after


def test_the_edge_serves_api_and_web_over_https_and_redirects_http(deployed: Deployed) -> None:
    d = deployed
    status, body = _https(d, "/api/health")
    assert status == 200 and json.loads(body)["ok"] is True, body
    status, index = _https(d, "/")
    assert status == 200 and b"<html" in index.lower(), index[:200]
    # The web server's config the program delivers (SPA): a deep link gets index.html, a hashed
    # asset is served as itself, and a missing one is a 404, never index.html as JavaScript.
    status, body = _https(d, "/some/deep/link")
    assert (status, body) == (200, index), (status, body[:200])
    asset = re.search(rb'src="(/assets/[^"]+\.js)"', index)
    assert asset, index[:300]
    status, body = _https(d, asset.group(1).decode())
    assert status == 200 and b"<html" not in body.lower(), (status, body[:200])
    status, body = _https(d, "/assets/x-deadbeef.js")
    assert status == 404, (status, body[:200])
    plain = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
    plain.request("GET", "/api/health", headers={"Host": d.domain})
    response = plain.getresponse()
    assert response.status == 301 and response.getheader("Location") == f"https://{d.domain}/api/health"


class Load:
    """Clients on 127.0.0.1 calling through the edge while the stack is upgraded, as browsers do:
    kept-alive HTTPS connections, pages and API calls, and some slow API calls (GET and POST)
    that are in flight when an old api is stopped. Every response must be a 200; an exception
    (reset, timeout) counts as a failure too. The API calls stay under the edge's rate limit
    (edge.apiRatePerSecond, 10 per second per client address: all of these share one; these
    make about 5).

    A kept-alive connection the edge closed while idle (its old workers do, at each reload that
    takes a new set of instances) is handled as browsers and HTTP libraries handle it (RFC 9112
    9.3.1): one seen closed before it is reused is replaced (urllib3's is_connection_dropped),
    and a request that a reused connection lost before any byte of its answer is sent once more
    on a new one (Chromium's HttpNetworkTransaction::ShouldResendRequest: a reused connection, no
    response headers; for every method). Those are counted in ``resent``; any other error, and
    any such loss on a new connection, is a failure."""

    def __init__(self, d: Deployed) -> None:
        self.d = d
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: dict[str, int] = {}
        self.failed: list[tuple[str, str]] = []
        self.resent: dict[str, int] = {}
        # Slow calls: (method, started, ended, instance that answered).
        self.slow: list[tuple[str, float, float, str]] = []
        self.instances: list[tuple[float, str]] = []  # (when asked, api instance that answered)
        # While old and new instances are both listed, the edge splits calls between them: with
        # 8 slow calls in flight at an old front's stop, all 8 on new instances is a 1-in-256 chance.
        kinds = ("health", "page", "page", *("slow-get", "slow-post") * 4)
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in kinds]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _connect(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cadata=self.d.ca_pem)
        connection = http.client.HTTPSConnection("127.0.0.1", 443, context=context, timeout=30)
        sock = socket.create_connection(("127.0.0.1", 443), 10)
        connection.sock = context.wrap_socket(sock, server_hostname=self.d.domain)
        return connection

    def _run(self, kind: str) -> None:
        method, path, pause = {
            "health": ("GET", "/api/health", 0.5),
            "page": ("GET", "/", 0.02),
            "slow-get": ("GET", "/api/stand-in/slow?ms=3000", 0.0),
            "slow-post": ("POST", "/api/stand-in/slow?ms=3000", 0.0),
        }[kind]
        connection: http.client.HTTPSConnection | None = None
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                if connection is not None and _dropped(connection):
                    connection.close()
                    connection = None
                reused = connection is not None
                connection = connection or self._connect()
                body = b"{}" if method == "POST" else None
                try:
                    connection.request(method, path, body=body, headers={"Host": self.d.domain})
                    response = connection.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    connection.close()
                    with self.lock:
                        self.resent[kind] = self.resent.get(kind, 0) + 1
                    connection = self._connect()
                    connection.request(method, path, body=body, headers={"Host": self.d.domain})
                    response = connection.getresponse()
                content = response.read()
                if response.will_close:
                    connection.close()
                    connection = None
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {content[:120]!r}")
                with self.lock:
                    self.ok[kind] = self.ok.get(kind, 0) + 1
                    if kind == "health":
                        self.instances.append((began, json.loads(content)["instance"]))
                    elif kind.startswith("slow"):
                        instance = json.loads(content)["instance"]
                        self.slow.append((method, began, time.monotonic(), instance))
                        self.instances.append((began, instance))
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as err:
                with self.lock:
                    self.failed.append(
                        (kind, f"{time.monotonic() - began:.1f}s at {began:.1f}: {type(err).__name__}: {err}")
                    )
                if connection is not None:
                    connection.close()
                connection = None
            time.sleep(pause)
        if connection is not None:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection the server has closed (or sent something unasked on):
    readable before a request was sent (urllib3's util.connection.is_connection_dropped)."""
    sock = connection.sock
    return sock is None or bool(select.select([sock], [], [], 0)[0])


def _service_of(reg: Registration) -> str:
    return next((label["value"] for label in reg.plain.get("labels") or [] if label["label"] == "aixsss.service"), "")


def _frontend_addresses(d: Deployed) -> dict[str, str]:
    """Each api and web namespace's address on the frontend network, by container name."""
    frontend = f"aixsss-{d.stack}-frontend"
    found = {}
    for c in d.client.containers.list():
        networks = c.attrs["NetworkSettings"]["Networks"] or {}
        if c.labels.get("aixsss.service") in ("api", "web") and frontend in networks:
            found[c.name] = networks[frontend]["IPAddress"]
    return found


def _derived_image(d: Deployed, resource: str, tag: str) -> str:
    """A new release of ``resource``'s image: a different image id, not only another tag
    (pulumi-docker compares image ids, so a new tag of the same image rightly replaces nothing)."""
    current = reveal(d.deployment.named(resource).inputs["name"])
    dockerfile = f"FROM {current}\nLABEL org.opencontainers.image.version={tag.rsplit(':', 1)[1]}\n"
    d.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


def test_an_upgrade_of_api_and_web_fails_no_request(deployed: Deployed, image_cache: Path) -> None:
    """Issue 13: new api and web images with `pulumi up` (the applier), while clients call through
    the edge. The new sets start beside the old ones (their names carry a revision); once each
    is healthy, its route container tells the edge, which reloads onto it (its old workers finish
    what they started); the old sets are deleted after, dependents first: the api's draining front
    before the api. No request fails."""
    d = deployed
    new_api = _derived_image(d, "api-image", NEW_API)
    new_web = _derived_image(d, "web-image", NEW_WEB)
    old_names = {reveal(r.inputs["name"]) for r in _containers(d) if _service_of(r) in ("api", "web")}
    addresses = _frontend_addresses(d)
    replicas = len([r for r in _containers(d) if re.fullmatch(r"api(-\d+)?", r.name)])
    with Load(d) as load:
        # Every old api instance has answered before the upgrade: those are the old ones.
        deadline = time.monotonic() + 30
        while len({i for _, i in load.instances}) < replicas and time.monotonic() < deadline:
            time.sleep(0.2)
        before = {instance for _, instance in load.instances}
        assert len(before) == replicas, ("control: the load reaches every api", before, load.failed[:3])
        upgraded = program(d.stack, prior=d.deployment, **{"images.api": new_api, "images.web": new_web})
        began = time.monotonic()
        report = apply(d.host, d.applier, upgraded, image_cache)
        applied = time.monotonic()
        d.deployment = upgraded
        addresses |= _frontend_addresses(d)
        # Past the edge's resolver window and its kept-alive connections' lifetime.
        time.sleep(nginx.UPSTREAM_KEEPALIVE_TIME_SECONDS + 5)
    fronts = [(name, b, e) for resource, name, b, e in report.deletions if resource.endswith("-front")]
    # Slow calls an old instance was still answering once a new one had answered: the edge had
    # switched, and its old workers finished them there.
    newer = [when for when, instance in load.instances if instance not in before]
    assert newer, ("no new api instance answered", load.ok, load.failed[:5])
    switched = min(newer)
    drained = [s for s in load.slow if s[3] in before and s[2] > switched]
    after = {instance for when, instance in load.instances if when > applied + nginx.UPSTREAM_KEEPALIVE_TIME_SECONDS}
    print(
        f"{d.stack} upgrade of api and web: apply {applied - began:.0f}s; requests ok {load.ok}, failed "
        f"{len(load.failed)}, sent again on a new connection after the edge closed a kept-alive one "
        f"{load.resent}; slow calls an old api finished after the switch: {len(drained)} (all answered "
        f"200: {sorted({s[3][:8] for s in drained})}); api instances before {len(before)}, after {len(after)}"
    )
    if load.failed:  # what the edge saw, to tell a timeout on a gone address from a refusal
        edge = d.container(next(r.name for r in _containers(d) if re.fullmatch(r"edge(-\d+)?", r.name)))
        seen = edge.logs(stdout=False, stderr=True, since=int(time.time() - (time.monotonic() - began))).decode()
        print(f"apply began at {began:.1f}; failures: {load.failed}")
        print(f"frontend addresses: {addresses}\ndeletions: {report.deletions}\nedge errors:")
        print("\n".join(line for line in seen.splitlines() if "upstream" in line)[-6000:])
    assert load.failed == [], load.failed[:10]
    # A resend is a kept-alive connection an old edge worker closed at a reload (two per switch,
    # one switch each for api and web): at most once per client thread and reload, and never a
    # crashed worker.
    assert sum(load.resent.values()) <= len(load.threads) * 4, load.resent
    edge_log = d.container(next(r.name for r in _containers(d) if re.fullmatch(r"edge(-\d+)?", r.name))).logs()
    assert b"exited on signal" not in edge_log, edge_log[-2000:]
    apis = [r for r in _containers(d) if re.fullmatch(r"api(-\d+)?", r.name)]
    webs = [r for r in _containers(d) if re.fullmatch(r"web(-\d+)?", r.name)]
    assert {r.name for r in apis + webs} <= set(report.replaced), report
    assert "edge" not in report.replaced + report.created, report
    # The edge was told the new sets by their route containers, replaced delete-first.
    assert {"edge-routes-api", "edge-routes-web"} <= set(report.replaced), report
    # The old sets are gone, and the edge reaches only new instances now.
    remaining = {c.name for c in d.client.containers.list(all=True)}
    assert not old_names & remaining, sorted(old_names & remaining)
    assert after and not after & before, (before, after)
    # Each old api front went first among its set and drained what it had: calls in flight
    # when its stop began were answered (load.failed is empty) by the instance behind it.
    assert len(fronts) == len(apis), report.deletions
    assert drained, ("control: old apis had slow calls in flight at the switch", switched, load.slow[-8:])
    order = [resource for resource, *_ in report.deletions]
    for api in apis:
        assert order.index(f"{api.name}-front") < order.index(api.name) < order.index(f"{api.name}-{TUNNEL}"), order


# A client as the api's pool opens connections: a new one every 50 ms with the DATABASE_URL of the
# container it runs in (Prisma's dialect, lib/prisma-url.js), printing whom it logged in as or why not.
LOGIN_PROBE = (
    "const {Client}=require('pg');const {pgConfig}=require('./lib/prisma-url');"
    "const cfg=pgConfig(process.env.DATABASE_URL);"
    "(async()=>{for(;;){const c=new Client(cfg);"
    "try{await c.connect();const r=await c.query('select session_user');console.log('ok '+r.rows[0].session_user)}"
    "catch(e){console.log('err '+(e.code||'')+' '+e.message)}finally{c.end().catch(()=>{})}"
    "await new Promise(r=>setTimeout(r,50))}})()"
)
# Refusals of the credentials themselves (28P01 invalid_password, 28000 invalid_authorization_specification:
# pg_hba.conf's reject, a role that does not exist); anything else is the server being unavailable.
REFUSED = re.compile(r"^err (28P01|28000) ")
# The same for Redis, as the app's queue connects (ioredis with parseRedisUrl(REDIS_URL), through the
# tunnel): a new connection every 50 ms, AUTH and PING, printing which password it held (the first 8
# hex digits of its SHA-256) or why it failed.
REDIS_PROBE = (
    "const Redis=require('ioredis');const {parseRedisUrl}=require('./lib/redis-url');"
    "const cfg=parseRedisUrl(process.env.REDIS_URL);"
    "const held=require('crypto').createHash('sha256').update(cfg.password||'').digest('hex').slice(0,8);"
    "(async()=>{for(;;){const r=new Redis({...cfg,lazyConnect:true,maxRetriesPerRequest:0,"
    "retryStrategy:()=>null,enableOfflineQueue:false});r.on('error',()=>{});"
    "try{await r.connect();await r.ping();console.log('ok '+held)}"
    "catch(e){console.log('err '+e.message)}finally{r.disconnect()}"
    "await new Promise(r=>setTimeout(r,50))}})()"
)
# Redis's refusals of a password (ACL: WRONGPASS; no AUTH where one is required: NOAUTH).
REDIS_REFUSED = re.compile(r"^err .*(WRONGPASS|NOAUTH)")


def _held(url: str) -> str:
    """What REDIS_PROBE prints for the password in ``url`` (parseRedisUrl: WHATWG's, not decoded)."""
    password = url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    return hashlib.sha256(password.encode()).hexdigest()[:8]


def _current_app(d: Deployed, service: str) -> docker.models.containers.Container | None:
    """The newest running container of ``service`` itself (not its tunnel, front or carrier): a
    service replaced side by side has two for a while, under names that carry their revision."""
    running = d.client.containers.list(filters={"label": f"aixsss.service={service}", "status": "running"})
    apps = [c for c in running if "aixsss.io/role" not in c.labels]
    return max(apps, key=lambda c: c.attrs["Created"]) if apps else None


def _probe_logins(
    d: Deployed, service: str, lines: list[str], stop: threading.Event, script: str = LOGIN_PROBE
) -> None:
    """Run ``script`` in the running container of ``service``, and in its replacement once there
    is one, collecting its lines, until ``stop``."""
    while not stop.is_set():
        try:
            container = _current_app(d, service)
            if container is None:
                raise docker.errors.NotFound(service)
            run = d.client.api.exec_create(container.id, ["node", "-e", script], workdir="/app")
            buffered = ""
            for chunk in d.client.api.exec_start(run["Id"], stream=True):
                buffered += chunk.decode(errors="replace")
                *complete, buffered = buffered.split("\n")
                lines.extend(line for line in complete if line)
                if stop.is_set():
                    return
        except (docker.errors.NotFound, docker.errors.APIError):
            pass
        time.sleep(0.2)


# dev only: the mechanism is the same in every stack, and a rotation replaces most containers
# (about 3 minutes each on an idle machine, with the backup scheduler's first check), which three
# stacks would add to CI's hour. Last in the file: it leaves dev at generation 2.
@pytest.mark.parametrize("deployed", ["dev"], indirect=True)
def test_rotations_never_refuse_the_apis_logins_and_retire_the_role_before_the_previous(
    deployed: Deployed, image_cache: Path
) -> None:
    """secrets.rotation 0 -> 1 -> 2 with `pulumi up` (the applier), while the running api opens
    new connections: none is refused for its credentials (README: Secrets and rotation). api and
    worker are replaced side by side, so the previous generation's role stays while they drain:
    the first rotation retires nothing, the second retires generation 0. With backups on,
    PostgreSQL itself restarts (pgBackRest's keys rotate too): that is unavailability, counted
    apart (a connection attempt to a removed container may hang instead, uncounted)."""
    d = deployed
    first_url = api_env(d.container(_app_containers(d, "api")[0]))["DATABASE_URL"]
    for generation in (1, 2):
        _rotate(d, image_cache, generation)
    # Generation 0's credentials are refused now; generation 1's, the previous, still log in.
    api = d.container(_app_containers(d, "api")[0])
    once = LOGIN_PROBE.replace("for(;;)", "for(let i=0;i<1;i++)")
    old = api.exec_run(["node", "-e", once], workdir="/app", environment={"DATABASE_URL": first_url})
    assert REFUSED.match(old.output.decode().strip()), old.output


def _rotate(d: Deployed, image_cache: Path, generation: int) -> None:
    api = d.container(_app_containers(d, "api")[0])
    old_url = api_env(api)["DATABASE_URL"]
    old_redis = _held(api_env(api)["REDIS_URL"])
    old_role, new_role = f"aixsss_g{generation - 1}", f"aixsss_g{generation}"
    lines: list[str] = []
    redis_lines: list[str] = []
    stop = threading.Event()
    probes = [
        threading.Thread(target=_probe_logins, args=(d, "api", lines, stop), daemon=True),
        threading.Thread(target=_probe_logins, args=(d, "api", redis_lines, stop, REDIS_PROBE), daemon=True),
    ]
    for probe in probes:
        probe.start()
    started = time.monotonic()
    while not all(any(line.startswith("ok ") for line in got) for got in (lines, redis_lines)):
        assert time.monotonic() - started < 60, (lines[-3:], redis_lines[-3:])
        time.sleep(0.2)
    rotated = program(d.stack, prior=d.deployment, **{"secrets.rotation": str(generation)})
    report = apply(d.host, d.applier, rotated, image_cache)
    d.deployment = rotated
    new_redis = _held(api_env(d.container(_app_containers(d, "api")[0]))["REDIS_URL"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (f"ok {new_role}" in lines and f"ok {new_redis}" in redis_lines):
        time.sleep(0.2)
    time.sleep(2)
    stop.set()
    seen = list(lines)
    redis_seen = list(redis_lines)
    redis_refused = [line for line in redis_seen if REDIS_REFUSED.match(line)]
    by_slot = {slot: redis_seen.count(f"ok {slot}") for slot in (old_redis, new_redis)}
    redis_unavailable = [line for line in redis_seen if line.startswith("err") and not REDIS_REFUSED.match(line)]
    refused = [line for line in seen if REFUSED.match(line)]
    unavailable = [line for line in seen if line.startswith("err") and not REFUSED.match(line)]
    by_role = {role: sum(line == f"ok {role}" for line in seen) for role in (old_role, new_role)}
    print(
        f"{d.stack} rotation to {generation} in {time.monotonic() - started:.0f}s: logins {by_role}, refused "
        f"{len(refused)}, server unavailable {len(unavailable)} ({sorted({u[:60] for u in unavailable})[:3]})"
    )
    print(
        f"{d.stack} rotation to {generation}: redis connections by password {by_slot}, refused "
        f"{len(redis_refused)}, server unavailable {len(redis_unavailable)} "
        f"({sorted({u[:60] for u in redis_unavailable})[:3]})"
    )
    assert refused == [], refused[:5]
    assert by_role[old_role] > 0 and by_role[new_role] > 0, (by_role, seen[-5:])
    # Redis: two password slots; the old one stays accepted until the next rotation (README).
    assert old_redis != new_redis
    assert redis_refused == [], redis_refused[:5]
    assert by_slot[old_redis] > 0 and by_slot[new_redis] > 0, (by_slot, redis_seen[-5:])
    # A new release of each job (its config carrier is `<job>-config`, never started); the retire
    # job only once a generation older than the previous one exists.
    jobs = ("postgres-credentials", *(("postgres-retire-logins",) if generation >= 2 else ()))
    for job in jobs:
        (name,) = [n for n in report.created + report.replaced if re.fullmatch(rf"{job}-[0-9a-f]{{12}}", n)]
        assert report.exit_codes[name] == 0, (name, report.exit_codes)
    if generation < 2:
        assert not [n for n in report.created + report.replaced if n.startswith("postgres-retire-logins")], report
    # Afterwards: this generation's role and the previous one's, whose credentials still log in.
    postgres = d.container("postgres")
    query = "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname ~ '^aixsss_g'"
    socket_psql = ["psql", "-X", "-A", "-t", "-h", "/var/run/postgresql", "-U", "postgres", "-d", "aixsss"]
    roles = postgres.exec_run([*socket_psql, "-c", query])
    assert roles.exit_code == 0 and roles.output.decode().strip() == f"{old_role},{new_role}", roles.output
    once = LOGIN_PROBE.replace("for(;;)", "for(let i=0;i<1;i++)")
    previous = d.container(_app_containers(d, "api")[0]).exec_run(
        ["node", "-e", once], workdir="/app", environment={"DATABASE_URL": old_url}
    )
    assert previous.output.decode().strip() == f"ok {old_role}", previous.output
