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
Docker declares nothing for monitoring yet (issue 11): ``exporters_declared`` is false there,
so a Docker stack renders exactly what it rendered before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi

from components.conf import exporters
from components.conf.alerts import Thresholds, kubernetes_rules
from components.config import Resources, StackConfig, Target
from components.pki import Certificate
from components.spec import CONFIG_DIR, ConfigFile, Exporter, Security

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
# Where Docker stands (outputs and checklist say it as it is).
DOCKER_NOT_YET = "Docker: exporters not yet declared (issue 11)"


def exporters_declared(config: StackConfig) -> bool:
    """Whether the stack declares exporters, monitors and rules: monitoring.enabled on Kubernetes."""
    return config.monitoring.enabled and config.target is Target.KUBERNETES


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


def edge_exporters(config: StackConfig) -> tuple[Exporter, ...]:
    """nginx-prometheus-exporter on the edge's loopback stub_status listener, and mtail counting
    the status log nginx sends it over loopback UDP (the 5xx rate; exporters.py says why)."""
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
    # The PrometheusRule's spec (an Output: certificates' expiry is known once they exist).
    rules: pulumi.Input[dict[str, Any]]


class MonitoringPlatform(Protocol):
    namespace_name: str

    def monitor(self, spec: MonitoringSpec, parent: pulumi.Resource) -> list[pulumi.Resource]: ...


def targets_of(cluster_name: str, exporter_services: Mapping[str, Sequence[Exporter]]) -> tuple[ScrapeTarget, ...]:
    targets = [
        ScrapeTarget(
            cluster_name,
            {CNPG_CLUSTER_LABEL: cluster_name},
            (CNPG_METRICS_PORT,),
            "CloudNativePG instance manager: cnpg_* and the Barman Cloud plugin's backup metrics",
        )
    ]
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


def alert_rules(
    config: StackConfig, namespace: str, certificates: Mapping[str, pulumi.Input[str]]
) -> pulumi.Output[dict[str, Any]]:
    """kubernetes_rules for the stack: the backup schedule (daily) and retention from config, the
    program's certificates' expiry (pulumi-tls validity_end_time), backup alerts only with backups."""
    thresholds = Thresholds(backup_schedule_hours=24, retention_days=config.backup.retention_days)

    def render(ends: dict[str, str]) -> dict[str, Any]:
        spec = kubernetes_rules(namespace, thresholds, program_certificates=ends)
        if not config.backup.enabled:
            for group in spec["groups"]:
                group["rules"] = [r for r in group["rules"] if r.get("alert") not in BACKUP_ALERTS]
        return spec

    return pulumi.Output.all(**certificates).apply(render)


class Monitoring(pulumi.ComponentResource):
    """Scrape targets and alerting rules of the stack, placed by the platform."""

    def __init__(
        self,
        config: StackConfig,
        platform: MonitoringPlatform,
        cluster_name: str,
        exporter_services: Mapping[str, Sequence[Exporter]],
        certificates: Sequence[Certificate],
        ca_not_after: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("aixsss:monitoring:Monitoring", "monitoring", None, opts)
        expiry: dict[str, pulumi.Input[str]] = {"ca": ca_not_after}
        expiry.update({c.name: c.not_after for c in certificates})
        self.spec = MonitoringSpec(
            selector_labels=config.monitoring.labels,
            prometheus_namespace=config.monitoring.prometheus_namespace,
            targets=targets_of(cluster_name, exporter_services),
            rules=alert_rules(config, platform.namespace_name, expiry),
        )
        self.resources = platform.monitor(self.spec, self)
        self.register_outputs({})
