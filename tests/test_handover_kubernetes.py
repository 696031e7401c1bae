"""Rolling updates on Kubernetes that fail no work (spec.Handover, platforms/kubernetes_handover.py).

For every stack on Kubernetes, each handover workload (api, worker, web, edge) rolls one new pod
at a time without going below its count, counts a pod only once its readiness probe passes, and
lets an old pod leave in order: a preStop pause while its clients drop it, then the stop signal,
then a grace period that covers its drain. The expected figures are built here from the
constants they stand for (the edge's read timeout and upstream keepalive, the propagation and
load-balancer times, web's drain, the worker's configured grace), not copied from the program."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from harness import GATEWAY_ADDRESSES, WORKLOADS, Deployment, run_program, stack_config

from components import api, load_balancer, web, worker
from components.conf.nginx import API_READ_TIMEOUT_SECONDS, UPSTREAM_KEEPALIVE_TIME_SECONDS
from components.config import Resources
from components.config.model import WorkerSettings
from components.platforms.kubernetes_handover import (
    ENDPOINT_PROPAGATION_SECONDS,
    LOAD_BALANCER_CHECK_SECONDS,
    STOP_MARGIN_SECONDS,
    departure,
)
from components.spec import Handover, Port, Probe, Security, ServiceSpec

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STACKS = ("dev", "staging", "prod")
HANDOVER = (api.NAME, worker.NAME, web.NAME, load_balancer.NAME)
GATEWAY = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}


VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "gateway": GATEWAY,
    "worker-grace-400": {"worker.stopGraceSeconds": 400},
}


@functools.cache
def deployed(stack: str, variant: str = "") -> Deployment:
    return run_program(stack, overrides={"target": "kubernetes", **VARIANTS[variant]})


def workload(d: Deployment, name: str) -> dict[str, Any]:
    [found] = [r.plain for r in d.registrations if r.type in WORKLOADS and r.name == name]
    return found


def pod_of(d: Deployment, name: str) -> dict[str, Any]:
    return workload(d, name)["spec"]["template"]["spec"]


def main_container(d: Deployment, name: str) -> dict[str, Any]:
    [container] = [c for c in pod_of(d, name)["containers"] if c["name"] == name]
    return container


def pause_of(d: Deployment, name: str) -> float | None:
    lifecycle = main_container(d, name).get("lifecycle")
    return None if lifecycle is None else lifecycle["preStop"]["sleep"]["seconds"]


def worker_grace(stack: str) -> int:
    """worker.stopGraceSeconds as the stack sets it (or the model's default)."""
    default = WorkerSettings.model_fields["stop_grace_seconds"].default
    return int(stack_config(stack).get("worker.stopGraceSeconds", default))


# What the edge reaches api and web through: their ClusterIP Service, so an old pod is still
# sent new connections until every kube-proxy has the change, and kept-alive ones until the edge
# stops reusing them.
BEHIND_THE_EDGE = ENDPOINT_PROPAGATION_SECONDS + UPSTREAM_KEEPALIVE_TIME_SECONDS


@pytest.mark.parametrize("stack", STACKS)
def test_the_api_pauses_for_its_whole_drain_before_the_signal(stack: str) -> None:
    # NestJS exits at once on SIGTERM: the last request it accepted (at most the edge's read
    # timeout) must be over when the signal comes, so the pause holds the whole drain.
    d = deployed(stack)
    pause = BEHIND_THE_EDGE + API_READ_TIMEOUT_SECONDS
    assert pause_of(d, api.NAME) == pause
    assert pod_of(d, api.NAME)["terminationGracePeriodSeconds"] == pause + STOP_MARGIN_SECONDS


@pytest.mark.parametrize("stack", STACKS)
def test_web_pauses_while_the_edge_drops_it_then_drains_itself(stack: str) -> None:
    d = deployed(stack)
    assert pause_of(d, web.NAME) == BEHIND_THE_EDGE
    grace = BEHIND_THE_EDGE + web.DRAIN_SECONDS + STOP_MARGIN_SECONDS
    assert pod_of(d, web.NAME)["terminationGracePeriodSeconds"] == grace


@pytest.mark.parametrize("stack", STACKS)
def test_the_edge_behind_a_load_balancer_waits_for_its_check_both_ways(stack: str) -> None:
    # The stacks' exposure is loadBalancer: an old edge pod serves until the LB's check of its
    # node has failed; a new one counts only once the check can have admitted its node.
    d = deployed(stack)
    assert stack_config(stack)["kubernetes.exposure"] == "loadBalancer"
    pause = ENDPOINT_PROPAGATION_SECONDS + LOAD_BALANCER_CHECK_SECONDS
    assert pause_of(d, load_balancer.NAME) == pause
    grace = pause + API_READ_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS
    assert pod_of(d, load_balancer.NAME)["terminationGracePeriodSeconds"] == grace
    assert workload(d, load_balancer.NAME)["spec"]["minReadySeconds"] == LOAD_BALANCER_CHECK_SECONDS


def test_the_edge_behind_a_gateway_waits_for_the_gateway_alone() -> None:
    d = deployed("staging", "gateway")
    assert pause_of(d, load_balancer.NAME) == ENDPOINT_PROPAGATION_SECONDS
    grace = ENDPOINT_PROPAGATION_SECONDS + API_READ_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS
    assert pod_of(d, load_balancer.NAME)["terminationGracePeriodSeconds"] == grace
    # No load balancer's check to wait for: a new edge pod counts once ready.
    assert "minReadySeconds" not in workload(d, load_balancer.NAME)["spec"]
    # The services behind the edge do not depend on how the edge is exposed.
    assert pause_of(d, api.NAME) == BEHIND_THE_EDGE + API_READ_TIMEOUT_SECONDS
    assert pause_of(d, web.NAME) == BEHIND_THE_EDGE


@pytest.mark.parametrize("stack", STACKS)
def test_the_worker_gets_its_configured_grace_and_no_pause(stack: str) -> None:
    # Nobody connects to it (no ports, no Service): no pause. It finishes its jobs on SIGTERM
    # within worker.stopGraceSeconds, which the config keeps above the AI timeout.
    d = deployed(stack)
    assert main_container(d, worker.NAME).get("lifecycle") is None
    grace = pod_of(d, worker.NAME)["terminationGracePeriodSeconds"]
    assert grace == worker_grace(stack) + STOP_MARGIN_SECONDS
    assert grace >= worker_grace(stack)


def test_the_worker_grace_follows_its_setting() -> None:
    assert worker_grace("staging") != 400
    d = deployed("staging", "worker-grace-400")
    assert pod_of(d, worker.NAME)["terminationGracePeriodSeconds"] == 400 + STOP_MARGIN_SECONDS


@pytest.mark.parametrize("stack", STACKS)
def test_handover_workloads_roll_one_ready_pod_at_a_time(stack: str) -> None:
    d = deployed(stack)
    for name in HANDOVER:
        found = [r for r in d.registrations if r.type == DEPLOYMENT and r.name == name]
        assert len(found) == 1, name
        spec = found[0].plain["spec"]
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        # A readiness probe on the service's own container: what "ready" waits for.
        assert "readinessProbe" in main_container(d, name), name
        pod = pod_of(d, name)
        # Only the service's container pauses: exporters and the Redis tunnel (a native sidecar,
        # stopped after it) keep their defaults.
        others = [c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] != name]
        assert all("lifecycle" not in c for c in others), name
        # The grace outlasts the pause: the kubelet never kills a pod still in its preStop hook.
        assert pod["terminationGracePeriodSeconds"] > (pause_of(d, name) or 0), name
    api_probe = main_container(d, api.NAME)["readinessProbe"]["httpGet"]
    assert (api_probe["path"], api_probe["port"]) == (api.HEALTH_PATH, api.PORT)


