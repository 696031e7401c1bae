"""The exporters beside PostgreSQL, Redis and the nginx edge: images, command lines, environment
and the nginx snippets they read. Pure renderers; the platforms place them (a sidecar and a
PodMonitor target on Kubernetes; on Docker a container in the service's network namespace,
scraped on a metrics network of that service's own).

Images, each an upstream release checked in the project's own repository (tag and release
workflow; snapshots of 2026-08):

- postgres_exporter v0.20.1 (prometheus-community/postgres_exporter; its CI pushes
  ``quay.io/prometheuscommunity/postgres-exporter:<tag>``). Docker only: on Kubernetes
  CloudNativePG's instance manager exports its own ``cnpg_*`` metrics on port 9187.
- redis_exporter v1.88.0 (oliver006/redis_exporter; release.yml tags ``oliver006/redis_exporter``
  with the git tag, ``v1.88.0``).
- nginx-prometheus-exporter 1.5.3 (nginx/nginx-prometheus-exporter; release.yml tags the version
  without ``v``).
- mtail 3.0.9 (google/mtail; goreleaser pushes ``ghcr.io/google/mtail:<version>``): the edge's
  5xx answers and its requests that are not traffic, see below.
- pgbackrest_exporter v0.23.0 (woblerr/pgbackrest_exporter; build.yml tags the git tag): the
  age of the last pgBackRest backup on a Docker host. Not in Debian: the real-daemon tier scrapes
  a thin stand-in with its flags and that metric (tests/realdocker/standins/exporters).

The real-server tests (tests/test_exporters.py) run Debian 12's builds of the first four
(postgres_exporter 0.11.1, redis_exporter 1.45.0, nginx-prometheus-exporter 0.11.0, mtail
3.0.0~rc50) with exactly these flags and environment variables; each name used here exists in
both the Debian and the pinned release (checked in the sources at both tags).

Why mtail for the edge's 5xx rate: nginx's open-source ``stub_status`` (all that
nginx-prometheus-exporter reads without NGINX Plus) counts connections and requests, never
status codes. Real nginx can tell the status only in its log, so the edge sends a one-field log
line over syslog (UDP on loopback) to mtail for each 5xx answer, and one for each request that
is not traffic (health probes, stub_status scrapes); the total is stub_status's own count, which
costs nothing per request. A line per request cost the edge 3 to 12 % more CPU per API call
(issue 14; more with mtail reading each datagram on the same machine): a UDP datagram, one
``send()``, per request, and nginx cannot buffer syslog output ("logs to syslog cannot be
buffered", ngx_http_log_module.c); the alert needs only the 5xx. Other
ways were weighed: njs shared dictionaries would count inside nginx (the image ships njs) but
Debian 12's njs 0.7.9 predates ``js_shared_dict_zone`` (0.8.0), so nothing here could run it;
an ingress or gateway controller's own metrics have codes, but which one a cluster runs is not
the program's to know, and the Docker host has none.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.conf.pgbackrest import CONFIG_PATH as PGBACKREST_CONFIG

POSTGRES_EXPORTER_IMAGE = "quay.io/prometheuscommunity/postgres-exporter:v0.20.1"
REDIS_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.88.0"
NGINX_EXPORTER_IMAGE = "nginx/nginx-prometheus-exporter:1.5.3"
MTAIL_IMAGE = "ghcr.io/google/mtail:3.0.9"
PGBACKREST_EXPORTER_IMAGE = "woblerr/pgbackrest_exporter:v0.23.0"

# Each exporter's conventional port (its own default), named for Service/PodMonitor ports.
POSTGRES_EXPORTER_PORT = 9187  # also CloudNativePG's instance manager ("metrics")
REDIS_EXPORTER_PORT = 9121
NGINX_EXPORTER_PORT = 9113
MTAIL_PORT = 3903
PGBACKREST_EXPORTER_PORT = 9854

CA_PATH = "/etc/aixsss/tls/ca.crt"

# The variables that carry a secret: the platform fills them from the stack's secrets (a Secret
# key on Kubernetes, secret env on Docker), never from a rendered file.
POSTGRES_PASSWORD_ENV = "DATA_SOURCE_PASS"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"

# ------------------------------------------------------------------------------- PostgreSQL


def postgres_exporter_env(
    host: str, *, port: int = 5432, database: str = "aixsss", user: str = "aixsss", ca_path: str = CA_PATH
) -> dict[str, str]:
    """postgres_exporter's connection, password excepted (``POSTGRES_PASSWORD_ENV``).

    DATA_SOURCE_URI + _USER + _PASS rather than one DATA_SOURCE_NAME: the password stays a secret
    variable of its own instead of a part of a URL that also names the host. lib/pq verifies the
    server's certificate against the stack CA and its name against ``host`` (verify-full), as the
    application's own client does; pg_hba.conf refuses anything but TLS anyway.

    ``user`` and ``database`` default to the application's: pg_hba.conf admits that role to that
    database only, and every view the alerts read (pg_stat_archiver) is readable by any role. A
    role of its own with ``pg_monitor`` would see more (other sessions' queries) and need a
    pg_hba line of its own.
    """
    return {
        "DATA_SOURCE_URI": f"{host}:{port}/{database}?sslmode=verify-full&sslrootcert={ca_path}",
        "DATA_SOURCE_USER": user,
    }


def postgres_exporter_args(listen: str = f":{POSTGRES_EXPORTER_PORT}") -> list[str]:
    # A flag, not PG_EXPORTER_WEB_LISTEN_ADDRESS: releases after 0.11 read the address only
    # from the flag (exporter-toolkit).
    return [f"--web.listen-address={listen}"]


# The image's entrypoint (ghcr.io/woblerr/pgbackrest's entrypoint.sh) execs its arguments when not
# root, and the image runs the binary from there (woblerr/pgbackrest_exporter Dockerfile, CMD
# /run_exporter.sh, which builds the flags from variables): the program passes the binary and its
# flags itself, so the flags are the ones below and nothing else.
PGBACKREST_EXPORTER_BINARY = "/etc/pgbackrest/pgbackrest_exporter"


def pgbackrest_exporter_args(
    stanza: str = "aixsss",
    *,
    config: str = PGBACKREST_CONFIG,
    interval_seconds: int = 600,
    listen: str = f":{PGBACKREST_EXPORTER_PORT}",
) -> list[str]:
    """pgbackrest_exporter's command line on a Docker host (the binary, then its flags): it runs
    ``pgbackrest info`` every ``interval_seconds``
    with the backup container's configuration (and its S3 keys, as the same PGBACKREST_ secret
    env), and exports ``pgbackrest_backup_since_last_completion_seconds``, which the backup-age
    alert reads. Its figures are up to ``interval_seconds`` old: the alert's margin covers that."""
    return [
        PGBACKREST_EXPORTER_BINARY,
        f"--backrest.config={config}",
        f"--backrest.stanza-include={stanza}",
        f"--collect.interval={interval_seconds}",
        f"--web.listen-address={listen}",
    ]


