"""Alerting rules for the stack: the ``spec`` of a PrometheusRule on Kubernetes, and the same
alerts as a Prometheus rule file for a Docker host, where other exporters name the metrics.

Every alert carries a ``severity`` label and ``summary``, ``description`` and ``runbook_url``
annotations; each runbook_url is a section of docs/runbooks/monitoring.md named after the alert.
Annotations use only ``{{ $labels.… }}`` and the thresholds rendered in, so the rule unit tests
(tests/test_alerts.py, ``promtool test rules``) compare them exactly.

Where each metric name was checked (sources of 2026-08, the versions the program pins):

- CloudNativePG (cloudnative-pg a95a534, v1.30.0+): ``cnpg_pg_stat_archiver_*`` and
  ``cnpg_pg_replication_*`` come from the operator's default queries
  (config/manager/default-monitoring.yaml: queries ``pg_stat_archiver``, ``pg_replication``,
  exported as ``cnpg_<query>_<column>``); ``cnpg_collector_up`` from docs/src/monitoring.md.
- Backups: docs/src/monitoring.md marks ``cnpg_collector_last_available_backup_timestamp``,
  ``…_last_failed_backup_timestamp`` and ``…_first_recoverability_point`` deprecated since 1.26;
  they keep working only for the in-core Barman Cloud and volume snapshots and stay 0 otherwise.
  The program backs up through the Barman Cloud *plugin*, whose instance sidecar exports them as
  ``barman_cloud_cloudnative_pg_io_*`` (plugin-barman-cloud v0.14.0,
  internal/cnpgi/instance/metrics.go: the plugin name with ``.``/``-`` as ``_``; web/docs/
  observability.md and migration.md give the old → new names). The operator registers a
  plugin's metric under exactly that name, with no prefix (internal/cnpi/plugin/client/
  metrics.go). The plugin reports 0 until the first backup of the server completes.
- cert-manager (2d0d7f7, v1.21.1 schema): ``certmanager_certificate_expiration_timestamp_seconds``
  {name, namespace, issuer_*} (internal/collectors/certificate_collector.go). The chart's
  ServiceMonitor defaults to ``honorLabels: false``, so the Certificate's namespace arrives as
  ``exported_namespace`` (the target's own ``namespace`` label wins): the default selector uses it.
- postgres_exporter (Docker): ``pg_up``, ``pg_stat_archiver_{archived,failed}_count`` in 0.11.1
  (cmd/postgres_exporter/postgres_exporter.go) and 0.20.1 (collector/pg_stat_archiver.go).
  Neither exports the archiver's last_failed_time, hence a different WAL rule from CloudNativePG's.
- pgbackrest_exporter v0.23.0 (Docker): ``pgbackrest_backup_since_last_completion_seconds``
  {backup_type, block_incr, stanza} (backrest/backrest_last_backup_metrics.go). It has no
  failed-backup timestamp: a failing backup shows only as the age growing.
- redis_exporter 1.45 and 1.88: ``redis_up``, ``redis_memory_used_bytes``,
  ``redis_memory_max_bytes`` (``maxmemory`` from INFO), ``redis_evicted_keys_total``.
- nginx-prometheus-exporter: ``nginx_up`` and ``nginx_http_requests_total`` (stub_status's
  requests); mtail (exporters.mtail_program): the edge's 5xx answers (``status_class="5xx"``)
  and its requests that are not traffic (``edge_http_probes_total``).

Certificates the program issues itself (pulumi-tls: the internal CA and leaves, the self-signed
or bootstrap public certificate) are not cert-manager's and no exporter here reads a certificate
(a blackbox exporter would, and is not part of the stack). Their expiry is known when the program
runs, so their rule compares that instant, rendered in, with ``time()``; a ``pulumi up`` after
renewal (``tls.earlyRenewalHours``) renders the new one.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.conf.exporters import EDGE_PROBES_METRIC, EDGE_REQUESTS_METRIC, EDGE_RESPONSES_METRIC

RUNBOOK = "docs/runbooks/monitoring.md"

# The label every Docker scrape target carries (monitoring.docker_stack_label): the edge's two
# exporters are two jobs, so the 5xx ratio joins them on this one.
DOCKER_STACK_LABEL = "stack"
BARMAN_PLUGIN_PREFIX = "barman_cloud_cloudnative_pg_io_"
PGBACKREST_STANZA = "aixsss"

Rule = dict[str, Any]


@dataclass(frozen=True)
class Thresholds:
    # The base backup runs once a day (backup.hourUtc); a backup may take a while, and the
    # Docker exporter reports up to 10 minutes late: the margin covers both.
    backup_schedule_hours: float = 24
    backup_margin_hours: float = 6
    # backup.retentionDays: the oldest recoverable point may lag it by one schedule period.
    retention_days: float = 14
    replication_lag_seconds: float = 300
    # noeviction (BullMQ): at maxmemory Redis refuses writes, so enqueues fail.
    redis_memory_ratio: float = 0.9
    edge_5xx_ratio: float = 0.05
    # Below this rate a ratio means little (one error in five requests is 20 %).
    edge_min_requests_per_second: float = 0.1
    # Well inside tls.earlyRenewalHours (720 h): the renewal that should have happened has not.
    certificate_warn_days: float = 14

    @property
    def backup_max_age_seconds(self) -> float:
        return (self.backup_schedule_hours + self.backup_margin_hours) * 3600


def _n(value: float) -> str:
    """A number as PromQL and people read it: 108000, not 108000.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _m(metric: str, *matchers: str) -> str:
    """``metric{a, b}``, leaving out empty matchers (and the braces when none is left)."""
    used = [m for m in matchers if m]
    return f"{metric}{{{', '.join(used)}}}" if used else metric


