"""Metrics and alerts (issue 11, part 5): what the stack asks a platform to scrape and alert on.

Components describe, platforms place. This module describes:

- the exporters beside Redis and the edge (``spec.Exporter``, added to those services' specs);
- what Prometheus scrapes (``ScrapeTarget``: whose pods, which named ports), including
  CloudNativePG's instances, whose instance manager serves ``cnpg_*`` and the Barman Cloud
  plugin's ``barman_cloud_cloudnative_pg_io_*`` metrics on port 9187, ``metrics`` (the plugin's
  web/docs/observability.md: "through the native Prometheus exporter of the instance manager");
- the alerting rules (components/conf/alerts.py), with the expiry of every certificate the
  program issues rendered in;
- the labels a Prometheus Operator selects monitors and rules by, and the namespace its
  Prometheus scrapes from.

The Kubernetes platform places it (components/platforms/kubernetes_monitoring.py): PodMonitors,
a PrometheusRule, NetworkPolicies admitting only Prometheus's namespace to the metrics ports.

On a Docker host the same exporters run as containers in their service's network namespace
(``network_mode: container:<service>``, a pod's loopback), plus postgres_exporter and, with
backups, pgbackrest_exporter beside PostgreSQL (CloudNativePG exports its own on Kubernetes).
Prometheus is the operator's, as on Kubernetes: it joins each such service's internal metrics
network (``docker_metrics_network``) and scrapes ``<service>:<port>`` there; the networks, the
scrape configuration and the rule file are stack outputs (``docker_scrape_configs``,
``alerts.docker_rules``; docs/runbooks/monitoring.md#docker-single-host).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi

from components.conf import exporters
from components.conf.alerts import DOCKER_STACK_LABEL, Thresholds, docker_rules, kubernetes_rules
from components.conf.pgbackrest import CONFIG_PATH as PGBACKREST_CONFIG
from components.conf.pgbackrest import ENV_CONFIG as PGBACKREST_ENV_CONFIG
from components.config import Resources, StackConfig
from components.pki import Certificate
from components.spec import CONFIG_DIR, ConfigFile, Exporter, Security, secret_env

# Small and fixed: each exporter holds one connection or one counter set.
EXPORTER_RESOURCES = Resources(cpu_millis=50, memory_mb=64)
EXPORTER_SECURITY = Security(run_as_user=65532, run_as_group=65532, tmpfs=())
MTAIL_PROGS = f"{CONFIG_DIR}/mtail"
# CloudNativePG labels every pod of a Cluster with its name; the instances serve "metrics".
CNPG_CLUSTER_LABEL = "cnpg.io/cluster"
CNPG_METRICS_PORT = ("metrics", exporters.POSTGRES_EXPORTER_PORT)
# Alerts about base backups: without backups they would only say "no backup", forever.
BACKUP_ALERTS = frozenset(
    {
        "PostgresBackupTooOld",
        "PostgresBackupFailed",
        "PostgresBackupMetricsAbsent",
        "PostgresRecoveryWindowBeyondRetention",
    }
)
# The Docker networks Prometheus joins to scrape: one per service whose namespace runs exporters,
# internal, with no other member. One shared network would put the edge beside PostgreSQL and
# Redis, which the backend zone exists to prevent (tests/test_audit.py).
DOCKER_METRICS_NETWORK = "metrics"


def docker_metrics_network(environment: str, service: str) -> str:
    """The metrics network of ``service``'s namespace: ``aixsss-<environment>-<service>-metrics``."""
    return f"aixsss-{environment}-{service}-{DOCKER_METRICS_NETWORK}"


# How a scrape's client is named in the flows the platforms record: "prometheus (<where>)".
SCRAPER = "prometheus"


def exporters_declared(config: StackConfig) -> bool:
    """Whether the stack declares exporters, scrape targets and rules: monitoring.enabled."""
    return config.monitoring.enabled


def redis_exporter(config: StackConfig, ca_pem: pulumi.Input[str], port: int, password_key: str) -> Exporter:
    """redis_exporter in the Redis pod: verified TLS to 127.0.0.1 (an address the server
    certificate names), the password from the key ``password_key`` of Redis's own Secret."""
    return Exporter(
        name="exporter",
        image=config.images.redis_exporter,
        port=exporters.REDIS_EXPORTER_PORT,
        resources=EXPORTER_RESOURCES,
        security=EXPORTER_SECURITY,
        env=exporters.redis_exporter_env("127.0.0.1", port=port),
        env_from_service_secret={exporters.REDIS_PASSWORD_ENV: password_key},
        files=[ConfigFile(exporters.CA_PATH, ca_pem)],
        health_path="/health",
    )


