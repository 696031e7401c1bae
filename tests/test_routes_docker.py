"""The edge's routes on Docker (spec.Routes, platforms/docker_routes.py), as the program declares them.

On Docker the edge takes api's and web's instances from files a route container per upstream
writes once that upstream's instances are all healthy; the edge reloads on the change and the
route container is healthy once the edge says it loaded them (run by real nginx in
tests/test_routes_servers.py, and through upgrades on a real daemon in tests/realdocker). On
Kubernetes the edge names the Services and nothing is written. Changes are checked by running
the program twice, the second time on the first run's state (as `pulumi up` keeps it).
"""

from __future__ import annotations

import functools
import re

import pytest
from harness import (
    CONTAINER,
    PINNED,
    Deployment,
    Registration,
    delivered,
    k8s_file,
    reveal,
    run_program,
    stack_overrides,
)

from components import api, load_balancer, web
from components.conf import nginx
from components.platforms import docker_routes

VOLUME = "docker:index/volume:Volume"
ROLE = "aixsss.io/role"
STACKS = ("dev", "staging", "prod")
UPSTREAMS = {api.NAME: api.PORT, web.NAME: web.PORT}
# Each instance is checked on its port with its service's probe path (the api's: through its front).
CHECKED = {api.NAME: api.HEALTH_PATH, web.NAME: "/"}
GIVEN = {"app.source": "", **PINNED}
ROUTES = load_balancer.ROUTES_DIR


@functools.cache
def given(stack: str) -> Deployment:
    return run_program(stack, overrides={**stack_overrides(stack, "docker"), **GIVEN})


def labels(reg: Registration) -> dict[str, str]:
    return {item["label"]: item["value"] for item in reg.plain.get("labels") or []}


def routes_spec() -> load_balancer.Routes:
    return load_balancer.Routes(
        directory=ROUTES,
        line=nginx.UPSTREAM_SERVER,
        check=load_balancer.ROUTE_CHECK,
        reload=("/bin/sh", "-c", load_balancer.RELOAD_SCRIPT),
    )


def owners(d: Deployment, service: str) -> list[str]:
    """The Docker names of ``service``'s namespace owners: the containers on its networks (the
    others join one of them), one per replica."""
    return sorted(
        reveal(r.plain["name"])
        for r in d.of_type(CONTAINER)
        if labels(r).get("aixsss.service") == service and r.plain.get("networksAdvanced")
    )


def written(reg: Registration) -> str:
    [text] = reveal(reg.inputs["command"])
    return text


def test_the_edge_reads_its_instances_from_routes_on_docker_and_names_the_services_on_kubernetes() -> None:
    d = given("prod")
    conf = delivered(d, d.named("edge", CONTAINER))["/etc/aixsss/nginx.conf"]["content"]
    for upstream in UPSTREAMS:
        block = conf[conf.index(f"  upstream {upstream} {{") :].split("  }", 1)[0].splitlines()[1:]
        assert [line.strip() for line in block if line.strip().startswith(("server", "include"))] == [
            nginx.NO_INSTANCE_YET,
            f"include {ROUTES}/live/{upstream}/*.conf;",
        ]
    k8s = run_program("prod", overrides=stack_overrides("prod", "kubernetes"))
    k8s_conf = k8s_file(k8s, "edge", "/etc/aixsss/nginx.conf")
    assert "include" not in k8s_conf.split("upstream api", 1)[1].split("}", 1)[0]
    assert f"server api.aixsss-prod.svc.cluster.local:{api.PORT} resolve max_fails=1" in k8s_conf
    assert not [r for r in k8s.of_type(CONTAINER)]