def _alert(
    name: str,
    expr: str,
    *,
    severity: str,
    summary: str,
    description: str,
    runbook: str,
    for_: str = "",
    labels: Mapping[str, str] | None = None,
) -> Rule:
    rule: Rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **(labels or {})}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{runbook}#{name.lower()}",
    }
    return rule


# ------------------------------------------------------------------------------- PostgreSQL


def _cnpg_rules(sel: str, t: Thresholds, runbook: str) -> list[Rule]:
    last_ok = _m(f"{BARMAN_PLUGIN_PREFIX}last_available_backup_timestamp", sel)
    last_failed = _m(f"{BARMAN_PLUGIN_PREFIX}last_failed_backup_timestamp", sel)
    first_point = _m(f"{BARMAN_PLUGIN_PREFIX}first_recoverability_point", sel)
    window = t.retention_days * 86400 + t.backup_max_age_seconds
    hours = _n(t.backup_schedule_hours + t.backup_margin_hours)
    return [
        _alert(
            "PostgresDown",
            f"{_m('cnpg_collector_up', sel)} == 0",
            for_="5m",
            severity="critical",
            summary="PostgreSQL is down",
            description="The instance manager of {{ $labels.pod }} reports PostgreSQL down for 5 minutes.",
            runbook=runbook,
        ),
        # max over the instances: the plugin reports the object store's view from each of them.
        # 0 (no backup yet) makes the age "since 1970": a cluster that never completed a
        # backup alerts too, once the schedule and margin have passed since the rule loaded.
        _alert(
            "PostgresBackupTooOld",
            f"time() - max by (namespace) ({last_ok}) > {_n(t.backup_max_age_seconds)}",
            for_="10m",
            severity="critical",
            summary="The last PostgreSQL base backup is too old",
            description=f"No base backup of the cluster in {{{{ $labels.namespace }}}} has completed in the last "
            f"{hours} hours (schedule {_n(t.backup_schedule_hours)} h plus {_n(t.backup_margin_hours)} h margin): "
            "a restore would replay all WAL since the last one, or there is none.",
            runbook=runbook,
        ),
        _alert(
            "PostgresBackupFailed",
            f"max by (namespace) ({last_failed}) > max by (namespace) ({last_ok})",
            for_="5m",
            severity="warning",
            summary="The last PostgreSQL base backup failed",
            description="The newest base backup attempt of the cluster in {{ $labels.namespace }} failed after the "
            "last successful one.",
            runbook=runbook,
        ),
        # Without the metric the two rules above can never fire: say so instead of staying silent.
        _alert(
            "PostgresBackupMetricsAbsent",
            f"absent({last_ok})",
            for_="30m",
            severity="warning",
            summary="No PostgreSQL backup metrics",
            description="Prometheus has no backup timestamp from the Barman Cloud plugin in {{ $labels.namespace }} "
            "(PodMonitor, plugin sidecar or backup configuration missing), so backup age is not watched.",
            runbook=runbook,
        ),
        _alert(
            "PostgresRecoveryWindowBeyondRetention",
            f"time() - min by (namespace) ({first_point} > 0) > {_n(window)}",
            for_="1h",
            severity="warning",
            summary="Old PostgreSQL backups are not being removed",
            description=f"The oldest recoverable point in {{{{ $labels.namespace }}}} is older than the "
            f"{_n(t.retention_days)}-day retention plus one backup period: retention is not applied "
            "and the backup bucket keeps growing.",
            runbook=runbook,
        ),
        # CloudNativePG's own sample rule: the last failure is newer than the last success, i.e.
        # the segment being archived now fails (never archived: -1, never failed: -1).
        _alert(
            "PostgresWalArchivingFailing",
            f"{_m('cnpg_pg_stat_archiver_last_failed_time', sel)} > "
            f"{_m('cnpg_pg_stat_archiver_last_archived_time', sel)}",
            for_="5m",
            severity="critical",
            summary="WAL archiving is failing",
            description="The primary {{ $labels.pod }} fails to archive WAL to the object store: point-in-time "
            "recovery stops at the last archived segment and pg_wal fills up.",
            runbook=runbook,
        ),
        _alert(
            "PostgresReplicationLag",
            f"{_m('cnpg_pg_replication_lag', sel)} > {_n(t.replication_lag_seconds)}",
            for_="5m",
            severity="warning",
            summary="A PostgreSQL standby is lagging",
            description=f"The standby {{{{ $labels.pod }}}} replays more than {_n(t.replication_lag_seconds)} "
            "seconds behind the primary: a failover now would lose or wait for that much.",
            runbook=runbook,
        ),
        # The lag query reports 0 once a standby has replayed all it received, so a standby
        # whose WAL receiver is gone shows no lag at all: this rule catches it.
        _alert(
            "PostgresStandbyNotStreaming",
            f"{_m('cnpg_pg_replication_in_recovery', sel)} > {_m('cnpg_pg_replication_is_wal_receiver_up', sel)}",
            for_="5m",
            severity="critical",
            summary="A PostgreSQL standby is not streaming",
            description="The standby {{ $labels.pod }} is in recovery without a WAL receiver: it falls behind "
            "and cannot take over.",
            runbook=runbook,
        ),
    ]


