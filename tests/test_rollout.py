"""Changes reach pods on Kubernetes: no file is a subPath mount (kubelet never updates one), and
every pod template carries a checksum of each ConfigMap and Secret the pod reads, so a change
rolls exactly the workloads that use what changed — checked by running the program twice, the
second time on the first run's state (as `pulumi up` keeps it), and comparing the templates."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

import pytest
from harness import WORKLOADS, Deployment, Registration, is_secret, k8s_files, run_program

from components.platforms.kubernetes_files import CHECKSUM_PREFIX

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
K8S = {"target": "kubernetes"}
# Every Kubernetes shape the stacks have: dev's defaults, staging, prod (HA Redis, ACME, backups).
STACKS = ("dev", "staging", "prod")


@functools.cache
def first(stack: str) -> Deployment:
    return run_program(stack, overrides=K8S)


def again(stack: str, prior: Deployment, **changes: Any) -> Deployment:
    return run_program(stack, overrides={**K8S, **changes}, prior=prior)


def workloads(d: Deployment) -> dict[str, Registration]:
    return {r.name: r for r in d.registrations if r.type in WORKLOADS}


def template(reg: Registration) -> dict[str, Any]:
    return reg.plain["spec"]["template"]


def data_of(d: Deployment) -> dict[str, dict[str, str]]:
    """Every ConfigMap's and Secret's content, by name."""
    found = {}
    for reg in d.registrations:
        if reg.type == CONFIG_MAP:
            found[reg.plain["metadata"]["name"]] = reg.plain.get("data") or {}
        elif reg.type == SECRET:
            found[reg.plain["metadata"]["name"]] = reg.plain.get("stringData") or {}
    return found


def reads(reg: Registration) -> set[str]:
    """The ConfigMaps and Secrets a workload's pod reads: its volumes' and its env's references."""
    pod = template(reg)["spec"]
    names: set[str] = set()
    for volume in pod.get("volumes", []):
        sources = [*volume.get("projected", {}).get("sources", []), volume]
        for source in sources:
            if "configMap" in source:
                names.add(source["configMap"]["name"])
            if "secret" in source:
                names.add(source["secret"].get("secretName") or source["secret"]["name"])
    for container in pod.get("initContainers", []) + pod["containers"]:
        for env in container.get("env", []):
            if "valueFrom" in env:
                names.add(env["valueFrom"]["secretKeyRef"]["name"])
    return names


def rolled(before: Deployment, after: Deployment) -> set[str]:
    """The workloads whose pod template changed: their controllers replace their pods."""
    old, new = workloads(before), workloads(after)
    assert set(old) == set(new)
    return {name for name in old if template(old[name]) != template(new[name])}


def users_of_changes(before: Deployment, after: Deployment) -> set[str]:
    """The workloads reading a ConfigMap or Secret whose content changed: those that must roll."""
    old, new = data_of(before), data_of(after)
    changed = {name for name in new if old.get(name) != new[name]}
    return {name for name, reg in workloads(after).items() if reads(reg) & changed}


def checksums(tmpl: dict[str, Any]) -> dict[str, str]:
    """A pod template's checksum annotations, by ConfigMap or Secret name."""
    annotations = tmpl["metadata"].get("annotations", {})
    return {k.removeprefix(CHECKSUM_PREFIX): v for k, v in annotations.items() if k.startswith(CHECKSUM_PREFIX)}


# --------------------------------------------------------------------------- what the templates carry


