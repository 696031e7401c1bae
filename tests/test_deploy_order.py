"""The deploy's critical path: the longest chain of slow resources, each waiting for the one before.

A slow resource is one whose creation waits for something to run: on Docker a container that
pulumi-docker waits for to be healthy (`wait`) or to exit (`attach`: run-once jobs); on
Kubernetes a workload pulumi-kubernetes awaits (Deployment, StatefulSet, Job) and the
CloudNativePG Cluster (`pulumi.com/waitFor: condition=Ready`). Config carriers (created, never
started), exporters (started, not awaited) and plain objects are not. A chain follows the
dependencies the engine records, a component standing for its children, as Pulumi orders them.

What each step needs is in components/stack.py: migrations wait for PostgreSQL alone; api and
worker for the migrations and Redis, side by side; the Redis tunnel beside each of them for Redis
alone (spec.Sidecar.after); the edge for api and web only on Docker
(Platform.proxy_waits_for_upstreams).
"""

from __future__ import annotations

import functools

import pytest
from harness import ONE_HOST, Deployment, Registration, run_program

CONTAINER = "docker:index/container:Container"
AWAITED = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:postgresql.cnpg.io/v1:Cluster",
}
# The longest chain allowed per target. Kubernetes: PostgreSQL, the job that lets the new login
# role act as the owner, the migrations, the api. Docker, on the first deploy: the job that gives
# PostgreSQL's new volume to its user (Docker creates volumes owned by root; it never runs again),
# PostgreSQL, the credentials job (the generation's login role), the migrations, the api, then the
# edge (it waits for api: Platform.proxy_waits_for_upstreams) and, beside it, the job that retires
# the previous generation's login once api and worker run with the new one.
LONGEST = {"kubernetes": 4, "docker": 6}


def is_slow(r: Registration) -> bool:
    if r.type == CONTAINER:
        return bool(r.plain.get("wait") or r.plain.get("attach"))
    return r.type in AWAITED


def critical_path(d: Deployment) -> list[str]:
    regs = {r.urn: r for r in d.registrations}
    children: dict[str, list[str]] = {}
    for r in regs.values():
        children.setdefault(r.parent, []).append(r.urn)

    def resources(urn: str) -> list[str]:
        """A component's dependents wait for all of its custom resources (Pulumi expands it)."""
        if urn not in regs:
            return []
        if regs[urn].custom:
            return [urn]
        return [leaf for child in children.get(urn, []) for leaf in resources(child)]

    @functools.cache
    def longest(urn: str) -> tuple[str, ...]:
        before = max((longest(leaf) for dep in regs[urn].dependencies for leaf in resources(dep)), key=len, default=())
        return (*before, regs[urn].name) if is_slow(regs[urn]) else before

    return list(max((longest(u) for u, r in regs.items() if r.custom), key=len))


CASES = [(s, t) for s in ("dev", "staging", "prod") for t in ("docker", "kubernetes")]


@pytest.mark.parametrize(("stack", "target"), CASES, ids=[f"{s}-{t}" for s, t in CASES])
def test_the_critical_path_of_slow_resources_is_short(stack: str, target: str) -> None:
    overrides = {"target": target, **(ONE_HOST if (stack, target) == ("prod", "docker") else {})}
    path = critical_path(run_program(stack, overrides=overrides))
    assert len(path) <= LONGEST[target], path
    # The data service comes first and the app after its migrations: the measure sees the chain.
    assert path[0].startswith("postgres") or path[0].startswith("redis"), path


def migration_job(d: Deployment) -> str:
    (name,) = [r.name for r in d.of_type(CONTAINER) if r.name.startswith("api-migrate-") and "config" not in r.name]
    return name


def test_the_api_s_tunnel_waits_for_redis_not_for_the_migrations() -> None:
    d = run_program("dev", overrides={"target": "docker"})
    tunnel, migrate = d.named("api-redis-tls", CONTAINER), d.named(migration_job(d), CONTAINER)
    assert d.depends_on(tunnel, d.named("redis", CONTAINER)) and not d.depends_on(tunnel, migrate)
    api = d.named("api", CONTAINER)
    assert d.depends_on(api, migrate) and d.depends_on(api, tunnel)


def test_the_edge_waits_for_api_and_web_on_docker_only() -> None:
    docker = run_program("dev", overrides={"target": "docker"})
    edge = docker.named("edge", CONTAINER)
    assert docker.depends_on(edge, docker.named("api", CONTAINER))
    assert docker.depends_on(edge, docker.named("web", CONTAINER))
    k8s = run_program("dev", overrides={"target": "kubernetes"})
    deployment = "kubernetes:apps/v1:Deployment"
    for upstream in ("api", "web"):
        assert not k8s.depends_on(k8s.named("edge", deployment), k8s.named(upstream, deployment)), upstream


def test_control_the_measure_sees_a_chain_made_longer() -> None:
    """A chain made one step longer by hand is measured one step longer."""
    d = run_program("dev", overrides={"target": "kubernetes"})
    path = critical_path(d)
    last = next(r for r in d.registrations if r.name == path[-1] and is_slow(r))
    job = next(r for r in d.of_type("kubernetes:batch/v1:Job") if r.name not in path)
    job.dependencies.append(last.urn)
    assert len(critical_path(d)) == len(path) + 1