def _docker_postgres_rules(sel: str, t: Thresholds, stanza: str, runbook: str) -> list[Rule]:
    since = _m("pgbackrest_backup_since_last_completion_seconds", sel, f'stanza="{stanza}"')
    window = "15m"
    hours = _n(t.backup_schedule_hours + t.backup_margin_hours)
    return [
        _alert(
            "PostgresDown",
            f"{_m('pg_up', sel)} == 0",
            for_="5m",
            severity="critical",
            summary="PostgreSQL is down",
            description="postgres_exporter {{ $labels.instance }} cannot reach PostgreSQL for 5 minutes.",
            runbook=runbook,
        ),
        # min over backup types: the exporter gives each type the age of the newest backup that
        # can stand for it, so the smallest is the age of the newest backup of any type.
        _alert(
            "PostgresBackupTooOld",
            f"min by (stanza) ({since}) > {_n(t.backup_max_age_seconds)}",
            for_="10m",
            severity="critical",
            summary="The last PostgreSQL base backup is too old",
            description=f"No pgBackRest backup of stanza {{{{ $labels.stanza }}}} has completed in the last {hours} "
            f"hours (schedule {_n(t.backup_schedule_hours)} h plus {_n(t.backup_margin_hours)} h margin).",
            runbook=runbook,
        ),
        # The exporter reports nothing for a stanza without a completed backup: absent covers
        # "never backed up" as well as "not scraped".
        _alert(
            "PostgresBackupMetricsAbsent",
            f"absent({since})",
            for_="30m",
            severity="warning",
            summary="No PostgreSQL backup metrics",
            description="Prometheus has no backup age for stanza {{ $labels.stanza }}: no backup has completed "
            "or pgbackrest_exporter is not scraped, so backup age is not watched.",
            runbook=runbook,
        ),
        # postgres_exporter has no last_failed_time: failures that go on while nothing archives.
        # A failure followed by a success within the window does not alert.
        _alert(
            "PostgresWalArchivingFailing",
            f"increase({_m('pg_stat_archiver_failed_count', sel)}[{window}]) > 0 "
            f"and increase({_m('pg_stat_archiver_archived_count', sel)}[{window}]) == 0",
            for_="5m",
            severity="critical",
            summary="WAL archiving is failing",
            description="PostgreSQL at {{ $labels.instance }} fails to archive WAL to the pgBackRest repository "
            "and archived none for 15 minutes: point-in-time recovery stops at the last archived segment.",
            runbook=runbook,
        ),
        # No replication rule: a Docker host runs one PostgreSQL (config refuses more).
    ]