@pytest.mark.parametrize("stack", STACKS)
def test_no_volume_mount_uses_sub_path(stack: str) -> None:
    # Not even for a file that never changes: there is none (every file derives from config,
    # a certificate or a secret), so every mount is a directory kubelet keeps up to date.
    for name, reg in workloads(first(stack)).items():
        pod = template(reg)["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert "subPath" not in mount and "subPathExpr" not in mount, (name, container["name"], mount)


@pytest.mark.parametrize("stack", STACKS)
def test_each_pod_template_has_the_checksum_of_each_config_map_and_secret_it_reads(stack: str) -> None:
    d = first(stack)
    contents = data_of(d)
    for name, reg in workloads(d).items():
        sums = checksums(template(reg))
        # All it reads that the stack declares (cert-manager writes the ACME Secret: see below).
        assert set(sums) == reads(reg) & set(contents), name
        assert sums, name
        for obj, value in sums.items():
            whole = json.dumps(contents[obj], sort_keys=True)
            assert value == "sha256:" + hashlib.sha256(whole.encode()).hexdigest(), (name, obj)
        # Plain (annotations are), and the digest reveals none of the secret values it covers.
        annotations = reg.inputs["spec"]["template"]["metadata"]["annotations"]
        assert not is_secret(annotations) and not any(is_secret(v) for v in annotations.values()), name


def test_the_acme_certificate_is_a_directory_the_edge_rereads() -> None:
    # cert-manager renews it into the Secret without Pulumi: no checksum can follow it. It is a
    # whole-Secret directory, so kubelet swaps the files in place, and the edge reloads nginx
    # every six hours (load_balancer.py); renewal starts 30 days (renewBefore) ahead.
    edge = workloads(first("prod"))["edge"]
    pod = template(edge)["spec"]
    [volume] = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "edge-public-tls"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert "subPath" not in mount and "items" not in volume["secret"]
    assert "nginx -c /etc/aixsss/nginx.conf -s reload" in pod["containers"][0]["command"][-1]
    assert "while sleep 21600" in pod["containers"][0]["command"][-1]
    assert "edge-public-tls" not in checksums(template(edge))


def test_files_keep_their_paths_and_the_pod_group_reads_secret_ones() -> None:
    files = k8s_files(first("staging"), "redis")
    assert files["/etc/aixsss/redis.conf"][1] == "0440" and "user default on" in files["/etc/aixsss/redis.conf"][0]
    assert files["/etc/aixsss/tls/server.key"][1] == "0440"
    assert files["/etc/aixsss/tls/server.crt"][1] == "0444"
    minio = k8s_files(first("staging"), "minio")
    assert set(minio) == {
        "/etc/aixsss/minio-certs/public.crt",
        "/etc/aixsss/minio-certs/private.key",
        "/etc/aixsss/minio-certs/CAs/ca.crt",
        # Its root credentials, which the server reads from the files MINIO_ROOT_*_FILE name.
        "/etc/aixsss/env/MINIO_ROOT_USER",
        "/etc/aixsss/env/MINIO_ROOT_PASSWORD",
    }
    assert minio["/etc/aixsss/env/MINIO_ROOT_PASSWORD"][1] == "0440"
    assert set(k8s_files(first("staging"), "api", "redis-tls")) == {
        "/etc/aixsss/redis-tls.conf",
        "/etc/aixsss/tls/ca.crt",
    }


def test_cloudnative_pg_reloads_the_secrets_the_program_gives_it() -> None:
    d = first("prod")
    for name in ("postgres-server-tls", "postgres-ca", "postgres-app", "postgres-backup-s3"):
        assert d.named(name, SECRET).plain["metadata"]["labels"]["cnpg.io/reload"] == "true", name


# --------------------------------------------------------------------------- what a change rolls


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_an_unchanged_stack_rolls_nothing(stack: str) -> None:
    before = first(stack)
    assert rolled(before, again(stack, before)) == set()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("edge.clientMaxBodySizeMb", 64),
        ("edge.apiRateBurst", 55),
        ("edge.apiRatePerSecond", 3),
        ("edge.apiRateDelay", 7),
    ],
)
def test_an_nginx_setting_rolls_the_edge_alone(key: str, value: int) -> None:
    before = first("staging")
    after = again("staging", before, **{key: value})
    assert rolled(before, after) == {"edge"} == users_of_changes(before, after)
    # Only the checksum changed in its template: the rollout is the annotation's doing.
    old, new = template(workloads(before)["edge"]), template(workloads(after)["edge"])
    assert old["spec"] == new["spec"]
    sums_before, sums_after = checksums(old), checksums(new)
    assert set(sums_before) == set(sums_after)
    assert {k for k in sums_before if sums_before[k] != sums_after[k]} == {"edge-files"}