def postgres_exporters(
    config: StackConfig,
    ca_pem: pulumi.Input[str],
    user: str,
    password: pulumi.Output[str],
    *,
    pgbackrest_files: Sequence[ConfigFile] = (),
    pgbackrest_secret_keys: Mapping[str, str] | None = None,
) -> tuple[Exporter, ...]:
    """The single-host PostgreSQL's exporters (Docker; CloudNativePG exports its own):
    postgres_exporter over verified TLS to 127.0.0.1 as the application's login role ``user``
    (pg_hba.conf admits no other; exporters.postgres_exporter_env says why) with its ``password``
    (the exporter's own secret: the server's container holds only the bootstrap password); with
    backups, pgbackrest_exporter reading the repository with pgBackRest's own
    configuration ``pgbackrest_files`` and the S3 keys of the service (``pgbackrest_secret_keys``,
    variable -> the service's key), the backup age the alerts read."""
    postgres = Exporter(
        name="pg-exporter",
        image=config.images.postgres_exporter,
        port=exporters.POSTGRES_EXPORTER_PORT,
        resources=EXPORTER_RESOURCES,
        security=EXPORTER_SECURITY,
        args=exporters.postgres_exporter_args(),
        env=exporters.postgres_exporter_env("127.0.0.1", user=user),
        secret_env=secret_env({exporters.POSTGRES_PASSWORD_ENV: password}),
        files=[ConfigFile(exporters.CA_PATH, ca_pem)],
    )
    if pgbackrest_secret_keys is None:
        return (postgres,)
    backups = Exporter(
        name="backup-exporter",
        image=config.images.pgbackrest_exporter,
        port=exporters.PGBACKREST_EXPORTER_PORT,
        resources=EXPORTER_RESOURCES,
        # pgBackRest takes a lock file under /tmp even for `info`.
        security=dataclasses.replace(EXPORTER_SECURITY, tmpfs=("/tmp",)),
        args=exporters.pgbackrest_exporter_args(),
        env={PGBACKREST_ENV_CONFIG: PGBACKREST_CONFIG},
        env_from_service_secret=dict(pgbackrest_secret_keys),
        files=[ConfigFile(exporters.CA_PATH, ca_pem), *pgbackrest_files],
    )
    return (postgres, backups)


def edge_exporters(config: StackConfig) -> tuple[Exporter, ...]:
    """nginx-prometheus-exporter on the edge's loopback stub_status listener (every request), and
    mtail counting the status log nginx sends it over loopback UDP (5xx answers and probes; the
    5xx rate, exporters.py says why)."""
    return (
        Exporter(
            name="nginx-exporter",
            image=config.images.nginx_exporter,
            port=exporters.NGINX_EXPORTER_PORT,
            resources=EXPORTER_RESOURCES,
            security=EXPORTER_SECURITY,
            args=exporters.nginx_exporter_args(),
        ),
        Exporter(
            name="mtail",
            image=config.images.mtail,
            port=exporters.MTAIL_PORT,
            resources=EXPORTER_RESOURCES,
            security=EXPORTER_SECURITY,
            args=exporters.mtail_args(MTAIL_PROGS),
            files=[ConfigFile(f"{MTAIL_PROGS}/edge.mtail", exporters.mtail_program())],
        ),
    )


@dataclass(frozen=True)
class ScrapeTarget:
    """Pods Prometheus scrapes: ``service``'s (NetworkPolicies select it by name), chosen by
    ``pod_labels``, at the named ``ports`` (name, number)."""

    service: str
    pod_labels: Mapping[str, str]
    ports: tuple[tuple[str, int], ...]
    what: str


@dataclass(frozen=True)
class MonitoringSpec:
    selector_labels: Mapping[str, str]
    prometheus_namespace: str
    targets: tuple[ScrapeTarget, ...]
    # The PrometheusRule's spec, or the Docker rule file's groups (an Output: certificates'
    # expiry is known once they exist).
    rules: pulumi.Input[dict[str, Any]]
    # Docker: Prometheus's scrape_configs for the targets on the metrics network (empty on
    # Kubernetes, where the platform declares PodMonitors).
    scrape_configs: tuple[dict[str, Any], ...] = ()


class MonitoringPlatform(Protocol):
    def monitor(self, spec: MonitoringSpec, parent: pulumi.Resource) -> list[pulumi.Resource]: ...


