"""The deployment guide's pre-deployment checklist (appendix E), one function per item.

Each item is decided from the declared resources rather than asserted, and its reason names
exactly what was checked and what was found, so an auditor can verify it against the rendered
resources.
"""

from __future__ import annotations

from typing import Any

from components import api as api_module
from components import cache as cache_module
from components.cache import redis_settings
from components.conf import pgbackrest, redis
from components.config import Target
from components.monitoring import BACKUP_ALERTS
from components.platforms.base import Placement, flows_of
from components.service import Service
from components.spec import Flow, Probe, ServiceSpec, Volume, Zone
from components.stack import AixsssStack

REQUIRED_API_SECRETS = ("JWT_SECRET", "API_KEY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")
Item = tuple[bool, str]  # ok, and the reason


def _data(stack: AixsssStack) -> list[Service]:
    """The data services the stack runs (an external object store is not one of them)."""
    return [s for s in (stack.database, stack.cache, stack.object_store) if s is not None]


def _placements(stack: AixsssStack) -> list[Placement]:
    """Every placed workload, the run-once jobs too: a migration's connection to Postgres is a
    flow into a data service like any other."""
    jobs = [stack.api.migrations] if stack.api.migrations is not None else []  # none on a rollback
    jobs += [stack.object_store.bootstrap] if stack.object_store else []
    # Kubernetes' act-as-owner Job logs in over the network (Docker's credentials jobs use the socket).
    jobs += [j for j in stack.database.credentials_jobs if j.spec.talks_to]
    return [s.placement for s in stack.services] + jobs


def _flow_text(flow: Flow) -> str:
    return f"{flow.client}->{flow.server}:{','.join(str(p.port) for p in flow.ports)}"


def _probe_text(probe: Probe, kubernetes: bool) -> str:
    """The check the platform runs: Docker healthchecks only run commands; Kubernetes prefers
    an HTTP or TCP probe when the spec gives one."""
    if kubernetes and probe.http_path is not None:
        return f"{probe.scheme} GET {probe.http_path} on {probe.port}"
    if kubernetes and probe.tcp:
        return f"TCP {probe.port}"
    program = next((w for w in " ".join(probe.command).split() if w not in ("sh", "/bin/sh", "-c")), "")
    return f"command {program}"


def secrets_injected(stack: AixsssStack) -> Item:
    api_secret = set(stack.api.spec.secret_env)
    missing = [k for k in REQUIRED_API_SECRETS if k not in api_secret]
    secrets_reason = (
        f"api's secret environment holds {', '.join(REQUIRED_API_SECRETS)}"
        if not missing
        else f"api's secret environment lacks {', '.join(missing)}"
    )
    return not missing, secrets_reason


def redis_auth_and_tls(stack: AixsssStack) -> Item:
    # Rendered with a placeholder password: the settings, not the secret, are what is checked.
    redis_conf = redis.render(redis_settings(stack.config, ("placeholder",))).splitlines()
    redis_lines = ["port 0", f"tls-port {cache_module.PORT}"]
    redis_found = [line for line in redis_lines if line in redis_conf]
    # The clients' user, on, with passwords (hashes), not nopass (redis.default_user): "user default".
    if any(line.startswith("user default on resetpass #") and "nopass" not in line for line in redis_conf):
        redis_found.append("user default")
    redis_missing = [line for line in [*redis_lines, "user default"] if line not in redis_found]
    redis_reason = (
        "redis.conf sets " + ", ".join(redis_found) + " (no plain-text port; clients authenticate)"
        if not redis_missing
        else f"redis.conf lacks {', '.join(redis_missing)}"
    )
    if redis_missing:
        return False, redis_reason
    # The app's client cannot speak TLS (APP.md): each client must run the verifying tunnel.
    tunnel_lines = ("proxy_ssl on;", "proxy_ssl_verify on;", "proxy_ssl_server_name on;")
    unprotected = []
    for client in (stack.api.spec, stack.worker.spec):
        tunnels = [c for c in client.sidecars if c.name == cache_module.TUNNEL]
        conf = [str(f.content) for t in tunnels for f in t.files if f.path == cache_module.TUNNEL_CONF]
        lines = {line.strip() for text in conf for line in text.splitlines()}
        if not conf or not all(line in lines for line in tunnel_lines):
            unprotected.append(client.name)
    if unprotected:
        return False, f"{redis_reason}; but {', '.join(unprotected)} has no verifying TLS tunnel to Redis"
    redis_reason += (
        "; api and worker connect through a TLS tunnel beside them (" + ", ".join(tunnel_lines) + " against "
        "the stack CA), so plain text stays on their own loopback"
    )
    return True, redis_reason