# ------------------------------------------------------------------------------------ Redis


def redis_exporter_env(
    host: str, *, port: int = 6379, ca_path: str = CA_PATH, listen: str = f":{REDIS_EXPORTER_PORT}"
) -> dict[str, str]:
    """redis_exporter's connection, password excepted (``REDIS_PASSWORD_ENV``).

    ``rediss://``: TLS, the only listener Redis has; the CA file makes the exporter verify the
    server's certificate (and its name against ``host``) instead of trusting any. Environment
    variables rather than flags: every one is read the same way by 1.45 and 1.88.
    """
    return {
        "REDIS_ADDR": f"rediss://{host}:{port}",
        "REDIS_EXPORTER_TLS_CA_CERT_FILE": ca_path,
        "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": listen,
    }


# ------------------------------------------------------------------------------------ nginx

STUB_STATUS_LISTEN = "127.0.0.1:8081"
STUB_STATUS_PATH = "/stub_status"
STATUS_LOG_SERVER = "127.0.0.1:5140"
STATUS_LOG_TAG = "aixsss_edge"
STATUS_LOG_FORMAT = "aixsss_status"
PROBE_LOG_FORMAT = "aixsss_probe"
# 1 for the statuses the status log sends (5xx), 0 for the rest: access_log's if= skips a request
# whose condition is 0 before it formats anything.
STATUS_LOG_CONDITION = "$aixsss_status_logged"
EDGE_RESPONSES_METRIC = "edge_http_responses_total"
EDGE_PROBES_METRIC = "edge_http_probes_total"
# stub_status's count of every request the edge read (nginx-prometheus-exporter 0.11 and 1.5.3).
EDGE_REQUESTS_METRIC = "nginx_http_requests_total"