def targets_of(
    cluster_name: str | None, exporter_services: Mapping[str, Sequence[Exporter]]
) -> tuple[ScrapeTarget, ...]:
    """What Prometheus scrapes: CloudNativePG's instances (when an operator runs ``cluster_name``)
    and every service with exporters."""
    targets = []
    if cluster_name is not None:
        targets.append(
            ScrapeTarget(
                cluster_name,
                {CNPG_CLUSTER_LABEL: cluster_name},
                (CNPG_METRICS_PORT,),
                "CloudNativePG instance manager: cnpg_* and the Barman Cloud plugin's backup metrics",
            )
        )
    for service, found in exporter_services.items():
        if found:
            targets.append(
                ScrapeTarget(
                    service,
                    {"app.kubernetes.io/name": service},
                    tuple((e.name, e.port) for e in found),
                    ", ".join(e.name for e in found),
                )
            )
    return tuple(targets)


def docker_stack_label(config: StackConfig) -> dict[str, str]:
    """The label every Docker target carries and every Docker rule selects: one Prometheus may
    scrape several stacks' hosts."""
    return {DOCKER_STACK_LABEL: config.environment.value}


def docker_scrape_configs(config: StackConfig, targets: Sequence[ScrapeTarget]) -> tuple[dict[str, Any], ...]:
    """Prometheus ``scrape_configs`` for a Prometheus on the stack's metrics networks: a job per
    service and exporter (``aixsss-<stack>-<service>-<exporter>``) at the service's name there
    (the exporter shares its network namespace), labelled with the stack. Plain HTTP: each
    network is internal and holds only one service's namespace and the operator's Prometheus."""
    return tuple(
        {
            "job_name": f"aixsss-{config.environment.value}-{target.service}-{name}",
            "scrape_interval": "30s",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"{target.service}:{port}"], "labels": docker_stack_label(config)}],
        }
        for target in targets
        for name, port in target.ports
    )


def alert_rules(
    config: StackConfig, namespace: str | None, certificates: Mapping[str, pulumi.Input[str]]
) -> pulumi.Output[dict[str, Any]]:
    """The stack's alerting rules: kubernetes_rules for ``namespace``, or docker_rules selecting
    the stack's label; the backup schedule (daily) and retention from config, the program's
    certificates' expiry (pulumi-tls validity_end_time), backup alerts only with backups."""
    thresholds = Thresholds(backup_schedule_hours=24, retention_days=config.backup.retention_days)
    selector = ",".join(f'{k}="{v}"' for k, v in docker_stack_label(config).items())

    def render(ends: dict[str, str]) -> dict[str, Any]:
        if namespace is not None:
            spec = kubernetes_rules(namespace, thresholds, program_certificates=ends)
        else:
            spec = docker_rules(selector, thresholds, program_certificates=ends)
            # Rules on instants rendered in (the program's certificates) have no series to carry
            # the stack's label: every rule states it, so one Prometheus can tell stacks apart.
            for group in spec["groups"]:
                for rule in group["rules"]:
                    rule["labels"] = {**rule.get("labels", {}), **docker_stack_label(config)}
        if not config.backup.enabled:
            for group in spec["groups"]:
                group["rules"] = [r for r in group["rules"] if r.get("alert") not in BACKUP_ALERTS]
        return spec

    return pulumi.Output.all(**certificates).apply(render)


class Monitoring(pulumi.ComponentResource):
    """Scrape targets and alerting rules of the stack, placed by the platform. ``namespace``:
    the Kubernetes namespace the rules select; None on Docker (they select the stack's label)."""

    def __init__(
        self,
        config: StackConfig,
        platform: MonitoringPlatform,
        namespace: str | None,
        cluster_name: str | None,
        exporter_services: Mapping[str, Sequence[Exporter]],
        certificates: Sequence[Certificate],
        ca_not_after: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("aixsss:monitoring:Monitoring", "monitoring", None, opts)
        expiry: dict[str, pulumi.Input[str]] = {"ca": ca_not_after}
        expiry.update({c.name: c.not_after for c in certificates})
        targets = targets_of(cluster_name, exporter_services)
        self.spec = MonitoringSpec(
            selector_labels=config.monitoring.labels,
            prometheus_namespace=config.monitoring.prometheus_namespace,
            targets=targets,
            rules=alert_rules(config, namespace, expiry),
            scrape_configs=docker_scrape_configs(config, targets) if namespace is None else (),
        )
        self.resources = platform.monitor(self.spec, self)
        self.register_outputs({})
