"""Capacity that follows the load on Kubernetes: the worker on the BullMQ backlog (KEDA), the api
on CPU (HPA). Expected values are written out from the app (BullMQ's default prefix `bull`, the
queue `ai-jobs`), KEDA's documented parameters and the stack's names, not read from the program."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import CRD_DIR, validate
from harness import Deployment, is_secret, plain_strings, reveal, run_program
from test_judges import checkov, kubernetes_validate, manifests

from components.config import StackConfigError
from offline.render import render

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
TRIGGER_AUTH = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
WORKER_ON = {"worker.autoscale": True}


@functools.cache
def deployed(stack: str, **overrides: Any) -> Deployment:
    return run_program(stack, overrides=overrides)


def staging_on() -> Deployment:
    return deployed("staging", **WORKER_ON)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_off_by_default_and_the_deployments_keep_their_count(stack: str) -> None:
    d = deployed(stack)
    assert d.of_type(SCALED_OBJECT) == [] and d.of_type(TRIGGER_AUTH) == [] and d.of_type(HPA) == []
    if stack != "dev":  # dev is Docker: no Deployments at all
        for name in ("api", "worker"):
            assert "replicas" in d.named(name, DEPLOYMENT).inputs["spec"]


def test_worker_scales_on_the_bullmq_wait_list_through_tls() -> None:
    d = staging_on()
    [scaled] = d.of_type(SCALED_OBJECT)
    spec = reveal(scaled.inputs["spec"])
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"] == {
        "address": "redis.aixsss-staging.svc:6379",  # a name in Redis's certificate
        "listName": "bull:ai-jobs:wait",
        "listLength": "8",
        "enableTLS": "true",
    }
    assert trigger["authenticationRef"] == {"name": "worker-queue"}
    # The Deployment leaves its count to KEDA; the api keeps its own.
    assert "replicas" not in d.named("worker", DEPLOYMENT).inputs["spec"]
    assert d.named("api", DEPLOYMENT).inputs["spec"]["replicas"] == 1


def test_list_name_min_max_and_target_follow_the_config() -> None:
    d = deployed(
        "staging",
        **WORKER_ON,
        **{"api.aiQueueName": "jobs-x", "worker.replicas": 2, "worker.maxReplicas": 3, "worker.queueLengthTarget": 20},
    )
    spec = reveal(d.of_type(SCALED_OBJECT)[0].inputs["spec"])
    assert spec["triggers"][0]["metadata"]["listName"] == "bull:jobs-x:wait"
    assert spec["triggers"][0]["metadata"]["listLength"] == "20"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 3)


@pytest.mark.parametrize("rotation", [0, 1])
def test_the_trigger_authenticates_with_the_clients_password_and_the_stack_ca(rotation: int) -> None:
    d = deployed("staging", **WORKER_ON, **{"secrets.rotation": rotation})
    [auth] = d.of_type(TRIGGER_AUTH)
    assert reveal(auth.inputs["spec"]) == {
        "secretTargetRef": [
            {"parameter": "password", "name": "worker-queue-auth", "key": "password"},
            {"parameter": "ca", "name": "worker-queue-auth", "key": "ca"},
        ]
    }
    secret = d.named("worker-queue-auth", SECRET)
    data = secret.inputs["stringData"]
    assert is_secret(data) or all(is_secret(v) for v in data.values())
    values = reveal(data)
    # The current slot: what the api's and worker's tunnels log in with.
    slot = d.named("redisPassword" if rotation == 0 else "redisPasswordSlot1").outputs["result"]
    assert values["password"] == reveal(slot)
    assert values["password"] not in plain_strings(secret.inputs)
    ca = reveal(d.named("ca", "tls:index/selfSignedCert:SelfSignedCert").outputs["certPem"])
    assert values["ca"] == ca
    # The ScaledObject itself carries no secret.
    assert values["password"] not in str(reveal(d.of_type(SCALED_OBJECT)[0].inputs))


def test_with_redis_ha_the_scaler_dials_haproxys_service() -> None:
    d = deployed("prod", **WORKER_ON)
    spec = reveal(d.of_type(SCALED_OBJECT)[0].inputs["spec"])
    assert spec["triggers"][0]["metadata"]["address"] == "redis.aixsss-prod.svc:6379"
    # Service redis selects HAProxy's pods, which the policy admits KEDA to.
    policy = reveal(d.named("redis-from-keda").inputs)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "redis"}}
    assert d.named("redis", DEPLOYMENT).inputs["spec"]["template"]["spec"]["containers"][0]["name"] == "redis"


def test_api_scales_on_cpu() -> None:
    d = deployed("prod", **{"api.autoscale": True, "api.maxReplicas": 5, "api.cpuTargetPercent": 60})
    [hpa] = d.of_type(HPA)
    assert reveal(hpa.inputs["spec"]) == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 3,  # Pulumi.prod.yaml's api.replicas
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
            }
        ],
    }
    assert "replicas" not in d.named("api", DEPLOYMENT).inputs["spec"]
    assert d.of_type(SCALED_OBJECT) == []


def refused(stack: str, overrides: dict[str, Any]) -> str:
    with pytest.raises(StackConfigError) as caught:
        run_program(stack, overrides=overrides)
    return str(caught.value)


def test_config_rules() -> None:
    message = refused("dev", {"worker.autoscale": True, "api.autoscale": True})
    assert "aixsss:worker.autoscale = True is not allowed: false on Docker" in message
    assert "aixsss:api.autoscale = True is not allowed: false on Docker" in message
    message = refused("staging", {**WORKER_ON, "worker.replicas": 3, "worker.maxReplicas": 2})
    assert "aixsss:worker.maxReplicas = 2 is not allowed: at least worker.replicas (3)" in message
    assert "KEDA operator" in message
    message = refused("staging", {**WORKER_ON, "kubernetes.kedaNamespace": ""})
    assert "aixsss:kubernetes.kedaNamespace = '' is not allowed" in message
    # The connection budget counts the autoscaled peak: 8 workers need more than staging's 100.
    message = refused("staging", {**WORKER_ON, "worker.maxReplicas": 8})
    assert "aixsss:database.maxConnections = 100 is not allowed: at least 130" in message
    run_program("staging", overrides={"worker.maxReplicas": 8})  # off: maxReplicas is not counted


# --------------------------------------------------------------------------- CRDs and judges


@functools.cache
def rendered_on(tmp: Path) -> Any:
    return render(
        "staging",
        "kubernetes",
        tmp,
        settings={"worker.autoscale": "true", "api.autoscale": "true", "api.maxReplicas": "2"},
    )


@pytest.fixture(scope="module")
def on(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return rendered_on(tmp_path_factory.mktemp("keda"))


def keda_objects(on: Any) -> dict[str, dict[str, Any]]:
    """The KEDA objects as rendered (the YAML an API server would receive)."""
    docs = [yaml.safe_load(f.read_text()) for f in manifests(on)]
    return {doc["kind"]: doc for doc in docs if doc["apiVersion"] == "keda.sh/v1alpha1"}


def test_the_crds_are_kedas_v2_20_2() -> None:
    sources = [line.split("\t") for line in (CRD_DIR / "SOURCES.tsv").read_text().splitlines()]
    keda = {row[0]: row[1:] for row in sources if row[1] == "kedacore/keda"}
    commit = "68a5b5028f35b22d50597c69819ab32c4e92f21a"  # v2.20.2
    assert keda == {
        f: ["kedacore/keda", commit, f"config/crd/bases/{f}"]
        for f in ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")
    }


def test_the_keda_objects_match_their_crds(on: Any) -> None:
    objects = keda_objects(on)
    assert sorted(objects) == ["ScaledObject", "TriggerAuthentication"]
    for kind, body in objects.items():
        result = validate(body)
        assert result.errors == [], (kind, result.errors)
    # The one CEL rule (min <= max) checked by hand, as the config rule guarantees it.
    [rule] = validate(objects["ScaledObject"]).not_evaluated
    assert "minReplicaCount" in rule.rule
    spec = objects["ScaledObject"]["spec"]
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]


def broken(on: Any, kind: str, edit: Any) -> list[str]:
    body = copy.deepcopy(keda_objects(on)[kind])
    edit(body["spec"])
    return validate(body).errors


def test_broken_keda_objects_are_refused(on: Any) -> None:
    # Trigger metadata is a map of strings: a number where KEDA wants "8".
    assert broken(on, "ScaledObject", lambda s: s["triggers"][0]["metadata"].update(listLength=8))
    assert broken(on, "ScaledObject", lambda s: s.pop("scaleTargetRef"))
    assert broken(on, "ScaledObject", lambda s: s.update(minReplicas=1))  # the HPA's name, not KEDA's
    assert broken(on, "ScaledObject", lambda s: s["triggers"][0].pop("type"))
    assert broken(on, "TriggerAuthentication", lambda s: s["secretTargetRef"][0].pop("key"))
    assert broken(on, "TriggerAuthentication", lambda s: s["secretTargetRef"][0].update(secret="x"))


def test_kubernetes_validate_and_checkov_pass_with_the_autoscalers(on: Any) -> None:
    files = manifests(on)
    kinds = {yaml.safe_load(f.read_text()).get("kind") for f in files}
    assert {"ScaledObject", "TriggerAuthentication", "HorizontalPodAutoscaler"} <= kinds
    done = kubernetes_validate(files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HorizontalPodAutoscaler" not in done.stdout  # built-in: validated, not skipped
    report = checkov(on.out / "kubernetes")
    assert [c["check_id"] for c in report["results"]["failed_checks"]] == []