def minio_https(stack: AixsssStack) -> Item:
    store = stack.object_store
    if store is None:
        endpoint = stack.config.object_store.endpoint
        # The config model accepts only https:// for an external endpoint; its certificate is
        # checked by the clients against the public trust store.
        return endpoint.startswith("https://"), f"external S3 endpoint {endpoint} (objectStore.mode external), HTTPS"
    args = store.spec.args or []
    certs_dir = args[args.index("--certs-dir") + 1] if "--certs-dir" in args[:-1] else None
    files = {f.path: f for f in store.spec.files}
    minio_cert = next((c for c in stack.certificates if c.name == store.spec.name), None)
    public_crt = files.get(f"{certs_dir}/public.crt")
    cert_mounted = (
        minio_cert is not None
        and public_crt is not None
        and public_crt.content is minio_cert.cert_pem
        and f"{certs_dir}/private.key" in files
    )
    https = store.endpoint.startswith("https://")
    minio_ok = https and cert_mounted
    minio_reason = (
        f"minio's endpoint is {store.endpoint}; it runs with --certs-dir {certs_dir}, which holds "
        f"public.crt (the stack CA's {store.spec.name} certificate) and private.key"
        if minio_ok
        else f"minio's endpoint is {store.endpoint}; "
        + (
            "it runs without --certs-dir"
            if certs_dir is None
            else f"--certs-dir {certs_dir} lacks the stack CA's {store.spec.name} certificate or its key"
            if not cert_mounted
            else "its certificate is mounted"
        )
    )
    return minio_ok, minio_reason


def data_not_public(stack: AixsssStack) -> Item:
    data = _data(stack)
    data_list = ", ".join(d.spec.name for d in data)
    # What the platform actually published (Docker: host_ip:port->port; Kubernetes: a
    # LoadBalancer port), not what the spec asked for: Kubernetes publishes no data port.
    exposed = [f"{d.spec.name} {e}" for d in data for e in d.placement.exposed]
    public = [e for e in exposed if not e.split(" ", 1)[1].startswith("127.")]
    if not exposed:
        exposure_reason = f"{data_list} publish no port"
    elif not public:
        exposure_reason = f"published on loopback only: {', '.join(exposed)}"
    else:
        exposure_reason = f"published beyond loopback: {', '.join(public)}"
    return not public, exposure_reason


def volumes_declared(stack: AixsssStack) -> Item:
    kubernetes = stack.config.target.value == "kubernetes"
    data = _data(stack)

    def volumes_of(d: Service) -> list[Volume]:
        ha = d.spec.redis_ha
        volumes = [*ha.nodes.volumes, *ha.sentinels.volumes] if ha is not None else d.spec.volumes
        return [v for v in volumes if v.holds_data]

    missing_volumes = [d.spec.name for d in data if not volumes_of(d)]

    def kept_as(d: Service, v: Volume) -> str:
        cluster = d.placement.spec.cluster
        if kubernetes and cluster is not None:
            return (
                f"Cluster {d.spec.name}: a claim of {cluster.storage_gb}Gi per instance, {cluster.instances} "
                "instances, made by CloudNativePG"
            )
        ha = d.spec.redis_ha
        if kubernetes and ha is not None:
            # The HA set's members each have their own claim, from the StatefulSet's template.
            member = next(m for m in (ha.nodes, ha.sentinels) if v in m.volumes)
            return (
                f"StatefulSet {member.name}: a claim {v.name}-{member.name}-<n> of {v.size_gb}Gi per member, "
                f"{member.replicas} members"
            )
        if kubernetes:
            return f"PersistentVolumeClaim {d.spec.name}-{v.name} of {v.size_gb}Gi"
        return f"a Docker volume, which Docker does not cap, {v.size_gb} GB planned"

    kept = [f"{d.spec.name} {v.name} at {v.path} ({kept_as(d, v)})" for d in data for v in volumes_of(d)]
    storage_reason = "; ".join(kept) if not missing_volumes else f"no volume: {', '.join(missing_volumes)}"
    return not missing_volumes, storage_reason


