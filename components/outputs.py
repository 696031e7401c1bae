"""The audit view: what an auditor reads from `pulumi stack output`; never a secret value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components import api as api_module
from components import cache as cache_module
from components import releases
from components.checklist import checklist
from components.conf.alerts import rule_file
from components.config import Target
from components.monitoring import docker_metrics_network
from components.platforms.base import Placement
from components.secrets import fingerprint
from components.stack import AixsssStack


@dataclass(frozen=True)
class _Hop:
    tls: str
    auth: str


# PostgreSQL's credentials jobs (one host): no network, the server's socket, peer authentication.
SOCKET_JOB = _Hop(
    tls="none needed: the server's Unix socket, no network", auth="peer (the server's OS user as the superuser)"
)
# CloudNativePG's act-as-owner Job: a client over the network, as the new generation's login role.
LOGIN_JOB = _Hop(
    tls="required (hostssl, verify-full against the stack CA)",
    auth="scram-sha-256 password (the new generation's login role)",
)


def _service_facts(service: Any, placement: Placement) -> dict[str, Any]:
    spec = placement.spec
    # An operator-managed cluster (Kubernetes) runs the operator's image, one pod per instance.
    image, replicas = (spec.cluster.image, spec.cluster.instances) if spec.cluster else (spec.image, spec.replicas)
    return {
        "image": image,
        "replicas": 0 if spec.run_once else replicas,
        "tls": service.tls,
        "auth": service.auth,
        "exposedPorts": placement.exposed,
        "networks": placement.networks,
        "talksTo": list(spec.talks_to),
        "nonRoot": placement.non_root,
        "readOnlyRootFs": placement.read_only_root,
        "limits": {"cpuMillis": spec.resources.cpu_millis, "memoryMb": spec.resources.memory_mb},
        "healthcheck": spec.probe is not None,
        # Helpers in the service's network namespace, e.g. the Redis TLS tunnel of api and worker.
        "sidecars": [{"name": c.name, "image": c.image, "listens": f"127.0.0.1:{c.port}"} for c in spec.sidecars],
    }


def _durability(stack: AixsssStack) -> dict[str, Any]:
    """Replicas, failover and backups per data service, as declared (not as observed)."""
    config = stack.config
    backup = stack.database.backup
    database: dict[str, Any] = {
        "instances": config.database.instances,
        "failover": "CloudNativePG promotes a standby" if config.database.instances > 1 else "none (one instance)",
        "synchronousReplicas": config.database.synchronous_replicas,
    }
    if backup is not None and stack.database.pgbackrest is not None:
        s = stack.database.pgbackrest
        database["backups"] = {
            "wal": "continuous archiving (pgBackRest archive-push, asynchronous)",
            "base": f"full on Sundays, differential on other days, at {config.backup.hour_utc:02d}:00 UTC "
            "(pgBackRest, by the postgres-backups container); a first full backup when the repository has none",
            "destination": f"s3://{backup.bucket}{s.repo_path}/ at {backup.endpoint}",
            "retention": f"full backups for {s.retention_full_days} days, with the WAL they need",
            "rpo": f"up to {s.archive_timeout_seconds} seconds of commits (archive_timeout) when the host's disk is "
            "lost; none while it is not",
            "restore": "make restore-drill STACK=<stack> checks the newest backup; point-in-time restore: "
            "docs/runbooks/backup-restore.md (Docker)",
        }
    elif backup is not None:
        database["backups"] = {
            "wal": "continuous archiving (Barman Cloud plugin)",
            "base": f"daily at {config.backup.hour_utc:02d}:00 UTC",
            "destination": f"s3://{backup.bucket}/{backup.server_name}/ at {backup.endpoint}",
            "retention": backup.retention,
            # A WAL segment is archived when full, or after archive_timeout (CloudNativePG: 5 min).
            "rpo": "up to 5 minutes of commits when the primary is lost with its disk; 0 for a failover with "
            "synchronous replicas",
            "restore": "backup.restoreFrom + backup.restoreTargetTime (docs/runbooks/backup-restore.md)",
        }
        if config.backup.restore_from:
            database["restoredFrom"] = {
                "serverName": config.backup.restore_from,
                "targetTime": config.backup.restore_target_time or "latest",
            }
    else:
        database["backups"] = "disabled (backup.enabled false)"
    return {
        "database": database,
        "redis": _redis_durability(stack),
        "monitoring": _monitoring(stack),
    }


def _redis_durability(stack: AixsssStack) -> dict[str, Any]:
    if not stack.config.cache.high_availability:
        return {"instances": 1, "failover": "none", "persistence": "AOF, fsync every second"}
    return {
        "instances": cache_module.NODES,
        "sentinels": cache_module.SENTINELS,
        "failover": "Sentinel promotes a replica; HAProxy routes to the primary",
        "persistence": "AOF, fsync every second, on each node's own volume; replicas copy the primary over TLS",
        # docs/runbooks/redis-failover.md, measured by tests/test_redis_failover.py.
        "failoverCost": "measured with the primary killed (real redis-server, Sentinel and HAProxy, the app's "
        "BullMQ client): enqueues paused 5.2-7.1 s (bound asserted: 16 s) and were delayed, not refused; no "
        "acknowledged job missing and the jobs in flight finished once. Asynchronous replication: jobs added in "
        "the last instant before a crash may be missing on the new primary (docs/runbooks/redis-failover.md)",
    }


def _monitoring(stack: AixsssStack) -> str:
    if stack.monitoring is None:
        return "disabled (monitoring.enabled false)"
    services = ", ".join(t.service for t in stack.monitoring.spec.targets)
    if stack.config.target is Target.DOCKER:
        return (
            f"exporters in the namespaces of {services}, each scraped on a metrics network of its own; "
            "networks, scrape configuration and rule file: the prometheus output "
            "(docs/runbooks/monitoring.md#docker-single-host)"
        )
    return f"PodMonitors for {services}; PrometheusRule aixsss-alerts (docs/runbooks/monitoring.md)"


def _prometheus(stack: AixsssStack) -> dict[str, Any] | None:
    """Docker: what the operator's Prometheus needs, in its own formats: the networks to join, the
    ``scrape_configs`` entries, and the rule file (``rule_files:``) with the alerts."""
    if stack.monitoring is None or stack.config.target is not Target.DOCKER:
        return None
    spec = stack.monitoring.spec
    return {
        "networks": [docker_metrics_network(stack.config.environment, t.service) for t in spec.targets],
        "scrapeConfigs": list(spec.scrape_configs),
        "ruleFile": pulumi.Output.from_input(spec.rules).apply(rule_file),
    }


def export(stack: AixsssStack) -> None:
    config = stack.config
    origin = config.public_origin
    pulumi.export("environment", config.environment.value)
    pulumi.export("target", config.target.value)
    pulumi.export(
        "endpoints", {"site": origin + "/", "api": origin + "/api", "health": origin + api_module.HEALTH_PATH}
    )
    services = {s.spec.name: _service_facts(s, s.placement) for s in stack.services}
    if stack.api.migrations is not None:  # a rollback declares no migration job
        services["api-migrate"] = _service_facts(stack.api, stack.api.migrations)
    if stack.object_store is not None:
        services["minio-bootstrap"] = _service_facts(stack.object_store, stack.object_store.bootstrap)
    for job in stack.database.credentials_jobs:
        # A job that talks to postgres reaches it over the network; the others use its socket.
        services[job.spec.name] = _service_facts(LOGIN_JOB if job.spec.talks_to else SOCKET_JOB, job)
    ha = stack.cache.spec.redis_ha
    if ha is not None:
        # The HA Redis set's members, placed with HAProxy (`redis`), in the same namespace.
        for member in (ha.nodes, ha.sentinels):
            services[member.name] = _service_facts(
                stack.cache,
                Placement(
                    spec=member,
                    ready=[],
                    networks=stack.cache.placement.networks,
                    exposed=[],
                    non_root=True,
                    read_only_root=member.security.read_only_root,
                ),
            )
    store = config.object_store
    pulumi.export(
        "objectStore",
        {
            "mode": store.mode,
            "endpoint": stack.object_store.endpoint if stack.object_store else store.endpoint,
            "bucket": store.bucket,
            # The application at the deployed commit reads no S3 setting (APP.md): the store is
            # provisioned for it, and nothing waits for it.
            "usedByApp": False,
        },
    )
    pulumi.export("images", {name: facts["image"] for name, facts in services.items()})
    # Where each application image comes from: built here from app.source, or given by reference.
    pulumi.export("imageOrigins", {i.name: i.origin for i in (stack.api.image, stack.worker.image, stack.web.image)})
    pulumi.export("services", services)
    # Releases as data: what runs, the schema it runs on, and the recorded history with this
    # deploy last (bounded); `make release` writes that entry back into the stack file.
    app = {i.name: i.ref for i in (stack.api.image, stack.worker.image, stack.web.image)}
    pulumi.export("releases", releases.output(config, stack.api.release, app))
    pulumi.export(
        "certificates",
        [
            {
                "name": c.name,
                "subject": f"CN={c.common_name}, O=AIXSSS",
                "sans": c.dns_names,
                "issuer": c.issuer,
                "notAfter": c.not_after,
            }
            for c in stack.certificates
        ]
        + [
            {
                "name": "ca",
                "subject": f"CN={stack.pki.ca_subject}, O=AIXSSS",
                "sans": [],
                "issuer": stack.pki.ca_subject,
                "notAfter": stack.pki.ca_not_after,
            }
        ],
    )
    pulumi.export("publicCertificate", config.tls.public_certificate)
    pulumi.export("durability", _durability(stack))
    prometheus = _prometheus(stack)
    if prometheus is not None:
        pulumi.export("prometheus", prometheus)
    pulumi.export("secretInventory", {name: fingerprint(value) for name, value in stack.secrets.inventory.items()})
    pulumi.export("checklist", checklist(stack))
    # Connection strings only as secrets, for operators who need them (`--show-secrets`).
    pulumi.export("databaseUrl", pulumi.Output.secret(stack.database.url))
    pulumi.export("redisUrl", pulumi.Output.secret(stack.cache.url))
