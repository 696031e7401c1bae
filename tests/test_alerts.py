"""The alerting rules (components/conf/alerts.py) judged by Prometheus's own promtool.

`promtool check rules` parses every expression; `promtool test rules` evaluates each alert on
synthetic series and compares what fires, labels and rendered annotations included, with what
should: every alert has at least one case where it fires and one where it must stay silent.
The real exporters' metric names are checked against real servers in tests/test_exporters.py.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crd_schema import validate
from rendering import tool

from components.conf import alerts

ROOT = Path(__file__).resolve().parent.parent
NS = "aixsss-prod"
N = f'namespace="{NS}"'
DAY = 86400
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# promtool's clock starts at the epoch: these expire 30 and 59 days into a test.
PROGRAM_CERTIFICATES: dict[str, str | float | datetime.datetime] = {
    "postgres": 30 * DAY,
    "redis": "1970-03-01T00:00:00Z",
}

SPECS = {
    "kubernetes": alerts.kubernetes_rules(NS, program_certificates=PROGRAM_CERTIFICATES),
    "docker": alerts.docker_rules(program_certificates=PROGRAM_CERTIFICATES),
}


def promtool() -> str:
    return tool("promtool", "/usr/bin/promtool")


def rules_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


@dataclass
class Case:
    """Series (selector → promtool values) and, at ``eval_time``, the alerts expected: each the
    labels of one firing alert without alertname and the rule's own labels; empty: silent."""

    target: str
    alert: str
    name: str
    series: dict[str, str]
    eval_time: str
    fires: list[dict[str, str]] = field(default_factory=list)
    interval: str = "1m"

    @property
    def id(self) -> str:
        return f"{self.target}-{self.alert}-{self.name}"


def k8s(alert: str, name: str, series: dict[str, str], at: str, fires: list[dict[str, str]] | None = None,
        interval: str = "1m") -> Case:  # fmt: skip
    return Case("kubernetes", alert, name, series, at, fires or [], interval)


def docker(alert: str, name: str, series: dict[str, str], at: str, fires: list[dict[str, str]] | None = None,
           interval: str = "1m") -> Case:  # fmt: skip
    return Case("docker", alert, name, series, at, fires or [], interval)


BARMAN = alerts.BARMAN_PLUGIN_PREFIX
LAST_OK = f"{BARMAN}last_available_backup_timestamp"
LAST_FAILED = f"{BARMAN}last_failed_backup_timestamp"
FIRST_POINT = f"{BARMAN}first_recoverability_point"
POD1, POD2 = 'pod="postgres-1"', 'pod="postgres-2"'
NSL = {"namespace": NS}
SINCE = "pgbackrest_backup_since_last_completion_seconds"
PGX = 'instance="postgres-exporter:9187", job="postgres"'
PGX_LABELS = {"instance": "postgres-exporter:9187", "job": "postgres"}
REDIS = 'instance="redis-exporter:9121", job="redis"'
REDIS_LABELS = {"instance": "redis-exporter:9121", "job": "redis"}
EDGE = 'instance="edge:9113", job="edge"'
CERT = (
    'exported_namespace="{ns}", issuer_group="cert-manager.io", issuer_kind="ClusterIssuer", '
    'issuer_name="letsencrypt", name="aixsss-public", namespace="cert-manager"'
)
CERT_LABELS = {
    "exported_namespace": NS, "issuer_group": "cert-manager.io", "issuer_kind": "ClusterIssuer",
    "issuer_name": "letsencrypt", "name": "aixsss-public", "namespace": "cert-manager", "certificate": "aixsss-public",
}  # fmt: skip


