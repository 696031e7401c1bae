"""`make render`: every stack and target, as files, with real values and redacted secrets."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rendering import CASES, config_file, rendered

from offline.engine import ROOT, reveal
from offline.objects import kubernetes_registrations
from offline.redact import REDACTED
from offline.render import Rendered

CONFIG_FILES = ("nginx.conf", "redis.conf", "postgresql.conf", "pg_hba.conf", "bootstrap.sh")
# Kubernetes: CloudNativePG writes PostgreSQL's files from the Cluster's spec; none is ours.
OPERATOR_WRITTEN = ("postgresql.conf", "pg_hba.conf")
# The Cluster and its backups, each a manifest (<apiVersion>-<kind>-<namespace>-<name>.yaml).
POSTGRES_MANIFESTS = (
    "postgresql.cnpg.io_v1-cluster-{ns}-postgres.yaml",
    "postgresql.cnpg.io_v1-scheduledbackup-{ns}-postgres-daily.yaml",
    "barmancloud.cnpg.io_v1-objectstore-{ns}-postgres-backups.yaml",
    "v1-secret-{ns}-postgres-app.yaml",
    "v1-secret-{ns}-postgres-server-tls.yaml",
    "v1-secret-{ns}-postgres-ca.yaml",
    "v1-secret-{ns}-postgres-backup-s3.yaml",
    "v1-secret-{ns}-postgres-backup-ca.yaml",
)
# CloudNativePG's Services, which clients and the server certificate name on Kubernetes.
CLUSTER_SERVICES = ("postgres-rw", "postgres-r", "postgres-ro")


DOCKER_CASES = [c for c in CASES if c[1] == "docker"]


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    stack, target = request.param
    return rendered(tmp_path_factory.getbasetemp() / stack, stack, target)


@pytest.fixture(scope="module", params=DOCKER_CASES, ids=[f"{s}-{t}" for s, t in DOCKER_CASES])
def docker_case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    stack, target = request.param
    return rendered(tmp_path_factory.getbasetemp() / stack, stack, target)


def _workload(result: Rendered, service: str) -> str:
    names = [p.name for p in (result.out / "config").iterdir()]
    exact = [n for n in names if n in (service, f"aixsss-{result.deployment.stack}-{service}")]
    return exact[0] if exact else next(n for n in names if n.startswith(service) or f"-{service}-" in n)


def _ha(result: Rendered) -> bool:
    """Whether the stack runs the HA Redis set (cache.highAvailability: prod on Kubernetes)."""
    return any(r.name == "redis-node" for r in result.deployment.of_type("kubernetes:apps/v1:StatefulSet"))


def test_layout_matches_the_target(case: Rendered) -> None:
    kubernetes = (case.out / "kubernetes").is_dir()
    assert kubernetes != (case.out / "docker").is_dir()
    for name in ("audit.json", "architecture.svg", "summary.txt", "certs/ca.crt"):
        assert (case.out / name).is_file(), name
    found = {p.name for p in (case.out / "config").rglob("*")}
    if not kubernetes:
        assert set(CONFIG_FILES) <= found
        return
    assert set(CONFIG_FILES) - set(OPERATOR_WRITTEN) <= found
    assert not set(OPERATOR_WRITTEN) & found
    manifests = {p.name for p in (case.out / "kubernetes").rglob("*.yaml")}
    namespace = f"aixsss-{case.deployment.stack}"
    assert {m.format(ns=namespace) for m in POSTGRES_MANIFESTS} <= manifests
    # No StatefulSet, Service, ConfigMap or claim of ours for PostgreSQL: the operator's (the
    # act-as-owner Job's files are a client's, issue 12).
    ours = [
        m
        for m in manifests
        if re.search(
            rf"-(statefulset|service|configmap|persistentvolumeclaim)-{namespace}-postgres(?!-act-as-owner)", m
        )
    ]
    assert ours == []


def test_one_manifest_per_kubernetes_object_named_as_the_provider_names_it(case: Rendered) -> None:
    regs = kubernetes_registrations(case.deployment)
    files = sorted((case.out / "kubernetes").rglob("*.yaml")) if regs else []
    assert len(files) == len(regs)
    for path in files:
        obj = yaml.safe_load(path.read_text())
        meta = obj["metadata"]
        expected = f"{obj['apiVersion'].replace('/', '_')}-{obj['kind'].lower()}-{meta.get('namespace', 'default')}"
        assert path.name == f"{expected}-{meta['name']}.yaml"
        assert path.parent.name == "1-manifest"


def test_docker_plan_lists_every_container_with_its_settings(docker_case: Rendered) -> None:
    case = docker_case
    plan = yaml.safe_load((case.out / "docker/plan.yaml").read_text())
    containers = case.deployment.of_type("docker:index/container:Container")
    # In name order, which unlike the order of registration is the same from run to run.
    assert [c["resource"] for c in plan["containers"]] == sorted(c.name for c in containers)
    postgres = next(c for c in plan["containers"] if c["resource"] == "postgres")
    # The official image plus pgBackRest, built on the host (backups are on in every stack).
    assert postgres["image"].startswith(f"aixsss-{case.deployment.stack}/aixsss-postgres:pg-"), postgres["image"]
    assert postgres["capabilities"]["drops"] == ["ALL"] and postgres["readOnly"] is True
    # Its files travel in its config carrier, each written out under config/.
    carrier = next(c for c in plan["containers"] if c["resource"] == "postgres-config")
    assert {u["file"] for u in carrier["uploads"]} >= {"/etc/aixsss/postgresql.conf", "/etc/aixsss/pg_hba.conf"}
    for upload in carrier["uploads"]:
        assert (case.out / upload["contentFile"]).is_file()
    publishers = ["edge", *(["postgres", "redis", "minio"] if case.deployment.stack == "dev" else [])]
    assert {n["resource"] for n in plan["networks"]} == {
        "frontend-network",
        "backend-network",
        "egress-network",
        *(f"{p}-published-network" for p in publishers),
        # monitoring.enabled: the exporters' namespaces each on a metrics network of their own.
        *(f"{s}-metrics-network" for s in ("postgres", "redis", "edge")),
    }


def test_config_files_are_exactly_what_is_deployed(case: Rendered, tmp_path_factory: pytest.TempPathFactory) -> None:
    shown = rendered(tmp_path_factory.getbasetemp() / case.deployment.stack, case.deployment.stack,
                     "kubernetes" if (case.out / "kubernetes").is_dir() else "docker", show_secrets=True)  # fmt: skip
    deployed = []
    for reg in shown.deployment.registrations:
        plain = reveal(reg.inputs)
        deployed += [u["content"] for u in plain.get("uploads") or []]
        if plain.get("kind") in ("ConfigMap", "Secret"):
            deployed += list((plain.get("data") or plain.get("stringData") or {}).values())
    for path in (shown.out / "config").rglob("*"):
        if path.is_file():
            assert path.read_text() in deployed, path


def test_no_secret_value_in_any_rendered_file(case: Rendered) -> None:
    # Each generated secret, and its hex form (HAProxy's health check sends the Redis password
    # as hex-encoded RESP).
    atoms = [*case.deployment.generated_secrets, *(a.encode().hex() for a in case.deployment.generated_secrets)]
    assert atoms
    for path in case.out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            leaked = [a[:12] for a in atoms if a in text]
            assert not leaked, f"{path} holds secret values starting {leaked}"
    # With the HA set (prod on Kubernetes) redis.conf is the nodes'; `redis` is HAProxy, whose
    # haproxy.cfg holds the password for its health check.
    if _ha(case):
        assert REDACTED in config_file(case, "redis-node", "redis.conf").read_text()
        assert REDACTED in config_file(case, "redis", "haproxy.cfg").read_text()
        assert REDACTED in config_file(case, "redis-sentinel", "sentinel.conf").read_text()
    else:
        assert REDACTED in config_file(case, _workload(case, "redis"), "redis.conf").read_text()


def test_files_holding_secrets_are_0600_and_others_are_not(case: Rendered) -> None:
    # Decided from each file on disk, not from render's own record: a file that shows a redacted
    # value or a private key must be 0600, every other file 0644.
    written = [p for p in case.out.rglob("*") if p.is_file()]
    assert len(written) == len(case.files)
    for path in written:
        text = path.read_text()
        holds_secret = "[redacted]" in text or "PRIVATE KEY" in text
        assert path.stat().st_mode & 0o777 == (0o600 if holds_secret else 0o644), path
    secret = {str(p.relative_to(case.out)) for p in written if p.stat().st_mode & 0o777 == 0o600}
    assert any(p.endswith("redis.conf") for p in secret)
    assert any(p.startswith("certs/") and p.endswith(".key") for p in secret)
    assert not any(p.endswith(("nginx.conf", "pg_hba.conf", ".crt")) for p in secret)


def test_show_secrets_writes_the_real_values(tmp_path_factory: pytest.TempPathFactory) -> None:
    shown = rendered(tmp_path_factory.getbasetemp() / "dev", "dev", "docker", show_secrets=True)
    conf = config_file(shown, "aixsss-dev-redis", "redis.conf").read_text()
    hashes = re.findall(r" #([0-9a-f]{64})\b", conf)
    generated = {hashlib.sha256(s.encode()).hexdigest() for s in shown.deployment.generated_secrets}
    assert len(hashes) == 2 and set(hashes) <= generated
    key = (shown.out / "certs/redis.key").read_text()
    assert isinstance(serialization.load_pem_private_key(key.encode(), None), ec.EllipticCurvePrivateKey)
    assert (shown.out / "certs/redis.key").stat().st_mode & 0o777 == 0o600


def test_certificates_are_real_and_signed_by_the_stack_ca(case: Rendered) -> None:
    ca = x509.load_pem_x509_certificate((case.out / "certs/ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaves = [p for p in (case.out / "certs").glob("*.crt") if p.stem in ("postgres", "redis", "minio")]
    assert len(leaves) == 3
    validity = int(case.deployment.config["aixsss:tls.validityHours"])
    kubernetes = (case.out / "kubernetes").is_dir()
    namespace = f"aixsss-{case.deployment.stack}"
    for path in leaves:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if kubernetes and path.stem == "postgres":
            # The Cluster's Services, each in every form a client in the namespace may use;
            # no bare `postgres` (no Service has that name).
            forms = [
                f"{s}{suffix}"
                for s in CLUSTER_SERVICES
                for suffix in ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")
            ]
            assert sorted(names) == sorted([*forms, "localhost"])
        elif kubernetes:
            service = path.stem
            # The HA set's one certificate for its three nodes names each node too.
            nodes = [f"redis-node-{i}.redis-node.{namespace}.svc.cluster.local" for i in range(3)]
            assert sorted(names) == sorted(
                [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                 f"{service}.{namespace}.svc.cluster.local", "localhost",
                 *(nodes if service == "redis" and _ha(case) else [])]
            )  # fmt: skip
        else:
            assert path.stem in names
        assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        assert (
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
        hours = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 3600
        assert hours == validity


def test_audit_json_is_the_stack_outputs_with_secrets_redacted(case: Rendered) -> None:
    audit = json.loads((case.out / "audit.json").read_text())
    outputs = reveal(case.deployment.outputs)
    assert audit.keys() == outputs.keys()
    assert audit["services"] == outputs["services"]
    assert REDACTED in audit["databaseUrl"] and "sslmode=require" in audit["databaseUrl"]


def test_diagram_draws_the_declared_services_and_flows(case: Rendered) -> None:
    svg = ET.parse(case.out / "architecture.svg").getroot()
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    services = reveal(case.deployment.outputs)["services"]
    assert set(services) <= texts
    declared = {(client, server) for client, facts in services.items() for server in facts["talksTo"]}
    # What the picture itself says: each line's title is "<client> to <server>: <ports> …".
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    pairs = {tuple(title.split(": ", 1)[0].split(" to ", 1)) for title in titles if " to " in title}
    assert {(c, s) for c, s in pairs if c in services and s in services} == declared
    assert any(e.server == "edge" and e.tls and 443 in e.ports for e in case.topology.edges if e.client != "edge")


def test_summary_counts_resources_per_service_and_states_tls_per_flow(case: Rendered) -> None:
    text = (case.out / "summary.txt").read_text()
    # The api component's resources, read from their URNs (the type chain names the component).
    api = sum(1 for r in case.deployment.registrations if r.custom and "aixsss:service:Api$" in r.urn)
    assert re.search(rf"^api\s+{api}$", text, re.M)
    assert re.search(r"^api -> postgres\s+5432\s+yes\s+scram-sha-256$", text, re.M)
    assert re.search(r"^edge -> api\s+3001\s+no\s+jwt$", text, re.M)
    assert "plain-text flow edge -> api" in text


def test_cli_renders_a_stack_and_prints_the_summary(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "offline.render", "--stack", "staging", "--target", "docker", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "flow" in done.stdout and "wrote" in done.stdout
    assert (tmp_path / "staging/docker/plan.yaml").is_file()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_readme_pictures_are_what_render_draws(stack: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    target = {"dev": "docker", "prod": "kubernetes"}[stack]
    drawn = rendered(tmp_path_factory.getbasetemp() / stack, stack, target).out / "architecture.svg"
    checked_in = ROOT / f"docs/architecture-{stack}.svg"
    assert drawn.read_text() == checked_in.read_text(), f"run `make render STACK={stack}` and copy {drawn.name}"
    assert f"docs/architecture-{stack}.svg" in (ROOT / "README.md").read_text()