def data_isolated(stack: AixsssStack) -> Item:
    data = _data(stack)
    data_names = [d.spec.name for d in data]
    data_list = ", ".join(data_names)
    # Isolated: data services sit only in the backend zone (Docker: an internal network with no
    # route out; Kubernetes: default-deny plus one policy pair per flow), and every flow into
    # them is TLS.
    # Docker publishes a port only from a container on a non-internal network, so a data service
    # that publishes one (dev's docker.publishDataPorts, loopback only) also joins a network of
    # published ports of its own (no other container on it): said here, not hidden behind its zone.
    docker = stack.config.target.value == "docker"
    published = [d.spec.name for d in data if docker and d.placement.exposed]
    # Docker: a data service with exporters in its namespace is on the metrics network too, where
    # Prometheus scrapes them (components/monitoring.py); also said, not hidden.
    scraped = [d.spec.name for d in data if docker and d.spec.exporters]
    outside = [
        f"{d.spec.name} ({', '.join(sorted(d.spec.zones))})" for d in data if set(d.spec.zones) != {Zone.BACKEND}
    ]
    placed = [p.spec for p in _placements(stack)]
    # The Redis HA set's nodes and Sentinels (placed with the proxy `redis`) are data services too.
    members = [m for s in placed if s.redis_ha is not None for m in (s.redis_ha.nodes, s.redis_ha.sentinels)]
    specs = {s.name: s for s in [*placed, *members]}
    into_data = sorted(
        (f for s in specs.values() for f in flows_of(s, specs) if f.server in data_names + [m.name for m in members]),
        key=_flow_text,
    )
    plain = [_flow_text(f) for f in into_data if not f.tls]
    isolation_reason = "; ".join(
        [
            f"{data_list} only in the backend zone"
            if not outside
            else f"outside the backend zone: {', '.join(outside)}",
            "every flow into them is TLS: " + ", ".join(_flow_text(f) for f in into_data)
            if not plain
            else f"plain-text flows into them: {', '.join(plain)}",
        ]
        + (
            [
                "published for the host, so also on a network of published ports of its own (not internal): "
                + ", ".join(published)
            ]
            if published
            else []
        )
        + (
            [
                "also each on an internal metrics network of its own (aixsss-<stack>-<service>-metrics), where "
                "Prometheus scrapes the exporters in their namespaces (plain HTTP, metrics only): " + ", ".join(scraped)
            ]
            if scraped
            else []
        )
    )
    return not outside and not plain, isolation_reason


def health_endpoint(stack: AixsssStack) -> Item:
    kubernetes = stack.config.target.value == "kubernetes"
    probe = stack.api.spec.probe
    # The spec is target-neutral: Kubernetes runs the HTTP probe, Docker runs the command, so
    # both must reach the health path for the stack to be right on either target.
    http_ok = probe is not None and probe.http_path == api_module.HEALTH_PATH and probe.port == api_module.PORT
    # The command asks the app on the port it listens on (PORT: on Docker a draining proxy holds
    # api.PORT and the app listens behind it, spec.Handover).
    command = " ".join(probe.command) if probe is not None else ""
    command_ok = f"process.env.PORT+'{api_module.HEALTH_PATH}'" in command
    api_probed = http_ok and command_ok
    serving = [s.placement.spec for s in stack.services if not s.spec.run_once]
    unprobed = [s.name for s in serving if s.probe is None]

    def check_of(s: ServiceSpec) -> str:
        if kubernetes and s.cluster is not None:
            # The operator's instance manager probes each instance (startup, /readyz, /healthz).
            return "CloudNativePG instance manager probes, the Cluster's Ready condition awaited"
        assert s.probe is not None
        return _probe_text(s.probe, kubernetes)

    probed = ", ".join(f"{s.name} ({check_of(s)})" for s in serving if s.probe is not None)
    health_reason = "; ".join(
        [
            f"api's health check requests {api_module.HEALTH_PATH}: as its HTTP probe on port {api_module.PORT}, "
            "as its command on the port the app listens on (PORT)"
            if api_probed
            else "no api health check"
            if probe is None
            else f"api's HTTP probe requests {probe.http_path} on port {probe.port}; its command "
            + ("requests" if command_ok else "does not request")
            + f" {api_module.HEALTH_PATH} on the port in PORT",
            f"health checks: {probed}" + (f"; none on {', '.join(unprobed)}" if unprobed else ""),
        ]
    )
    return api_probed and not unprobed, health_reason