def redis_cases(make: Any, sel: str, labels: dict[str, str]) -> list[Case]:
    s = f"{{{sel}}}"
    return [
        make("RedisDown", "unreachable", {f"redis_up{s}": "0+0x20"}, "10m", [labels]),
        make("RedisDown", "up", {f"redis_up{s}": "1+0x20"}, "10m"),
        make("RedisMemoryNearMaxmemory", "95 percent",
             {f"redis_memory_used_bytes{s}": "95+0x20", f"redis_memory_max_bytes{s}": "100+0x20"}, "10m", [labels]),
        make("RedisMemoryNearMaxmemory", "half",
             {f"redis_memory_used_bytes{s}": "50+0x20", f"redis_memory_max_bytes{s}": "100+0x20"}, "10m"),
        # maxmemory 0 is "no limit": no ratio, no alert (and no division by zero).
        make("RedisMemoryNearMaxmemory", "no maxmemory",
             {f"redis_memory_used_bytes{s}": "95+0x20", f"redis_memory_max_bytes{s}": "0+0x20"}, "10m"),
        make("RedisKeysEvicted", "one eviction", {f"redis_evicted_keys_total{s}": "0+0x10 1+0x10"}, "12m", [labels]),
        make("RedisKeysEvicted", "none since", {f"redis_evicted_keys_total{s}": "5+0x30"}, "25m"),
    ]  # fmt: skip


PROBES_PER_MINUTE = 12  # per edge: two probes every 10 s (readiness and liveness), as on Kubernetes


def edge_cases(make: Any, sel: str, group: dict[str, str], edges: tuple[tuple[str, str], ...]) -> list[Case]:
    """The 5xx ratio over one or two edges (``edges``: each its nginx exporter's and its mtail's
    distinguishing matchers), summed by ``group``. stub_status counts every request, the probes
    too; mtail counts the probes and the 5xx. Traffic is per minute, without the probes."""
    (nginx_a, mtail_a), *rest = ((f"{sel}, {n}", f"{sel}, {m}") for n, m in edges)

    def responses(traffic_a: int, traffic_b: int, errors: int | None) -> dict[str, str]:
        series = {
            f"nginx_http_requests_total{{{nginx_a}}}": f"0+{traffic_a + PROBES_PER_MINUTE}x30",
            f"edge_http_probes_total{{{mtail_a}}}": f"0+{PROBES_PER_MINUTE}x30",
        }
        for nginx_b, mtail_b in rest:
            series[f"nginx_http_requests_total{{{nginx_b}}}"] = f"0+{traffic_b + PROBES_PER_MINUTE}x30"
            series[f"edge_http_probes_total{{{mtail_b}}}"] = f"0+{PROBES_PER_MINUTE}x30"
        if errors is not None:
            series[f'edge_http_responses_total{{{mtail_a}, status_class="5xx"}}'] = f"0+{errors}x30"
        return series

    return [
        make("EdgeDown", "down", {f"nginx_up{{{nginx_a}}}": "0+0x20"}, "10m", [group | dict(_labels(nginx_a))]),
        make("EdgeDown", "up", {f"nginx_up{{{nginx_a}}}": "1+0x20"}, "10m"),
        # 300 + 300 2xx, 60 4xx, 60 5xx a minute: 60/720 = 8.3 % > 5 % (14 % with one edge).
        make("EdgeHigh5xxRate", "8 percent", responses(420, 300, 60), "15m", [group]),
        make("EdgeHigh5xxRate", "under 1 percent", responses(366, 300, 6), "15m"),
        make("EdgeHigh5xxRate", "no 5xx", responses(360, 300, None), "15m"),
        # Every request fails, but at 0.07 requests/s: too few for the ratio to page anyone. With
        # the probes counted as traffic (0.2/s per edge) the rule would see enough, and 14 %.
        make("EdgeHigh5xxRate", "little traffic", responses(4, 0, 4), "15m"),
        # 1 in 12 at 0.2 requests/s fails: 8.3 %. With the probes counted as traffic, 1 in 36
        # (2.8 %; one edge 1 in 24, 4.2 %) and silent.
        make("EdgeHigh5xxRate", "probes are not traffic", responses(12, 0, 1), "15m", [group]),
    ]


def program_certificate_cases(make: Any) -> list[Case]:
    up = {'up{job="prometheus"}': "1+0x500"}
    return [
        # postgres expires at day 30: under 14 days left from day 16 on (fires one hour later).
        make("CertificateExpiringSoon", "program postgres at day 17", up, "17d", [{"certificate": "postgres"}], "1h"),
        make("CertificateExpiringSoon", "program at day 10", up, "10d", [], "1h"),
        make("CertificateExpiringSoon", "program both at day 50", up, "50d",
             [{"certificate": "postgres"}, {"certificate": "redis"}], "1h"),
    ]  # fmt: skip