@pytest.mark.parametrize("stack", STACKS)
def test_each_upstream_is_announced_to_the_edge_which_checks_its_new_instances(stack: str) -> None:
    d = given(stack)
    edge = d.named("edge", CONTAINER)
    [volume] = [v for v in d.of_type(VOLUME) if v.name == "edge-routes"]
    owner_job = d.named("edge-routes-volume-owner", CONTAINER)
    assert owner_job.plain["volumes"] == [{"volumeName": volume.plain["name"], "containerPath": ROUTES}]
    for upstream, port in UPSTREAMS.items():
        reg = d.named(f"edge-routes-{upstream}", CONTAINER)
        instances = owners(d, upstream)
        apps = [r for r in d.of_type(CONTAINER) if re.fullmatch(rf"{upstream}(-\d+)?", r.name)]
        assert len(instances) == len(apps) >= 1, (instances, apps)
        text = docker_routes.file_for(
            routes_spec(), upstream, [(f"{n}:{port}", f"http://{n}:{port}{CHECKED[upstream]}") for n in instances]
        )
        # Every instance by its container's name, in the edge's own server line, with its check.
        assert written(reg) == text
        body = text.splitlines()[1:]
        assert body == [f"# check http://{n}:{port}{CHECKED[upstream]}" for n in instances] + [
            nginx.UPSTREAM_SERVER.format(address=f"{n}:{port}") for n in instances
        ]
        assert reg.plain["entrypoints"] == docker_routes.announcing(routes_spec(), upstream)
        assert reg.plain["healthcheck"]["tests"] == ["CMD", *docker_routes.loaded_check(routes_spec(), upstream)]
        # What the check reads back from the file: its `# routes` line, with the routes' digest.
        assert re.fullmatch(rf"# routes {upstream} [0-9a-f]{{16}}", text.splitlines()[0])
        # `pulumi up` waits for the edge to take it before it goes on (and deletes an old set),
        # as long as the instances may take to start.
        assert reg.plain["wait"] is True and reg.plain["mustRun"] is True
        assert reg.plain["waitTimeout"] > 180 and reg.plain["healthcheck"]["startPeriod"] == "180s"
        # Written once everything its check goes through is created (the api's app and fronts,
        # which nothing awaits: the edge checks them, and the deploy's critical path stays short,
        # tests/test_deploy_order.py), so its wait runs with their start and needs nothing
        # created after it.
        if upstream == api.NAME:
            fronts = [r for r in d.of_type(CONTAINER) if labels(r).get(ROLE) == "drain-front"]
            assert fronts and all(r.urn in reg.dependencies and not r.plain.get("wait") for r in fronts)
        assert all(r.urn in reg.dependencies for r in apps), upstream
        assert edge.urn in reg.dependencies and d.depends_on(reg, owner_job)
        # The edge's image and user, nothing else: no network, a read-only root, no capabilities.
        assert reg.plain["image"] == edge.plain["image"] and reg.plain["user"] == edge.plain["user"]
        assert reg.plain["networkMode"] == "none" and reg.plain["readOnly"] is True
        assert reg.plain["capabilities"] == {"drops": ["ALL"]}
        assert reg.plain["volumes"] == [{"volumeName": volume.plain["name"], "containerPath": ROUTES}]
        assert labels(reg)[ROLE] == "routes" and labels(reg)["aixsss.io/routes"] == upstream
        # Replaced delete-first under its fixed name: removing it changes nothing routed.
        assert reg.delete_before_replace is None
    # The edge runs its command under the watcher, with the routes volume writable (it records
    # what it loaded), once the volume is its user's.
    assert edge.plain["entrypoints"][:3] == docker_routes.watching(routes_spec(), [])[:3]
    assert edge.plain["entrypoints"][3:5] == ["routes", ROUTES]
    assert edge.plain["entrypoints"][5] in ("nginx", "/bin/sh")
    assert {"volumeName": volume.plain["name"], "containerPath": ROUTES} in edge.plain["volumes"]
    assert owner_job.urn in edge.dependencies


def test_an_upgrade_announces_the_new_instances_of_what_it_replaced() -> None:
    before = given("staging")
    after = run_program(
        "staging",
        overrides={**stack_overrides("staging", "docker"), **GIVEN, "images.api": "ghcr.io/aixsss/api:9.9.9"},
        prior=before,
    )
    old, new = written(before.named("edge-routes-api", CONTAINER)), written(after.named("edge-routes-api", CONTAINER))
    assert old != new
    assert set(owners(after, "api")).isdisjoint(owners(before, "api"))
    assert all(f"server {n}:{api.PORT} " in new for n in owners(after, "api"))
    # web was not replaced: its routes are the same, so its route container is not either.
    assert written(before.named("edge-routes-web", CONTAINER)) == written(after.named("edge-routes-web", CONTAINER))