def backups_declared(stack: AixsssStack) -> Item:
    """WAL archiving and scheduled base backups of PostgreSQL into a bucket of their own, as the
    database's spec declares them (the operator's cluster, or pgBackRest beside the container)."""
    config, database = stack.config, stack.database
    backup = database.backup
    if backup is None:
        return False, "backup.enabled is false: no WAL archiving and no scheduled backup is declared"
    spec = database.placement.spec
    where = f"s3://{backup.bucket}/{backup.server_name}/ at {backup.endpoint}"
    own_bucket = backup.bucket != config.object_store.bucket
    bucket = "a bucket of their own" if own_bucket else f"the app's bucket {config.object_store.bucket}"
    if spec.cluster is not None:
        ok = spec.cluster.backup is not None and own_bucket
        return ok, (
            f"CloudNativePG Cluster archives WAL through the Barman Cloud plugin to {where} ({bucket}); "
            f"ScheduledBackup at cron {backup.schedule!r}; retention {backup.retention}"
        )
    archiving = [line for line in database.settings.archive if line.startswith("archive_command")]
    scheduled = [c for c in spec.companions if c.command[-1] == pgbackrest.SCHEDULER_PATH]
    settings = database.pgbackrest
    ok = bool(archiving) and bool(scheduled) and settings is not None and own_bucket
    return ok, "; ".join(
        [
            f"postgresql.conf {archiving[0] if archiving else 'has no archive_command'} to {where} ({bucket})",
            f"{spec.name}-{scheduled[0].name} runs the pgBackRest schedule (full weekly, differential daily at "
            f"{config.backup.hour_utc:02d}:00 UTC)"
            if scheduled
            else "no backup scheduler beside the database",
            f"full backups kept {settings.retention_full_days} days" if settings else "no retention",
        ]
    )


def monitoring_declared(stack: AixsssStack) -> Item:
    """Exporters, scrape targets and alerting rules, as the stack declares them."""
    config = stack.config
    monitoring = stack.monitoring
    if monitoring is None:
        return False, "monitoring.enabled is false: no exporter, scrape target or alerting rule is declared"
    spec = monitoring.spec
    targets = "; ".join(
        f"{t.service} ({', '.join(f'{name}:{port}' for name, port in t.ports)}: {t.what})" for t in spec.targets
    )
    labels = ", ".join(f"{k}={v}" for k, v in spec.selector_labels.items()) or "none"
    backups = (
        "backup age and failures, "
        if config.backup.enabled
        else f"no backup alerts ({', '.join(sorted(BACKUP_ALERTS))}: backup.enabled false), "
    )
    if config.target is Target.DOCKER:
        return True, (
            f"exporters in their services' network namespaces: {targets}; {len(spec.scrape_configs)} scrape jobs "
            "on an internal metrics network per service (no two services share one) and a rule file (the "
            f"prometheus output): {backups}WAL archiving, PostgreSQL/Redis/edge down, Redis near "
            "maxmemory/evictions, edge 5xx rate, expiry of the program's certificates"
        )
    return True, (
        f"PodMonitors scrape {targets}; PrometheusRule aixsss-alerts: {backups}WAL archiving, replication lag, "
        "Redis down/near maxmemory/evictions, edge down/5xx rate, certificate expiry (cert-manager's and the "
        f"program's own); labels {labels}; metrics ports admitted from namespace {spec.prometheus_namespace} only"
    )


ITEMS = {
    "env.secretsGeneratedAndInjected": secrets_injected,
    "security.redisAuthAndTls": redis_auth_and_tls,
    "security.minioHttps": minio_https,
    "security.databaseNotPublic": data_not_public,
    "storage.volumesDeclared": volumes_declared,
    "network.dataIsolated": data_isolated,
    "health.endpoint": health_endpoint,
    "backup.archivedAndScheduled": backups_declared,
    "monitoring.metricsAndAlerts": monitoring_declared,
}


def checklist(stack: AixsssStack) -> dict[str, dict[str, Any]]:
    """Every item as ``{"ok": …, "reason": …}``."""
    results = {key: item(stack) for key, item in ITEMS.items()}
    return {key: {"ok": bool(ok), "reason": reason} for key, (ok, reason) in results.items()}