def _labels(matchers: str) -> list[tuple[str, str]]:
    return re.findall(r'(\w+)="([^"]*)"', matchers)


CASES: list[Case] = [
    # ------------------------------------------------------------------ Kubernetes: CloudNativePG
    k8s("PostgresDown", "down", {f"cnpg_collector_up{{{N}, {POD1}}}": "0+0x20"}, "10m",
        [NSL | {"pod": "postgres-1"}]),
    k8s("PostgresDown", "up", {f"cnpg_collector_up{{{N}, {POD1}}}": "1+0x20"}, "10m"),
    # The last backup at 01:00; 24 h schedule + 6 h margin: too old from 31:00, firing 10 min later.
    # (10-minute steps: a day and more of 1-minute evaluations only costs time.)
    k8s("PostgresBackupTooOld", "32h after", {f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x200",
                                              f"{LAST_OK}{{{N}, {POD2}}}": "3600+0x200"}, "32h", [NSL], "10m"),
    k8s("PostgresBackupTooOld", "29h after", {f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x200"}, "30h", [], "10m"),
    k8s("PostgresBackupTooOld", "next day's backup", {f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x150 90000+0x60"}, "32h",
        [], "10m"),
    # max over the instances: one that reports nothing yet (0) does not hide the others' backup.
    k8s("PostgresBackupTooOld", "an instance reports 0",
        {f"{LAST_OK}{{{N}, {POD1}}}": "0+0x200", f"{LAST_OK}{{{N}, {POD2}}}": "3600+0x150 90000+0x60"}, "32h",
        [], "10m"),
    k8s("PostgresBackupTooOld", "never backed up", {f"{LAST_OK}{{{N}, {POD1}}}": "0+0x200"}, "31h", [NSL], "10m"),
    k8s("PostgresBackupTooOld", "another namespace", {f'{LAST_OK}{{namespace="other", {POD1}}}': "3600+0x200"}, "32h",
        [], "10m"),
    k8s("PostgresBackupFailed", "failed after success",
        {f"{LAST_FAILED}{{{N}, {POD1}}}": "7200+0x20", f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x20"}, "10m", [NSL]),
    k8s("PostgresBackupFailed", "success after failure",
        {f"{LAST_FAILED}{{{N}, {POD1}}}": "3600+0x20", f"{LAST_OK}{{{N}, {POD1}}}": "7200+0x20"}, "10m"),
    k8s("PostgresBackupFailed", "never failed",
        {f"{LAST_FAILED}{{{N}, {POD1}}}": "0+0x20", f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x20"}, "10m"),
    k8s("PostgresBackupMetricsAbsent", "no plugin metrics", {f"cnpg_collector_up{{{N}, {POD1}}}": "1+0x60"}, "40m",
        [NSL]),
    k8s("PostgresBackupMetricsAbsent", "present", {f"{LAST_OK}{{{N}, {POD1}}}": "3600+0x60"}, "40m"),
    # Retention 14 d + 30 h: a first point at 01:00 is too old from 367 h on, firing an hour later.
    k8s("PostgresRecoveryWindowBeyondRetention", "369h", {f"{FIRST_POINT}{{{N}, {POD1}}}": "3600+0x400"}, "369h",
        [NSL], "1h"),
    k8s("PostgresRecoveryWindowBeyondRetention", "360h", {f"{FIRST_POINT}{{{N}, {POD1}}}": "3600+0x400"}, "360h",
        [], "1h"),
    k8s("PostgresRecoveryWindowBeyondRetention", "no backup yet", {f"{FIRST_POINT}{{{N}, {POD1}}}": "0+0x400"},
        "369h", [], "1h"),
    k8s("PostgresWalArchivingFailing", "failing",
        {f"cnpg_pg_stat_archiver_last_failed_time{{{N}, {POD1}}}": "200+0x20",
         f"cnpg_pg_stat_archiver_last_archived_time{{{N}, {POD1}}}": "100+0x20"}, "10m", [NSL | {"pod": "postgres-1"}]),
    k8s("PostgresWalArchivingFailing", "recovered",
        {f"cnpg_pg_stat_archiver_last_failed_time{{{N}, {POD1}}}": "100+0x20",
         f"cnpg_pg_stat_archiver_last_archived_time{{{N}, {POD1}}}": "200+0x20"}, "10m"),
    k8s("PostgresWalArchivingFailing", "never failed",
        {f"cnpg_pg_stat_archiver_last_failed_time{{{N}, {POD1}}}": "-1+0x20",
         f"cnpg_pg_stat_archiver_last_archived_time{{{N}, {POD1}}}": "200+0x20"}, "10m"),
    k8s("PostgresReplicationLag", "600s", {f"cnpg_pg_replication_lag{{{N}, {POD2}}}": "600+0x20"}, "10m",
        [NSL | {"pod": "postgres-2"}]),
    k8s("PostgresReplicationLag", "10s", {f"cnpg_pg_replication_lag{{{N}, {POD2}}}": "10+0x20"}, "10m"),
    k8s("PostgresStandbyNotStreaming", "receiver down",
        {f"cnpg_pg_replication_in_recovery{{{N}, {POD2}}}": "1+0x20",
         f"cnpg_pg_replication_is_wal_receiver_up{{{N}, {POD2}}}": "0+0x20"}, "10m", [NSL | {"pod": "postgres-2"}]),
    k8s("PostgresStandbyNotStreaming", "streaming",
        {f"cnpg_pg_replication_in_recovery{{{N}, {POD2}}}": "1+0x20",
         f"cnpg_pg_replication_is_wal_receiver_up{{{N}, {POD2}}}": "1+0x20"}, "10m"),
    k8s("PostgresStandbyNotStreaming", "primary",
        {f"cnpg_pg_replication_in_recovery{{{N}, {POD1}}}": "0+0x20",
         f"cnpg_pg_replication_is_wal_receiver_up{{{N}, {POD1}}}": "0+0x20"}, "10m"),
    *redis_cases(k8s, f'{N}, instance="10.0.0.7:9121"', NSL | {"instance": "10.0.0.7:9121"}),
    *edge_cases(k8s, N, NSL, (('instance="10.0.0.8:9113", pod="edge-a"', 'instance="10.0.0.8:3903", pod="edge-a"'),
                              ('instance="10.0.0.9:9113", pod="edge-b"', 'instance="10.0.0.9:3903", pod="edge-b"'))),
    # cert-manager's Certificate expires at day 20: under 14 days left from day 6, firing an hour later.
    k8s("CertificateExpiringSoon", "cert-manager at day 8",
        {f"certmanager_certificate_expiration_timestamp_seconds{{{CERT.format(ns=NS)}}}": "1728000+0x500"}, "8d",
        [CERT_LABELS], "1h"),
    k8s("CertificateExpiringSoon", "cert-manager at day 5",
        {f"certmanager_certificate_expiration_timestamp_seconds{{{CERT.format(ns=NS)}}}": "1728000+0x500"}, "5d",
        [], "1h"),
    k8s("CertificateExpiringSoon", "cert-manager, another namespace",
        {f"certmanager_certificate_expiration_timestamp_seconds{{{CERT.format(ns='other')}}}": "1728000+0x500"}, "8d",
        [], "1h"),
    *program_certificate_cases(k8s),
    # ------------------------------------------------------- Docker: postgres_exporter, pgBackRest
    docker("PostgresDown", "down", {f"pg_up{{{PGX}}}": "0+0x20"}, "10m", [PGX_LABELS]),
    docker("PostgresDown", "up", {f"pg_up{{{PGX}}}": "1+0x20"}, "10m"),
    # Seconds since the last backup grow by 600 every 10 minutes from a full backup at 0.
    docker("PostgresBackupTooOld", "31h after the full backup",
           {f'{SINCE}{{backup_type="full", block_incr="n", stanza="aixsss"}}': "0+600x200",
            f'{SINCE}{{backup_type="diff", block_incr="n", stanza="aixsss"}}': "0+600x200"}, "31h",
           [{"stanza": "aixsss"}], "10m"),
    docker("PostgresBackupTooOld", "a differential at 25h",
           {f'{SINCE}{{backup_type="full", block_incr="n", stanza="aixsss"}}': "0+600x200",
            f'{SINCE}{{backup_type="diff", block_incr="n", stanza="aixsss"}}': "0+600x150 0+600x60"}, "31h",
           [], "10m"),
    docker("PostgresBackupTooOld", "29h after", {f'{SINCE}{{backup_type="full", stanza="aixsss"}}': "0+600x200"},
           "29h", [], "10m"),
    docker("PostgresBackupMetricsAbsent", "no backup yet", {f"pg_up{{{PGX}}}": "1+0x60"}, "40m",
           [{"stanza": "aixsss"}]),
    docker("PostgresBackupMetricsAbsent", "another stanza only",
           {f'{SINCE}{{backup_type="full", stanza="other"}}': "0+60x60"}, "40m", [{"stanza": "aixsss"}]),
    docker("PostgresBackupMetricsAbsent", "present", {f'{SINCE}{{backup_type="full", stanza="aixsss"}}': "0+60x60"},
           "40m"),
    docker("PostgresWalArchivingFailing", "failing, nothing archived",
           {f"pg_stat_archiver_failed_count{{{PGX}}}": "0+1x30", f"pg_stat_archiver_archived_count{{{PGX}}}": "5+0x30"},
           "20m", [PGX_LABELS]),
    docker("PostgresWalArchivingFailing", "one failure, then archiving",
           {f"pg_stat_archiver_failed_count{{{PGX}}}": "0+0x5 1+0x25",
            f"pg_stat_archiver_archived_count{{{PGX}}}": "0+1x30"}, "20m"),
    docker("PostgresWalArchivingFailing", "idle",
           {f"pg_stat_archiver_failed_count{{{PGX}}}": "0+0x30", f"pg_stat_archiver_archived_count{{{PGX}}}": "9+0x30"},
           "20m"),
    *redis_cases(docker, REDIS, REDIS_LABELS),
    # One edge per Docker host; its exporters are two jobs, joined on the stack label.
    *edge_cases(docker, 'stack="dev"', {"stack": "dev"},
                (('instance="edge:9113", job="aixsss-dev-edge-nginx-exporter"',
                  'instance="edge:3903", job="aixsss-dev-edge-mtail"'),)),
    *program_certificate_cases(docker),
]  # fmt: skip


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def _expected(spec: dict[str, Any], case: Case) -> list[dict[str, Any]]:
    """promtool's exp_alerts: the labels plus the rule's own, and the annotations rendered from
    the rule's templates with those labels (alerts.py uses no other template data)."""
    expected = []
    for labels in case.fires:
        # The rule whose own labels (beyond severity) the alert carries, the most specific first:
        # a program certificate's rule names it, cert-manager's rule names none.
        candidates = [
            (len(own), rule)
            for rule in rules_of(spec)
            if rule["alert"] == case.alert
            and (own := {k: v for k, v in rule["labels"].items() if k != "severity"}).items() <= labels.items()
        ]
        rule = max(candidates, key=lambda c: c[0])[1]
        full = labels | rule["labels"]
        annotations = {k: _render(v, full) for k, v in rule["annotations"].items()}
        expected.append({"exp_labels": full, "exp_annotations": annotations})
    return expected


def run_promtool_test(spec: dict[str, Any], case: Case, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.json"
    rules.write_text(alerts.rule_file(spec))
    test = {
        "rule_files": [str(rules)],
        # Rules evaluate at the series' own step: days of 1-minute evaluations take minutes.
        "evaluation_interval": case.interval,
        "tests": [
            {
                "interval": case.interval,
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": _expected(spec, case)}
                ],
            }
        ],
    }
    path = tmp_path / "test.json"
    path.write_text(json.dumps(test, indent=1))
    return subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_alert_fires_exactly_when_it_should(case: Case, tmp_path: Path) -> None:
    done = run_promtool_test(SPECS[case.target], case, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_control_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # promtool really compares: the firing case claimed silent, and a silent one claimed firing.
    firing = next(c for c in CASES if c.alert == "PostgresWalArchivingFailing" and c.fires)
    claimed_silent = Case(**{**firing.__dict__, "fires": []})
    assert run_promtool_test(SPECS[firing.target], claimed_silent, tmp_path).returncode != 0
    silent = next(c for c in CASES if c.alert == "RedisKeysEvicted" and not c.fires)
    claimed = Case(**{**silent.__dict__, "fires": [{"instance": "redis-exporter:9121", "job": "redis"}]})
    assert run_promtool_test(SPECS[silent.target], claimed, tmp_path).returncode != 0


@pytest.mark.parametrize("target", sorted(SPECS))
def test_every_alert_has_a_firing_and_a_silent_case(target: str) -> None:
    names = {r["alert"] for r in rules_of(SPECS[target])}
    fired = {c.alert for c in CASES if c.target == target and c.fires}
    silent = {c.alert for c in CASES if c.target == target and not c.fires}
    assert names - fired == set(), "alerts without a case where they fire"
    assert names - silent == set(), "alerts without a case where they stay silent"
    assert {c.alert for c in CASES if c.target == target} <= names


@pytest.mark.parametrize("target", sorted(SPECS))
def test_promtool_check_rules_accepts_the_rule_file(target: str, tmp_path: Path) -> None:
    path = tmp_path / f"{target}.rules.json"
    path.write_text(alerts.rule_file(SPECS[target]))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules_of(SPECS[target]))} rules found" in done.stdout


def test_the_same_alerts_exist_on_both_targets_except_replication() -> None:
    kubernetes = {r["alert"] for r in rules_of(SPECS["kubernetes"])}
    docker_names = {r["alert"] for r in rules_of(SPECS["docker"])}
    # One PostgreSQL on a Docker host: no standby; pgBackRest's exporter reports no failed backup
    # and pgBackRest's retention is its own (expire after each backup).
    only_kubernetes = {"PostgresReplicationLag", "PostgresStandbyNotStreaming", "PostgresBackupFailed",
                       "PostgresRecoveryWindowBeyondRetention"}  # fmt: skip
    assert kubernetes - docker_names == only_kubernetes
    assert docker_names <= kubernetes


@pytest.mark.parametrize("target", sorted(SPECS))
def test_every_alert_has_severity_and_annotations_with_a_runbook_section(target: str) -> None:
    runbook = (ROOT / alerts.RUNBOOK).read_text()
    sections = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for rule in rules_of(SPECS[target]):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == alerts.RUNBOOK and anchor == rule["alert"].lower()
        assert anchor in sections, f"docs/runbooks/monitoring.md has no section {rule['alert']}"
        # Only $labels in templates: the unit tests above compare annotations exactly.
        templates = re.findall(r"\{\{[^}]*\}\}", annotations["summary"] + annotations["description"])
        assert all(re.fullmatch(r"\{\{ \$labels\.\w+ \}\}", t) for t in templates), templates


def test_the_prometheusrule_is_valid_against_the_operator_crd() -> None:
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "aixsss", "namespace": NS}, "spec": SPECS["kubernetes"]}  # fmt: skip
    assert validate(rule).errors == []


def test_thresholds_are_rendered_into_the_expressions(tmp_path: Path) -> None:
    t = alerts.Thresholds(backup_schedule_hours=1, backup_margin_hours=0.5, redis_memory_ratio=0.75)
    spec = alerts.kubernetes_rules("stage", t)
    expr = {r["alert"]: r["expr"] for r in rules_of(spec)}
    assert expr["PostgresBackupTooOld"].endswith("> 5400")
    assert expr["RedisMemoryNearMaxmemory"].endswith("> 0.75")
    # And the alert follows: a backup at 0 is too old after 1.5 h (firing 10 minutes later).
    case = Case("kubernetes", "PostgresBackupTooOld", "short schedule",
                {f'{LAST_OK}{{namespace="stage"}}': "0+0x200"}, "110m", [{"namespace": "stage"}])  # fmt: skip
    done = run_promtool_test(spec, case, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_program_certificate_expiry_accepts_pulumi_tls_times() -> None:
    spec = alerts.docker_rules(program_certificates={"ca": "2031-11-29T10:00:00.5Z", "edge": EPOCH})
    exprs = sorted(r["expr"] for r in rules_of(spec) if r["alert"] == "CertificateExpiringSoon")
    ca = int(datetime.datetime(2031, 11, 29, 10, tzinfo=datetime.UTC).timestamp())
    assert exprs == ["vector(0) - time() < 1209600", f"vector({ca}) - time() < 1209600"]
    assert not [g for g in alerts.docker_rules()["groups"] if g["name"] == "aixsss-certificates"]