# ------------------------------------------------------------------------------ Redis, edge


def _redis_rules(sel: str, t: Thresholds, runbook: str) -> list[Rule]:
    percent = _n(t.redis_memory_ratio * 100)
    return [
        _alert(
            "RedisDown",
            f"{_m('redis_up', sel)} == 0",
            for_="5m",
            severity="critical",
            summary="Redis is down",
            description="redis_exporter {{ $labels.instance }} cannot reach Redis for 5 minutes: the queue is "
            "unavailable.",
            runbook=runbook,
        ),
        # maxmemory 0 means unlimited: no ratio then (the filter drops it instead of dividing by 0).
        _alert(
            "RedisMemoryNearMaxmemory",
            f"{_m('redis_memory_used_bytes', sel)} / ({_m('redis_memory_max_bytes', sel)} > 0) "
            f"> {_n(t.redis_memory_ratio)}",
            for_="5m",
            severity="warning",
            summary="Redis is close to maxmemory",
            description=f"Redis at {{{{ $labels.instance }}}} uses more than {percent}% of maxmemory. With "
            "noeviction it refuses writes when full: BullMQ cannot enqueue jobs.",
            runbook=runbook,
        ),
        _alert(
            "RedisKeysEvicted",
            f"increase({_m('redis_evicted_keys_total', sel)}[10m]) > 0",
            severity="critical",
            summary="Redis evicted keys",
            description="Redis at {{ $labels.instance }} evicted keys: BullMQ loses jobs. The policy must be "
            "noeviction.",
            runbook=runbook,
        ),
    ]


def _edge_rules(sel: str, group: str, t: Thresholds, runbook: str) -> list[Rule]:
    # The edge's traffic: stub_status's request count less the requests that are not traffic
    # (health probes and stub_status's own scrapes, each a status-log line that mtail counts).
    # Two exporters, so two scrape targets: each side is summed by `group`, a label both carry.
    requests = f"sum by ({group}) (rate({_m(EDGE_REQUESTS_METRIC, sel)}[5m]))"
    probes = f"sum by ({group}) (rate({_m(EDGE_PROBES_METRIC, sel)}[5m]))"
    total = f"({requests} - {probes})"
    five_xx = _m(EDGE_RESPONSES_METRIC, sel, 'status_class="5xx"')
    errors = f"sum by ({group}) (rate({five_xx}[5m]))"
    percent = _n(t.edge_5xx_ratio * 100)
    return [
        _alert(
            "EdgeDown",
            f"{_m('nginx_up', sel)} == 0",
            for_="5m",
            severity="critical",
            summary="The nginx edge is down",
            description="nginx-prometheus-exporter {{ $labels.instance }} cannot read the edge's status for 5 minutes.",
            runbook=runbook,
        ),
        # No 5xx at all: the errors series does not exist and the rule stays silent.
        _alert(
            "EdgeHigh5xxRate",
            f"{errors} / {total} > {_n(t.edge_5xx_ratio)} and {total} > {_n(t.edge_min_requests_per_second)}",
            for_="5m",
            severity="critical",
            summary="The edge answers with server errors",
            description=f"More than {percent}% of the edge's responses in {{{{ $labels.{group} }}}} are 5xx "
            "(502/504: api or web unreachable or too slow).",
            runbook=runbook,
        ),
    ]


# ----------------------------------------------------------------------------- certificates


