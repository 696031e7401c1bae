"""Upgrades on Docker that fail no work (spec.Handover, platforms/docker.py `_side_by_side`).

For every stack on Docker, each service with a handover that publishes no host port and holds no
data (api, worker, web) is replaced side by side: all its containers and config volumes carry its
revision in their names and are created before the old ones are deleted (delete_before_replace
False), and the revision is drawn anew exactly when something its containers are made of changes.
Everything else keeps fixed names and the provider's own replacement order; the edge, which has a
handover but publishes 80 and 443, is the control. The api, which exits at once on SIGTERM, sits
behind a draining nginx front in its network namespace (conf/drain_front.py, run by real nginx in
tests/test_drain_front_servers.py): deleted first, stopped with SIGQUIT, given the edge's read
timeout to finish. Changes are checked by running the program twice, the second time on the first
run's state (as `pulumi up` keeps it)."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from harness import (
    CONTAINER,
    PINNED,
    Deployment,
    Registration,
    delivered,
    reveal,
    run_program,
    stack_overrides,
)

from components import api, web
from components.conf import nginx
from components.config.model import WorkerSettings
from components.platforms.docker import DockerPlatform
from components.spec import ServiceSpec

VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
REVISION = "random:index/randomId:RandomId"
SERVICE_LABEL = "aixsss.service"
ROLE = "aixsss.io/role"
STACKS = ("dev", "staging", "prod")
SIDE_BY_SIDE = {"api", "worker", "web"}
# Given app images instead of app.source, so a test can change one (dev and staging build them).
GIVEN = {"app.source": "", **PINNED}
FRONT_CONF = "/etc/aixsss/front.conf"


# --------------------------------------------------------------------------- running the program


@functools.cache
def _run(stack: str) -> tuple[Deployment, dict[str, ServiceSpec]]:
    """The stack on Docker, and the spec of every service the platform placed (as it got them)."""
    specs: dict[str, ServiceSpec] = {}
    original = DockerPlatform.place

    def recording(self: DockerPlatform, spec: ServiceSpec, *args: Any) -> Any:
        specs[spec.name] = spec
        return original(self, spec, *args)

    with mock.patch.object(DockerPlatform, "place", recording):
        d = run_program(stack, overrides=stack_overrides(stack, "docker"))
    return d, specs


def first(stack: str) -> Deployment:
    return _run(stack)[0]


@functools.cache
def given(stack: str) -> Deployment:
    """The stack on Docker with given app images (GIVEN)."""
    return run_program(stack, overrides={**stack_overrides(stack, "docker"), **GIVEN})


def again(stack: str, prior: Deployment, **changes: Any) -> Deployment:
    return run_program(stack, overrides={**stack_overrides(stack, "docker"), **GIVEN, **changes}, prior=prior)


def revisions(d: Deployment) -> dict[str, str]:
    """Each revisioned service's revision (`<service>-revision`), by service."""
    return {r.name.removesuffix("-revision"): reveal(r.outputs["hex"]) for r in d.of_type(REVISION)}


def drawn(before: Deployment, after: Deployment) -> set[str]:
    """The services whose revision the second run drew anew."""
    old, new = revisions(before), revisions(after)
    assert set(old) == set(new) == SIDE_BY_SIDE, (old, new)
    return {service for service in old if old[service] != new[service]}


def labels(reg: Registration) -> dict[str, str]:
    return {item["label"]: item["value"] for item in reg.plain.get("labels") or []}


def service_of(d: Deployment, reg: Registration) -> str:
    """A container's service (its `aixsss.service` label); a volume's, the one service whose
    containers mount it (volumes carry no service label)."""
    if reg.type == CONTAINER:
        return labels(reg)[SERVICE_LABEL]
    name = reg.plain["name"]
    users = {
        labels(c)[SERVICE_LABEL]
        for c in d.of_type(CONTAINER)
        if any(v["volumeName"] == name for v in c.plain.get("volumes") or [])
    }
    assert users, f"{reg.name}: mounted by no container"
    # The edge's ACME volumes are the edge's and its ACME client's: neither is side by side.
    assert len(users) == 1 or not users & SIDE_BY_SIDE, (reg.name, users)
    return "+".join(sorted(users))


def physical(d: Deployment) -> Iterator[tuple[Registration, str, str]]:
    """Every container and volume with its service and its Docker name."""
    for reg in d.of_type(CONTAINER) + d.of_type(VOLUME):
        yield reg, service_of(d, reg), reg.plain["name"]


def container(d: Deployment, name: str) -> Registration:
    return d.named(name, CONTAINER)


def env(reg: Registration) -> dict[str, str]:
    return dict(item.split("=", 1) for item in reveal(reg.inputs["envs"]))