def stub_status_server(
    listen: str = STUB_STATUS_LISTEN, *, path: str = STUB_STATUS_PATH, allow: Sequence[str] = ("127.0.0.1",)
) -> list[str]:
    """A server block (inside ``http {}``) for nginx-prometheus-exporter: ``stub_status`` on a
    listener of its own, on loopback by default, so only a process in the edge's network
    namespace reads it (the exporter as a sidecar in the pod; on Docker a container started with
    the edge's network, ``network_mode: container:<edge>``). ``allow``/``deny`` repeat the rule
    should the listener ever bind wider. Scrapes are not traffic, yet stub_status counts them
    among its requests: they stay out of the edge's log and go to the status log as probes
    (``probe_log``), which the alert takes out of the total."""
    rules = " ".join(f"allow {a};" for a in allow)
    return [
        "  server {",
        f"    listen {listen};",
        f"    {probe_log()}",
        f"    location = {path} {{ stub_status; {rules} deny all; }}",
        "    location / { return 404; }",
        "  }",
    ]


def _syslog(server: str, tag: str) -> str:
    return f"syslog:server={server},tag={tag},nohostname"


def status_log(server: str = STATUS_LOG_SERVER, *, tag: str = STATUS_LOG_TAG) -> list[str]:
    """http-level lines that send each 5xx answer's status to mtail over syslog (UDP), in addition
    to the access log the edge already writes (access_log directives on one level add up); and
    the format of the probes' lines (``probe_log``).

    Only 5xx, the one class the alert reads: any other answer costs a map lookup and no datagram.
    The alert's total is stub_status's request count (``EDGE_REQUESTS_METRIC``) less the probes.

    Each format ends in a literal newline (the string spans two lines of nginx.conf): mtail splits
    datagrams into lines at "\\n" and holds a line without one until the next arrives, and
    nginx's syslog messages carry none. ``nohostname``: the tag follows the timestamp directly,
    which mtail's pattern anchors on. UDP on loopback: a lost datagram costs one count, never a
    request; nginx resolves the address once at start, so it is a literal loopback address.
    """
    return [
        f"  map $status {STATUS_LOG_CONDITION} {{",
        "    ~^5 1;",
        "    default 0;",
        "  }",
        f"  log_format {STATUS_LOG_FORMAT} 'status=$status",
        "';",
        f"  log_format {PROBE_LOG_FORMAT} 'probe",
        "';",
        f"  access_log {_syslog(server, tag)} {STATUS_LOG_FORMAT} if={STATUS_LOG_CONDITION};",
    ]


def probe_log(server: str = STATUS_LOG_SERVER, *, tag: str = STATUS_LOG_TAG) -> str:
    """The access_log of a location or server whose requests are not traffic (/healthz, the
    stub_status listener): a status-log line each, so the alert can take them out of
    stub_status's count. Set there, it replaces the inherited logs (no line on stdout, no status
    line), as ``access_log off`` did. Probes come every few seconds: their datagrams cost
    nothing measurable."""
    return f"access_log {_syslog(server, tag)} {PROBE_LOG_FORMAT};"


def mtail_program(tag: str = STATUS_LOG_TAG) -> str:
    """The mtail program (one file in ``--progs``): answers by status class, a counter with label
    ``status_class`` (the status log sends only 5xx, so ``5xx`` is its one series), and the
    requests that are not traffic, a counter without labels (exported as 0 from the start, so the
    alert's subtraction has a series before the first probe: mtail initialises scalar counters,
    internal/runtime/compiler/codegen/codegen.go in rc50 and 3.0.9)."""
    return "\n".join(
        [
            "# Generated by the aixsss Pulumi program: the edge's 5xx answers and its probes.",
            f"counter {EDGE_RESPONSES_METRIC} by status_class",
            f"counter {EDGE_PROBES_METRIC}",
            f"/ {tag}: status=(?P<class>[1-5])\\d\\d$/ {{",
            f'  {EDGE_RESPONSES_METRIC}[$class + "xx"]++',
            "}",
            f"/ {tag}: probe$/ {{",
            f"  {EDGE_PROBES_METRIC}++",
            "}",
            "",
        ]
    )


def mtail_args(
    progs: str = "/etc/mtail", *, status_log_listen: str = STATUS_LOG_SERVER, port: int = MTAIL_PORT, address: str = ""
) -> list[str]:
    """mtail reading the status log from UDP; its /metrics on ``address`` (empty: every
    interface, as Prometheus scrapes a sidecar at the pod's address) and ``port``."""
    listen = ["--address", address] if address else []
    return ["--progs", progs, "--logs", f"udp://{status_log_listen}", *listen, "--port", str(port), "--logtostderr"]


def nginx_exporter_args(
    scrape_uri: str = f"http://{STUB_STATUS_LISTEN}{STUB_STATUS_PATH}", *, listen: str = f":{NGINX_EXPORTER_PORT}"
) -> list[str]:
    # Double-dash long flags: the only spelling 1.x (kingpin) accepts; 0.11 (Go's flag) takes both.
    return [f"--nginx.scrape-uri={scrape_uri}", f"--web.listen-address={listen}"]