def _epoch(value: str | float | datetime.datetime) -> float:
    """pulumi-tls's validity_end_time (RFC 3339), a datetime, or seconds since the epoch."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


def _program_certificate_rules(
    certificates: Mapping[str, str | float | datetime.datetime], t: Thresholds, runbook: str
) -> list[Rule]:
    warn = t.certificate_warn_days * 86400
    return [
        _alert(
            "CertificateExpiringSoon",
            # vector(): the instant is rendered in; the rule itself carries the certificate.
            f"vector({_n(round(_epoch(not_after)))}) - time() < {_n(warn)}",
            for_="1h",
            severity="warning",
            summary="A certificate expires soon",
            # The name written in: templates see the expression's labels, not the rule's own.
            description=f"The certificate {name} expires in less than "
            f"{_n(t.certificate_warn_days)} days and was not renewed: run `pulumi up` (it renews within "
            "tls.earlyRenewalHours).",
            runbook=runbook,
            labels={"certificate": name},
        )
        for name, not_after in sorted(certificates.items())
    ]


def _cert_manager_rule(selector: str, t: Thresholds, runbook: str) -> Rule:
    expires = _m("certmanager_certificate_expiration_timestamp_seconds", selector)
    return _alert(
        "CertificateExpiringSoon",
        # label_replace: the same `certificate` label as the program's own certificates carry.
        f'label_replace({expires} - time() < {_n(t.certificate_warn_days * 86400)}, "certificate", "$1", '
        '"name", "(.*)")',
        for_="1h",
        severity="warning",
        summary="A certificate expires soon",
        description=f"cert-manager's Certificate {{{{ $labels.certificate }}}} expires in less than "
        f"{_n(t.certificate_warn_days)} days: its renewal is failing (see the Certificate's events).",
        runbook=runbook,
    )


# ---------------------------------------------------------------------------------- public


def kubernetes_rules(
    namespace: str,
    thresholds: Thresholds = Thresholds(),  # frozen: one shared default is safe
    *,
    program_certificates: Mapping[str, str | float | datetime.datetime] | None = None,
    cert_manager_selector: str | None = None,
    runbook: str = RUNBOOK,
) -> dict[str, Any]:
    """The PrometheusRule ``spec`` for a stack in ``namespace``: CloudNativePG with the Barman Cloud
    plugin, redis_exporter, the edge's nginx exporter and mtail, cert-manager's certificates (its
    metrics scraped with the chart's ServiceMonitor: ``exported_namespace`` selects the stack's,
    unless ``cert_manager_selector`` says otherwise), and ``program_certificates`` (name → expiry).
    """
    sel = f'namespace="{namespace}"'
    cert_selector = f'exported_namespace="{namespace}"' if cert_manager_selector is None else cert_manager_selector
    certificates = [
        _cert_manager_rule(cert_selector, thresholds, runbook),
        *_program_certificate_rules(program_certificates or {}, thresholds, runbook),
    ]
    return {
        "groups": [
            {"name": "aixsss-postgres", "rules": _cnpg_rules(sel, thresholds, runbook)},
            {"name": "aixsss-redis", "rules": _redis_rules(sel, thresholds, runbook)},
            {"name": "aixsss-edge", "rules": _edge_rules(sel, "namespace", thresholds, runbook)},
            {"name": "aixsss-certificates", "rules": certificates},
        ]
    }


def docker_rules(
    selector: str = "",
    thresholds: Thresholds = Thresholds(),  # frozen: one shared default is safe
    *,
    program_certificates: Mapping[str, str | float | datetime.datetime] | None = None,
    stanza: str = PGBACKREST_STANZA,
    runbook: str = RUNBOOK,
) -> dict[str, Any]:
    """The same alerts for a Docker host: postgres_exporter and pgbackrest_exporter instead of
    CloudNativePG, no replication (one instance), the program's certificates only (no
    cert-manager). ``selector`` is added to every metric (e.g. ``stack="dev"`` when one
    Prometheus scrapes several hosts); the edge's ratio is per ``stack`` label, which joins the
    jobs of its two exporters."""
    groups = [
        {"name": "aixsss-postgres", "rules": _docker_postgres_rules(selector, thresholds, stanza, runbook)},
        {"name": "aixsss-redis", "rules": _redis_rules(selector, thresholds, runbook)},
        {"name": "aixsss-edge", "rules": _edge_rules(selector, DOCKER_STACK_LABEL, thresholds, runbook)},
    ]
    certificates = _program_certificate_rules(program_certificates or {}, thresholds, runbook)
    if certificates:
        groups.append({"name": "aixsss-certificates", "rules": certificates})
    return {"groups": groups}


def rule_file(spec: Mapping[str, Any]) -> str:
    """A Prometheus rule file (``rule_files:``) with ``spec``'s groups. JSON is YAML, and needs
    no YAML library in the program."""
    return json.dumps(spec, indent=2) + "\n"