def replicas(d: Deployment, service: str) -> list[Registration]:
    """``service``'s own containers (one per replica: `api`, or `api-1`, `api-2`, ...)."""
    found = [r for r in d.of_type(CONTAINER) if re.fullmatch(rf"{service}(-\d+)?", r.name)]
    assert found, service
    return found


# --------------------------------------------------------------------------- which services, which names


@pytest.mark.parametrize("stack", STACKS)
def test_exactly_the_handover_services_without_host_ports_or_data_are_revisioned(stack: str) -> None:
    d, specs = _run(stack)
    handover = {name for name, spec in specs.items() if spec.handover is not None}
    published = {name for name, spec in specs.items() if any(p.published for p in spec.ports)}
    # Control: the edge has a handover too, but it holds 80 and 443, which a second set could
    # not bind while the first runs: it is replaced stop-first, under fixed names.
    assert handover == SIDE_BY_SIDE | {"edge"} and "edge" in published
    assert not any(specs[name].stateful or specs[name].run_once for name in SIDE_BY_SIDE)
    assert set(revisions(d)) == handover - published == SIDE_BY_SIDE
    for service, revision in revisions(d).items():
        assert re.fullmatch(r"[0-9a-f]{8}", revision), (service, revision)
        reg = d.named(f"{service}-revision", REVISION)
        # Whatever the keepers digest (the environment, secrets included) stays out of plain state.
        assert reg.plain["byteLength"] == 4 and "keepers" in reg.inputs
        assert reveal(reg.inputs["keepers"]) != reg.inputs["keepers"], "the keepers are secret"


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_and_config_volume_of_a_revisioned_service_carries_its_revision(stack: str) -> None:
    d = first(stack)
    revision = revisions(d)
    prefix = f"aixsss-{stack}"
    seen: dict[str, set[str]] = {service: set() for service in SIDE_BY_SIDE}
    for reg, service, name in physical(d):
        if service in SIDE_BY_SIDE:
            seen[service].add(reg.name)
            rev = re.escape(revision[service])
            if reg.type == CONTAINER:
                assert name == f"{prefix}-{reg.name}.{revision[service]}", (reg.name, name)
            else:
                # Only config volumes: a service replaced side by side holds no data.
                assert labels(reg)[ROLE] == "config", reg.name
                assert re.fullmatch(rf"{prefix}-{re.escape(reg.name)}-[0-9a-f]{{8}}\.{rev}", name), (reg.name, name)
            # Created before the old set is deleted (pulumi-docker would delete first).
            assert reg.delete_before_replace is False, reg.name
        else:
            # The edge, the data services, the jobs and their carriers: fixed names, and the
            # provider's replacement order (the option not set at all).
            if reg.type == CONTAINER or labels(reg).get(ROLE) != "config":
                assert name == f"{prefix}-{reg.name}", (reg.name, name)
            else:
                assert re.fullmatch(rf"{prefix}-{re.escape(reg.name)}-[0-9a-f]{{8}}", name), (reg.name, name)
            assert reg.delete_before_replace is None, (reg.name, service)
    # Not vacuous: each service's own containers, its carrier and volume, and the api's tunnel
    # sidecars and front (with theirs) are among them; the edge is on the fixed side.
    for service in SIDE_BY_SIDE:
        mains = {r.name for r in replicas(d, service)}
        assert mains | {f"{service}-config"} <= seen[service], (service, seen[service])
    sidecars = {f"{r.name}-{part}" for r in replicas(d, "api") for part in ("front", "redis-tls")}
    assert sidecars | {"api-redis-tls-config"} <= seen["api"], seen["api"]
    assert {f"{r.name}-redis-tls" for r in replicas(d, "worker")} <= seen["worker"], seen["worker"]
    assert container(d, "edge").plain["name"] == f"{prefix}-edge"


# --------------------------------------------------------------------------- when a revision is drawn


def collisions(before: Deployment, after: Deployment) -> list[str]:
    """Containers and volumes the second run changes under the name they have, with creation
    first: the new one would be refused (the name is taken) while the old one runs."""
    old = {r.urn: r for r in before.registrations}
    found = []
    for reg in after.of_type(CONTAINER) + after.of_type(VOLUME):
        prior = old.get(reg.urn)
        if prior is None or reg.delete_before_replace is not False:
            continue
        if reveal(prior.inputs) != reveal(reg.inputs) and prior.plain["name"] == reg.plain["name"]:
            found.append(reg.name)
    return found


def renamed(before: Deployment, after: Deployment) -> set[str]:
    """The services any of whose containers or volumes has a new name."""
    old = {r.urn: r.plain["name"] for r in before.of_type(CONTAINER) + before.of_type(VOLUME)}
    return {service for reg, service, name in physical(after) if reg.urn in old and old[reg.urn] != name}


