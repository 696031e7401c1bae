"""Metrics and alerts on Kubernetes (issue 11, part 5; components/monitoring.py): PodMonitors and
the PrometheusRule valid against the Prometheus Operator's CRDs (tests/crds, v0.93.0), labelled
as config says, exporters hardened like every container, the metrics ports open to Prometheus's
namespace alone. Docker: tests/test_monitoring_docker.py."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from crd_schema import validate
from harness import k8s_files

from components.conf import exporters
from components.config.model import MonitoringSettings
from components.monitoring import BACKUP_ALERTS
from offline.engine import Deployment, run_program

K8S = {"target": "kubernetes"}
METRICS_PORTS = {"postgres": [9187], "redis": [9121], "edge": [9113, 3903]}
ALL_METRICS_PORTS = {p for ports in METRICS_PORTS.values() for p in ports}
_cache: dict[str, Deployment] = {}


def deployed(name: str, overrides: dict[str, Any] | None = None, stack: str = "staging") -> Deployment:
    if name not in _cache:
        _cache[name] = run_program(stack, overrides=overrides)
    return _cache[name]


def objects(d: Deployment, kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for r in d.registrations:
        obj = r.plain
        if obj.get("kind") == kind:
            found[obj["metadata"]["name"]] = obj
    return found


def pod_spec(d: Deployment, name: str) -> dict[str, Any]:
    for kind in ("Deployment", "StatefulSet"):
        if name in objects(d, kind):
            return objects(d, kind)[name]["spec"]["template"]["spec"]
    raise AssertionError(name)


def staging() -> Deployment:
    return deployed("staging", K8S)


def test_the_monitors_and_the_rule_match_the_prometheus_operator_crds() -> None:
    d = staging()
    monitors, rules = objects(d, "PodMonitor"), objects(d, "PrometheusRule")
    assert sorted(monitors) == ["edge-metrics", "postgres-metrics", "redis-metrics"]
    assert list(rules) == ["aixsss-alerts"]
    for obj in [*monitors.values(), *rules.values()]:
        assert validate(obj).errors == [], obj["metadata"]["name"]
    # CloudNativePG's instances by the cluster's label, at the instance manager's "metrics" port
    # (cnpg_* and the Barman Cloud plugin's metrics); the exporters by the service's pods.
    assert monitors["postgres-metrics"]["spec"]["selector"] == {"matchLabels": {"cnpg.io/cluster": "postgres"}}
    assert [e["port"] for e in monitors["postgres-metrics"]["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert [e["port"] for e in monitors["redis-metrics"]["spec"]["podMetricsEndpoints"]] == ["exporter"]
    assert [e["port"] for e in monitors["edge-metrics"]["spec"]["podMetricsEndpoints"]] == ["nginx-exporter", "mtail"]
    # Every endpoint names a port a selected container declares.
    for service in ("redis", "edge"):
        declared = {p["name"] for c in pod_spec(d, service)["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in monitors[f"{service}-metrics"]["spec"]["podMetricsEndpoints"]} <= declared


def test_a_broken_monitor_is_refused_by_the_crd() -> None:
    monitor = json.loads(json.dumps(objects(staging(), "PodMonitor")["redis-metrics"]))
    monitor["spec"]["podMetricsEndpoints"][0]["scheme"] = "TCP"
    assert validate(monitor).errors
    monitor = json.loads(json.dumps(objects(staging(), "PodMonitor")["redis-metrics"]))
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    assert validate(monitor).errors


def test_the_selector_labels_come_from_config() -> None:
    default = staging()
    for obj in [*objects(default, "PodMonitor").values(), *objects(default, "PrometheusRule").values()]:
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    custom = deployed(
        "custom-labels", {**K8S, "monitoring.selectorLabels": ["prometheus=main", "example.com/team=infra"]}
    )
    for obj in [*objects(custom, "PodMonitor").values(), *objects(custom, "PrometheusRule").values()]:
        labels = obj["metadata"]["labels"]
        assert labels["prometheus"] == "main" and labels["example.com/team"] == "infra"
        assert "release" not in labels
        assert validate(obj).errors == []


def test_only_prometheus_namespace_reaches_the_metrics_ports() -> None:
    d = deployed("observability", {**K8S, "monitoring.prometheusNamespace": "observability"})
    policies = objects(d, "NetworkPolicy")
    opening: dict[str, list[int]] = {}
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress") or []:
            ports = [int(p["port"]) for p in rule.get("ports") or []]
            if ALL_METRICS_PORTS & set(ports):
                opening[name] = ports
                assert rule["from"] == [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
                ], name
    assert opening == {f"{s}-metrics-from-prometheus": ports for s, ports in METRICS_PORTS.items()}
    for service, ports in METRICS_PORTS.items():
        policy = policies[f"{service}-metrics-from-prometheus"]
        assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": service}}
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        [flow] = json.loads(policy["metadata"]["annotations"]["aixsss.io/flows"])
        assert flow == {
            "client": "prometheus (namespace observability)",
            "server": service,
            "ports": ports,
            "tls": False,
            "auth": "none",
        }


def test_the_exporters_are_hardened_and_pinned() -> None:
    d = staging()
    found = {}
    for service in ("redis", "edge"):
        pod = pod_spec(d, service)
        for c in pod["containers"][1:]:
            found[c["name"]] = c
            sec = c["securityContext"]
            assert sec["runAsNonRoot"] is True and sec["allowPrivilegeEscalation"] is False
            assert sec["readOnlyRootFilesystem"] is True
            assert sec["capabilities"]["drop"] == ["ALL"]
            assert sec["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["resources"]["requests"] == c["resources"]["limits"]
            assert c["readinessProbe"]["httpGet"]["port"] == c["name"]
            assert c["livenessProbe"]["httpGet"]["port"] == c["name"]
    assert {n: c["image"] for n, c in found.items()} == {
        "exporter": exporters.REDIS_EXPORTER_IMAGE,
        "nginx-exporter": exporters.NGINX_EXPORTER_IMAGE,
        "mtail": exporters.MTAIL_IMAGE,
    }
    assert found["exporter"]["readinessProbe"]["httpGet"]["path"] == "/health"


def test_the_redis_exporter_verifies_tls_and_reads_the_existing_password_secret() -> None:
    redis = pod_spec(staging(), "redis")
    exporter = next(c for c in redis["containers"] if c["name"] == "exporter")
    env = {e["name"]: e for e in exporter["env"]}
    assert env["REDIS_ADDR"]["value"] == "rediss://127.0.0.1:6379"
    assert env["REDIS_EXPORTER_TLS_CA_CERT_FILE"]["value"] == exporters.CA_PATH
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "redis-env", "key": "REDISCLI_AUTH"}}
    assert "value" not in env["REDIS_PASSWORD"]
    assert exporters.CA_PATH in k8s_files(staging(), "redis", "exporter")
    # The server certificate names 127.0.0.1, the address the exporter verifies.
    [csr] = [
        r for r in staging().registrations if r.type == "tls:index/certRequest:CertRequest" and r.name == "redis-csr"
    ]
    assert "127.0.0.1" in csr.plain["ipAddresses"]


def edge_conf(d: Deployment, kind: str = "ConfigMap") -> str:
    return objects(d, kind)["edge-files"]["data"]["etc_aixsss_nginx.conf"]


def test_the_edge_serves_stub_status_and_sends_its_status_log_only_with_exporters() -> None:
    conf = edge_conf(staging())
    for line in [*exporters.stub_status_server(), *exporters.status_log()]:
        assert line in conf.splitlines()
    mtail = next(c for c in pod_spec(staging(), "edge")["containers"] if c["name"] == "mtail")
    assert mtail["args"] == exporters.mtail_args("/etc/aixsss/mtail")
    off = deployed("off", {**K8S, "monitoring.enabled": False})
    assert "stub_status" not in edge_conf(off) and "syslog:" not in edge_conf(off)
    assert objects(off, "PodMonitor") == {} and objects(off, "PrometheusRule") == {}
    assert [c["name"] for c in pod_spec(off, "edge")["containers"]] == ["edge"]
    assert [c["name"] for c in pod_spec(off, "redis")["containers"]] == ["redis"]
    assert not [n for n in objects(off, "NetworkPolicy") if "metrics" in n]


def test_the_rule_carries_the_programs_certificates_and_the_backup_settings() -> None:
    d = deployed("retention", {**K8S, "backup.retentionDays": 30})
    [rule] = objects(d, "PrometheusRule").values()
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    certificates = {r["labels"]["certificate"]: r["expr"] for r in alerts if "certificate" in r.get("labels", {})}
    ends = {
        r.name.removesuffix("-cert"): r.outputs["validityEndTime"]
        for r in d.registrations
        if r.type in ("tls:index/locallySignedCert:LocallySignedCert", "tls:index/selfSignedCert:SelfSignedCert")
    }
    assert set(certificates) == {"ca", "postgres", "redis", "minio", "public"}
    assert set(ends) >= {"postgres", "redis", "minio", "public"}
    for name in ("postgres", "redis", "minio", "public"):
        epoch = round(datetime.datetime.fromisoformat(ends[name].replace("Z", "+00:00")).timestamp())
        assert certificates[name].startswith(f"vector({epoch}) - time()")
    window = [r for r in alerts if r["alert"] == "PostgresRecoveryWindowBeyondRetention"]
    assert window and str(30 * 86400 + 30 * 3600) in window[0]["expr"]
    assert all('namespace="aixsss-staging"' in r["expr"] for r in alerts if r["alert"].startswith(("Redis", "Edge")))
    no_backups = deployed("no-backups", {**K8S, "backup.enabled": False})
    [rule] = objects(no_backups, "PrometheusRule").values()
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert not names & BACKUP_ALERTS and "PostgresWalArchivingFailing" in names
    assert validate(rule).errors == []


def test_the_checklist_names_what_is_scraped() -> None:
    item = staging().outputs["checklist"]["monitoring.metricsAndAlerts"]
    assert item["ok"] is True
    for part in ("postgres (metrics:9187", "redis (exporter:9121", "edge (nginx-exporter:9113, mtail:3903"):
        assert part in item["reason"]
    assert "from namespace monitoring only" in item["reason"]


@pytest.mark.parametrize("labels", [["release"], ["bad key=x"], ["a=b c"], ["a=1", "a=2"], ["-a=b"], [f"a={'x' * 64}"]])
def test_bad_selector_labels_are_refused(labels: list[str]) -> None:
    with pytest.raises(ValueError):
        MonitoringSettings(selector_labels=labels)


def test_the_config_images_are_the_exporters_pinned_releases() -> None:
    from components.config.model import Images

    images = Images()
    assert images.redis_exporter == exporters.REDIS_EXPORTER_IMAGE
    assert images.nginx_exporter == exporters.NGINX_EXPORTER_IMAGE
    assert images.mtail == exporters.MTAIL_IMAGE
    assert images.postgres_exporter == exporters.POSTGRES_EXPORTER_IMAGE
    assert images.pgbackrest_exporter == exporters.PGBACKREST_EXPORTER_IMAGE
