"""Metrics and alerts on a Docker host (issue 11, part 5; components/monitoring.py,
DockerPlatform._exporters): each exporter is a hardened container in its service's network
namespace, the namespace joins an internal metrics network of its own and no other new one, the secrets
the exporters need stay secret and are the services' own, and the stack outputs the scrape
configuration and a rule file that promtool accepts. tests/realdocker scrapes them on a daemon."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from harness import CONTAINER, delivered, is_secret, reveal, run_program
from rendering import tool

from components.conf import exporters
from components.monitoring import BACKUP_ALERTS
from offline.engine import Deployment, Registration

DOCKER = {"target": "docker"}
NETWORK = "docker:index/network:Network"
# service -> its exporters' containers and ports (dev: one container per service).
EXPECTED = {
    "postgres": {"pg-exporter": 9187, "backup-exporter": 9854},
    "redis": {"exporter": 9121},
    "edge": {"nginx-exporter": 9113, "mtail": 3903},
}
_cache: dict[str, Deployment] = {}


def deployed(name: str, overrides: dict[str, Any], stack: str = "dev") -> Deployment:
    if name not in _cache:
        _cache[name] = run_program(stack, overrides={**DOCKER, **overrides})
    return _cache[name]


def labels(c: Registration) -> dict[str, str]:
    return {item["label"]: item["value"] for item in reveal(c.inputs["labels"])}


def exporter_containers(d: Deployment) -> dict[str, Registration]:
    return {c.name: c for c in d.of_type(CONTAINER) if labels(c).get("aixsss.io/role") == "exporter"}


def env_of(c: Registration) -> dict[str, Any]:
    """NAME -> value; the list is one secret (as the services' are), so reveal it per item."""
    return dict(item.split("=", 1) for item in reveal(c.inputs["envs"]))


def test_each_exporter_runs_hardened_in_its_services_namespace() -> None:
    d = deployed("on", {})
    found = exporter_containers(d)
    assert sorted(found) == sorted(f"{s}-{e}" for s, names in EXPECTED.items() for e in names)
    for service, names in EXPECTED.items():
        owner = d.named(service, CONTAINER)
        for name, port in names.items():
            c = found[f"{service}-{name}"]
            # A pod's loopback: the exporter joins the service's namespace (its real id at apply
            # time), and starts after it.
            assert c.inputs["networkMode"] == f"container:{service}-id"
            assert d.depends_on(c, owner)
            assert not c.inputs.get("networksAdvanced") and not c.inputs.get("ports")
            assert c.inputs["readOnly"] is True and c.inputs["capabilities"] == {"drops": ["ALL"]}
            assert c.inputs["securityOpts"] == ["no-new-privileges:true"] and c.inputs["user"] == "65532:65532"
            assert c.inputs["memory"] == c.inputs["memorySwap"] == 64
            assert labels(c)["aixsss.service"] == service
            flow = json.loads(labels(c)["aixsss.io/flows"])
            assert flow == [
                {"client": f"prometheus (network aixsss-dev-{service}-metrics)", "server": service, "ports": [port],
                 "tls": False, "auth": "none"}
            ]  # fmt: skip
            assert any(f"{port}" in arg for arg in reveal(c.inputs.get("command") or [])) or any(
                f":{port}" in v for v in env_of(c).values()
            ), (name, "listens on its declared port")


def test_each_exporters_namespace_has_an_internal_metrics_network_of_its_own() -> None:
    d = deployed("on", {})
    networks = {reveal(n.inputs["name"]): n for n in d.of_type(NETWORK) if "metrics" in reveal(n.inputs["name"])}
    assert sorted(networks) == sorted(f"aixsss-dev-{service}-metrics" for service in EXPECTED)
    for name, network in networks.items():
        assert network.inputs["internal"] is True
        members = [
            c.name
            for c in d.of_type(CONTAINER)
            if any(n["name"] == name for n in reveal(c.inputs.get("networksAdvanced") or []))
        ]
        # The service's namespace owner alone: the edge never shares a network with a data service.
        assert members == [name.removeprefix("aixsss-dev-").removesuffix("-metrics")], (name, members)
        aliases = [n["aliases"] for n in reveal(d.named(members[0], CONTAINER).inputs["networksAdvanced"])
                   if n["name"] == name]  # fmt: skip
        assert aliases == [[members[0]]]
    # The companion (backups) stays on the zone networks; the namespace owners keep their zones.
    assert [n["name"] for n in reveal(d.named("postgres-backups", CONTAINER).inputs["networksAdvanced"])] == [
        "aixsss-dev-backend"
    ]
    edge = [n["name"] for n in reveal(d.named("edge", CONTAINER).inputs["networksAdvanced"])]
    assert "aixsss-dev-frontend" in edge and "aixsss-dev-edge-published" in edge


def test_the_exporters_secrets_are_secret_and_the_services_own() -> None:
    d = deployed("on", {})
    found = exporter_containers(d)

    def secret_env(c: Registration) -> dict[str, str]:
        envs = c.inputs["envs"]
        assert is_secret(envs), c.name  # the whole list, as for every container with a secret
        return env_of(c)

    redis, postgres = secret_env(d.named("redis", CONTAINER)), secret_env(d.named("postgres", CONTAINER))
    redis_exporter = secret_env(found["redis-exporter"])
    assert redis_exporter[exporters.REDIS_PASSWORD_ENV] == redis["REDISCLI_AUTH"]
    assert redis_exporter["REDIS_ADDR"] == "rediss://127.0.0.1:6379"
    assert redis_exporter["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == exporters.CA_PATH
    pg = secret_env(found["postgres-pg-exporter"])
    # The clients' login role and its password (the exporter's own secret): the server's
    # container holds only the bootstrap password, which no longer opens anything.
    client = urlsplit(secret_env(d.named("api", CONTAINER))["DATABASE_URL"])
    assert (pg["DATA_SOURCE_USER"], pg[exporters.POSTGRES_PASSWORD_ENV]) == (client.username, client.password)
    assert client.password not in postgres.values()
    assert pg["DATA_SOURCE_URI"].startswith("127.0.0.1:5432/aixsss?sslmode=verify-full&sslrootcert=")
    backups = secret_env(found["postgres-backup-exporter"])
    for key in ("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"):
        assert backups[key] == postgres[key]
    assert "PGPASSWORD" not in backups and "POSTGRES_PASSWORD" not in backups
    # pgBackRest's own configuration and the CA it verifies the store with, nothing secret in files.
    files = delivered(d, found["postgres-backup-exporter"])
    assert (
        files["/etc/aixsss/pgbackrest.conf"]["content"]
        == delivered(d, d.named("postgres", CONTAINER))["/etc/aixsss/pgbackrest.conf"]["content"]
    )
    assert set(files) == {"/etc/aixsss/pgbackrest.conf", exporters.CA_PATH}


def test_the_edge_serves_stub_status_on_loopback_and_logs_statuses_to_mtail() -> None:
    d = deployed("on", {})
    conf = delivered(d, d.named("edge", CONTAINER))["/etc/aixsss/nginx.conf"]["content"]
    assert f"listen {exporters.STUB_STATUS_LISTEN};" in conf
    assert f"access_log syslog:server={exporters.STATUS_LOG_SERVER}" in conf
    mtail = exporter_containers(d)["edge-mtail"]
    assert delivered(d, mtail)["/etc/aixsss/mtail/edge.mtail"]["content"] == exporters.mtail_program()


def test_monitoring_off_declares_no_exporter_no_network_and_no_output() -> None:
    off = deployed("off", {"monitoring.enabled": False})
    assert exporter_containers(off) == {}
    assert not [n for n in off.of_type(NETWORK) if "metrics" in reveal(n.inputs["name"])]
    conf = delivered(off, off.named("edge", CONTAINER))["/etc/aixsss/nginx.conf"]["content"]
    assert "stub_status" not in conf and "syslog:" not in conf
    assert "prometheus" not in off.outputs
    assert off.outputs["checklist"]["monitoring.metricsAndAlerts"]["ok"] is False


def test_without_backups_no_backup_exporter_and_no_backup_alerts() -> None:
    d = deployed("no-backups", {"backup.enabled": False})
    assert "postgres-backup-exporter" not in exporter_containers(d)
    rules = json.loads(reveal(d.outputs["prometheus"]["ruleFile"]))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert not names & BACKUP_ALERTS and "PostgresWalArchivingFailing" in names


def test_the_outputs_give_prometheus_its_scrape_jobs_and_a_valid_rule_file(tmp_path: Path) -> None:
    d = deployed("on", {})
    out = reveal(d.outputs["prometheus"])
    assert out["networks"] == [f"aixsss-dev-{service}-metrics" for service in EXPECTED]
    targets = {
        job["job_name"]: (job["static_configs"][0]["targets"], job["static_configs"][0]["labels"])
        for job in out["scrapeConfigs"]
    }
    assert targets == {
        f"aixsss-dev-{service}-{name}": ([f"{service}:{port}"], {"stack": "dev"})
        for service, names in EXPECTED.items()
        for name, port in names.items()
    }
    rules = json.loads(out["ruleFile"])
    # Every rule selects the stack's label, which every scrape job sets, and carries it.
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["stack"] == "dev", rule
            if "vector(" not in rule["expr"]:  # the program's certificates: an instant rendered in
                assert 'stack="dev"' in rule["expr"], rule
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    certificates = {r["labels"]["certificate"] for r in alerts if "certificate" in r["labels"]}
    assert {"ca", "postgres", "redis", "minio", "public"} <= certificates
    path = tmp_path / "aixsss-dev.rules.json"
    path.write_text(out["ruleFile"])
    checked = subprocess.run([tool_promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checklist = d.outputs["checklist"]["monitoring.metricsAndAlerts"]
    assert checklist["ok"] is True and "no two services share one" in checklist["reason"]


def tool_promtool() -> str:
    return tool("promtool", "/usr/bin/promtool")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_other_docker_stacks_declare_the_same_exporters(stack: str) -> None:
    overrides = {"cache.highAvailability": False, "edge.replicas": 1, "database.instances": 1,
                 "database.synchronousReplicas": 0} if stack == "prod" else {}  # fmt: skip
    d = deployed(stack, overrides, stack=stack)
    assert sorted(exporter_containers(d)) == sorted(f"{s}-{e}" for s, names in EXPECTED.items() for e in names)
    assert reveal(d.outputs["prometheus"])["networks"] == [f"aixsss-{stack}-{s}-metrics" for s in EXPECTED]