def renewed(prior: Deployment, certificate: str) -> Deployment:
    """``prior`` as the engine holds it once ``certificate`` is due for renewal (early renewal
    hours reached): the provider replaces it, so the next run signs a new certificate for it."""
    drop = f"tls:index/locallySignedCert:LocallySignedCert::{certificate}-cert"
    kept = [r for r in prior.registrations if not r.urn.endswith(drop)]
    assert len(kept) == len(prior.registrations) - 1, certificate
    return dataclasses.replace(prior, registrations=kept)


@pytest.mark.parametrize(
    ("stack", "certificate", "servers"),
    [
        ("staging", "redis", {"redis"}),
        ("staging", "minio", {"minio"}),
        ("staging", "public", {"edge"}),
        ("prod", "redis", {"redis-node"}),
        ("prod", "redis-sentinel", {"redis-sentinel"}),
        ("prod", "minio", {"minio"}),
    ],
)
def test_a_renewed_certificate_rolls_exactly_its_servers(stack: str, certificate: str, servers: set[str]) -> None:
    before = first(stack)
    after = run_program(stack, overrides=K8S, prior=renewed(before, certificate))
    assert rolled(before, after) == servers == users_of_changes(before, after)
    for server in servers:
        new_pems = {content for content, _ in k8s_files(after, server).values() if "BEGIN CERTIFICATE" in content}
        old_pems = {content for content, _ in k8s_files(before, server).values() if "BEGIN CERTIFICATE" in content}
        assert new_pems != old_pems, server


def test_a_renewed_postgres_certificate_reaches_cloudnative_pg_by_reload() -> None:
    before = first("prod")
    after = run_program("prod", overrides=K8S, prior=renewed(before, "postgres"))
    # No workload of ours runs PostgreSQL: the operator's instances reload the labelled Secret.
    assert rolled(before, after) == set()
    old, new = before.named("postgres-server-tls", SECRET), after.named("postgres-server-tls", SECRET)
    assert old.plain["stringData"]["tls.crt"] != new.plain["stringData"]["tls.crt"]
    assert new.plain["metadata"]["labels"]["cnpg.io/reload"] == "true"


def test_a_longer_certificate_validity_rolls_every_tls_server_and_ca_reader() -> None:
    before = first("staging")
    after = again("staging", before, **{"tls.validityHours": 9000})
    # Every leaf and the CA (five times as long) are reissued: each pod reading one rolls,
    # the Jobs included (replaced, they run again); web reads no certificate and stays.
    expected = {"redis", "minio", "edge", "api", "worker", "api-migrate", "minio-bootstrap", "postgres-act-as-owner"}
    assert rolled(before, after) == expected == users_of_changes(before, after)
    assert "web" in workloads(after)


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        ("staging", {"redis", "minio", "minio-bootstrap", "api", "api-migrate", "worker", "postgres-act-as-owner"}),
        (
            "prod",
            {"redis", "redis-node", "redis-sentinel", "minio", "minio-bootstrap", "api", "api-migrate", "worker"}
            | {"postgres-act-as-owner"},
        ),
    ],
)
def test_secret_rotation_rolls_the_pods_using_rotated_secrets(stack: str, expected: set[str]) -> None:
    before = first(stack)
    after = again(stack, before, **{"secrets.rotation": 1})
    assert rolled(before, after) == expected == users_of_changes(before, after)
    # The edge and web read no secret the rotation replaces.
    assert not {"edge", "web"} & rolled(before, after)