@pytest.mark.parametrize("stack", STACKS)
def test_services_without_a_handover_get_no_pause_and_the_default_grace(stack: str) -> None:
    # The control: the data services and the run-once jobs are stopped, not handed over.
    d = deployed(stack)
    others = [r for r in d.registrations if r.type in WORKLOADS and r.name not in HANDOVER]
    assert {"minio", "api-migrate"} <= {r.name for r in others}
    assert {"redis", "redis-node"} & {r.name for r in others}
    for reg in others:
        spec = reg.plain["spec"]
        pod = spec["template"]["spec"]
        assert "terminationGracePeriodSeconds" not in pod, reg.name
        assert "minReadySeconds" not in spec, reg.name
        for container in pod["containers"] + pod.get("initContainers", []):
            assert "lifecycle" not in container, (reg.name, container["name"])


def _spec(**changes: Any) -> ServiceSpec:
    base: dict[str, Any] = {
        "name": "svc",
        "image": "example/svc:1",
        "resources": Resources(cpu_millis=100, memory_mb=64),
        "security": Security(run_as_user=1000),
        "probe": Probe(command=["true"], http_path="/", port=8080),
        "ports": [Port("http", 8080)],
        "handover": Handover(drain_seconds=7),
    }
    return ServiceSpec(**(base | changes))


def test_a_handover_without_a_readiness_probe_is_refused() -> None:
    # Ready would mean started: the rollout would remove an old pod for one that does not serve.
    with pytest.raises(ValueError, match="svc: a handover needs a readiness probe"):
        departure(_spec(probe=None), public=False, load_balanced=False)
    assert departure(_spec(), public=False, load_balanced=False) is not None


def test_a_spec_without_a_handover_has_no_departure() -> None:
    assert departure(_spec(handover=None), public=False, load_balanced=False) is None
    assert departure(_spec(handover=None, probe=None), public=True, load_balanced=True) is None


def test_the_grace_never_drops_below_the_specs_own() -> None:
    found = departure(_spec(ports=[], stop_grace_seconds=500), public=False, load_balanced=False)
    assert found is not None
    assert (found.pause_seconds, found.grace_seconds) == (0, 500)
    short = departure(_spec(ports=[], stop_grace_seconds=1), public=False, load_balanced=False)
    assert short is not None and short.grace_seconds == 7 + STOP_MARGIN_SECONDS