@pytest.mark.parametrize("stack", STACKS)
def test_an_unchanged_stack_keeps_every_revision_and_name(stack: str) -> None:
    before = first(stack)
    after = run_program(stack, overrides=stack_overrides(stack, "docker"), prior=before)
    assert drawn(before, after) == set() and renamed(before, after) == set()
    assert revisions(after) == revisions(before)
    assert collisions(before, after) == []


# What each change draws: the services whose containers it changes, and only those.
CHANGES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "api image": ({"images.api": "ghcr.io/aixsss/api:1.0.1"}, {"api"}),
    # A new app image is a new release, whose name (derived from the three references when none
    # is configured: releases.py) the api's release record carries.
    "worker image": ({"images.worker": "ghcr.io/aixsss/worker:1.0.1"}, {"worker", "api"}),
    "web image": ({"images.web": "ghcr.io/aixsss/web:1.0.1"}, {"web", "api"}),
    "web cpu": ({"web.cpuMillis": 300}, {"web"}),
    # The rotated passwords are in api's and worker's environment; web holds none of them.
    "rotation": ({"secrets.rotation": 1}, {"api", "worker"}),
    # nginx: the api's front and the api's and worker's Redis tunnels run it, web does not.
    "edge image": ({"images.edge": "nginxinc/nginx-unprivileged:1.29.1-alpine"}, {"api", "worker"}),
}


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_draws_the_revisions_of_the_services_it_changes(stack: str, change: str) -> None:
    overrides, expected = CHANGES[change]
    before = given(stack)
    after = again(stack, before, **overrides)
    assert drawn(before, after) == expected
    # Every container and volume of those has a new name, and none of the others.
    assert renamed(before, after) == expected
    assert collisions(before, after) == []
    # What a revision follows: the change reached a container of each of them.
    changed = {labels(after.named(name, CONTAINER))[SERVICE_LABEL] for name in inputs_changed(before, after)}
    assert changed >= expected, changed


# Settings that reach no container of the stack on Docker: the first two are read on Kubernetes
# only (autoscaling), the third by Redis's volume alone.
UNREAD = {"api.maxReplicas": 5, "worker.queueLengthTarget": 9, "cache.storageGb": 3}


@functools.cache
def unread_changed(key: str) -> Deployment:
    return again("staging", given("staging"), **{key: UNREAD[key]})


def inputs_changed(before: Deployment, after: Deployment) -> set[str]:
    """Containers whose inputs the second run changes beyond the revision in the names."""

    def unrevisioned(reg: Registration) -> str:
        return re.sub(r"\.[0-9a-f]{8}\b", "", json.dumps(reveal(reg.inputs), sort_keys=True))

    old = {r.urn: r for r in before.of_type(CONTAINER)}
    return {r.name for r in after.of_type(CONTAINER) if r.urn in old and unrevisioned(r) != unrevisioned(old[r.urn])}


@pytest.mark.parametrize("key", list(UNREAD))
def test_a_setting_no_container_reads_changes_no_container(key: str) -> None:
    # The premise of the next test: whatever its revision, no container of the stack differs.
    assert inputs_changed(given("staging"), unread_changed(key)) == set()


@pytest.mark.parametrize("key", list(UNREAD))
def test_a_setting_no_container_reads_draws_no_revision(key: str) -> None:
    assert drawn(given("staging"), unread_changed(key)) == set()


def with_image_id(prior: Deployment, image: str) -> Deployment:
    """``prior`` as a refresh leaves it once the tag of ``image`` (a RemoteImage) names a new
    image: the same inputs, a new id."""
    regs = []
    for r in prior.registrations:
        if r.type == REMOTE_IMAGE and r.name == image:
            assert r.outputs["imageId"] != "sha256:" + "e" * 64
            r = dataclasses.replace(r, outputs={**r.outputs, "imageId": "sha256:" + "e" * 64})
        regs.append(r)
    assert regs != prior.registrations, image
    return dataclasses.replace(prior, registrations=regs)


# One stack of one instance each, and prod's replicas (dev differs from staging only in settings
# these images do not reach).
@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("api-image", {"api"}),
        # The front runs the tunnel's image (one resource): only its id says it changed.
        ("api-redis-tls-image", {"api"}),
        ("worker-image", {"worker"}),
        ("web-image", {"web"}),
        # Control: the edge is replaced under its fixed name (stop-first).
        ("edge-image", set()),
    ],
)
def test_a_new_image_under_the_same_tag_draws_a_revision(stack: str, image: str, expected: set[str]) -> None:
    prior = with_image_id(given(stack), image)
    after = again(stack, prior)
    assert drawn(prior, after) == expected
    assert renamed(prior, after) == expected
    assert collisions(prior, after) == []
    if not expected:
        # The control changed something: the edge runs the new image, under its old name.
        assert container(after, "edge").plain["image"] == "sha256:" + "e" * 64
        assert container(after, "edge").plain["name"] == container(prior, "edge").plain["name"]


