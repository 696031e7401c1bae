"""The deploy's critical path: the longest chain of slow resources, each waiting for the one before.

A slow resource is one whose creation waits for something to run: on Docker a container that
pulumi-docker waits for to be healthy (`wait`) or to exit (`attach`: run-once jobs); on
Kubernetes a workload pulumi-kubernetes awaits (Deployment, StatefulSet, Job) and the
CloudNativePG Cluster (`pulumi.com/waitFor: condition=Ready`). Config carriers (created, never
started), exporters (started, not awaited) and plain objects are not. A chain follows the
dependencies the engine records, a component standing for its children, as Pulumi orders them.

What each step needs is in components/stack.py: migrations wait for PostgreSQL alone; api and
worker for the migrations and Redis, side by side; the Redis tunnel beside each of them for Redis
alone (spec.Sidecar.after); the edge for none of them (nginx's `resolve`, LoadBalancer). On Docker
a volume the image owns needs no root job first (spec.Volume.owned_by_image), and the job that
retires the earlier logins exists from the second rotation on (Database.retire_previous_logins).
"""

from __future__ import annotations

import functools

import pytest
from harness import Deployment, Registration, run_program, stack_overrides

CONTAINER = "docker:index/container:Container"
AWAITED = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:postgresql.cnpg.io/v1:Cluster",
}
# The longest chain allowed, every target (issue 14). Kubernetes: PostgreSQL, the job that lets
# the new login role act as the owner, the migrations, the api. Docker: PostgreSQL, the
# credentials job (the generation's login role), the migrations, the api; or, with backups, the
# object store's volume owner (Silo's image leaves /data to root), the store, its bootstrap, then
# pgBackRest's scheduler.
LONGEST = 4


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
    path = critical_path(run_program(stack, overrides=stack_overrides(stack, target)))
    assert len(path) <= LONGEST, path
    # The data services come first and the app after its migrations: the measure sees the chain.
    assert path[0].startswith(("postgres", "redis", "minio")), path


def test_the_first_deploy_before_any_rotation_has_no_job_to_retire_logins() -> None:
    """Nothing to retire at rotation 0, nor at 1 (generation 0's clients still drain); from the
    second rotation on the job is there."""
    names = {r.name for r in run_program("dev", overrides={"target": "docker"}).of_type(CONTAINER)}
    assert not any(n.startswith("postgres-retire-logins") for n in names), sorted(names)
    first = run_program("dev", overrides={"target": "docker", "secrets.rotation": 1}).of_type(CONTAINER)
    assert not any(r.name.startswith("postgres-retire-logins") for r in first), sorted(r.name for r in first)
    rotated = run_program("dev", overrides={"target": "docker", "secrets.rotation": 2}).of_type(CONTAINER)
    assert any(r.name.startswith("postgres-retire-logins") for r in rotated)


def test_volumes_the_image_owns_get_no_volume_owner_on_docker() -> None:
    """PostgreSQL's and Redis's images own their volumes' directories (Docker copies the owner into
    a new volume; tests/realdocker deploys on it); Silo's leaves /data to root, so its job stays."""
    names = {r.name for r in run_program("dev", overrides={"target": "docker"}).of_type(CONTAINER)}
    assert "minio-volume-owner" in names
    assert not names & {"postgres-volume-owner", "redis-volume-owner"}, sorted(names)


def migration_job(d: Deployment) -> str:
    (name,) = [r.name for r in d.of_type(CONTAINER) if r.name.startswith("api-migrate-") and "config" not in r.name]
    return name


def test_the_api_s_tunnel_waits_for_redis_not_for_the_migrations() -> None:
    d = run_program("dev", overrides={"target": "docker"})
    tunnel, migrate = d.named("api-redis-tls", CONTAINER), d.named(migration_job(d), CONTAINER)
    assert d.depends_on(tunnel, d.named("redis", CONTAINER)) and not d.depends_on(tunnel, migrate)
    api = d.named("api", CONTAINER)
    assert d.depends_on(api, migrate) and d.depends_on(api, tunnel)


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_the_edge_starts_beside_api_and_web(target: str) -> None:
    d = run_program("dev", overrides={"target": target})
    kind = CONTAINER if target == "docker" else "kubernetes:apps/v1:Deployment"
    edge = d.named("edge", kind)
    for upstream in ("api", "web"):
        assert not d.depends_on(edge, d.named(upstream, kind)), upstream


def test_control_the_measure_sees_a_chain_made_longer() -> None:
    """A chain made one step longer by hand is measured one step longer."""
    d = run_program("dev", overrides={"target": "kubernetes"})
    path = critical_path(d)
    last = next(r for r in d.registrations if r.name == path[-1] and is_slow(r))
    job = next(r for r in d.of_type("kubernetes:batch/v1:Job") if r.name not in path)
    job.dependencies.append(last.urn)
    assert len(critical_path(d)) == len(path) + 1