# --------------------------------------------------------------------------- the api's draining front


@pytest.mark.parametrize("stack", STACKS)
def test_the_api_listens_behind_a_draining_front_in_its_namespace(stack: str) -> None:
    d = first(stack)
    edge_conf = delivered(d, container(d, "edge"))["/etc/aixsss/nginx.conf"]["content"]
    # The edge takes the api's instances from its routes (tests/test_routes_docker.py).
    assert "include /etc/nginx/routes/live/api/*.conf;" in edge_conf
    for app in replicas(d, "api"):
        front = container(d, f"{app.name}-front")
        assert front.plain["networkMode"] == app.plain["networkMode"]
        assert front.plain["networkMode"].startswith("container:")
        # Depends on the api container: created after it, deleted before it.
        assert app.urn in front.dependencies
        assert d.depends_on(front, app) and not d.depends_on(app, front)
        conf = delivered(d, front)[FRONT_CONF]["content"].splitlines()
        assert f"    listen {api.PORT};" in conf
        assert app.plain["networkMode"] != "none"
        # The app moved to the port the front forwards to, on loopback.
        assert env(app)["PORT"] == str(api.APP_PORT) != str(api.PORT)
        assert f"    server 127.0.0.1:{env(app)['PORT']};" in conf
        assert f"      proxy_read_timeout {nginx.API_READ_TIMEOUT_SECONDS}s;" in conf
        assert front.plain["entrypoints"] == ["nginx", "-c", FRONT_CONF, "-g", "daemon off;"]
        # nginx's graceful stop, as long as the edge lets a request run.
        assert front.plain["stopSignal"] == "SIGQUIT"
        assert front.plain["destroyGraceSeconds"] == nginx.API_READ_TIMEOUT_SECONDS
        assert front.plain["stopTimeout"] == nginx.API_READ_TIMEOUT_SECONDS
        # The api stops at once on SIGTERM: no grace of its own, the front drained it already.
        assert "destroyGraceSeconds" not in app.plain and "stopTimeout" not in app.plain
        # `pulumi up` waits for neither: the edge's route container waits until the edge checked
        # every new front the way the front's own check goes, through it to the app.
        assert not front.plain.get("wait") and not app.plain.get("wait")
        assert front.urn in d.named("edge-routes-api", CONTAINER).dependencies
        check = front.plain["healthcheck"]["tests"]
        assert check[-1] == f"http://127.0.0.1:{api.PORT}{api.HEALTH_PATH}"
        assert labels(front)[ROLE] == "drain-front"


def test_what_waits_for_the_api_waits_for_the_edge_to_take_it() -> None:
    # From the second rotation the job that retires the logins before the previous generation
    # waits until the api answers with the new one: once the edge took its new instances (its
    # route container, awaited), each checked through its front. (The previous generation, which
    # the old api still drains with, stays: tests/test_rotation_servers.py.)
    d = run_program("prod", overrides={**stack_overrides("prod", "docker"), "secrets.rotation": 2})
    [retire] = [
        r for r in d.of_type(CONTAINER) if r.name.startswith("postgres-retire-logins-") and not labels(r).get(ROLE)
    ]
    routes = container(d, "edge-routes-api")
    assert routes.urn in retire.dependencies and routes.plain["wait"] is True
    for app in replicas(d, "api"):
        assert container(d, f"{app.name}-front").urn in routes.dependencies, app.name


@pytest.mark.parametrize("stack", STACKS)
def test_each_service_gets_its_drain_as_grace(stack: str) -> None:
    d = first(stack)
    default = WorkerSettings.model_fields["stop_grace_seconds"].default
    grace = int(d.config.get("aixsss:worker.stopGraceSeconds", default))
    expected = {"worker": grace, "web": web.DRAIN_SECONDS}
    for service, seconds in expected.items():
        for reg in replicas(d, service):
            assert reg.plain["destroyGraceSeconds"] == seconds, reg.name
            assert reg.plain["stopTimeout"] == seconds, reg.name
    # An api's tunnel stops last, once its front drained and its app stopped: nothing is left to
    # finish there, and the edge stopped sending to it before (its routes).
    for service in ("api", "worker"):
        for app in replicas(d, service):
            tunnel = container(d, f"{app.name}-redis-tls").plain
            assert tunnel["entrypoints"][0] == "nginx" and "destroyGraceSeconds" not in tunnel, app.name


def test_the_worker_grace_follows_its_setting() -> None:
    d = run_program("staging", overrides={**stack_overrides("staging", "docker"), "worker.stopGraceSeconds": 247})
    for reg in replicas(d, "worker"):
        assert reg.plain["destroyGraceSeconds"] == reg.plain["stopTimeout"] == 247, reg.name
