"""The policy pack: each rule against a compliant and a violating resource, then every
resource of every stack, called through the ResourceValidationArgs the engine passes.

On Docker a service's files sit in its config carrier (`<service>-config`, created, never
started): the file-content cases weaken the carrier, and docker-config-delivered ties the pair."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from aixsss_policy.pack import resource_policies, resource_validator, stack_policies, stack_validator
from aixsss_policy.rules import RULES, STACK_RULES
from harness import ROOT, Deployment, Registration, reveal, run_program
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy
from rendering import SETTINGS

RULE = {r.name: r for r in RULES}
CASES = [(s, t) for s in ("dev", "staging", "prod") for t in ("docker", "kubernetes")]


def policy_config(stack: str) -> dict[str, Any]:
    """What a rule's get_config() returns under policy/config/<stack>.json."""
    return json.loads((ROOT / f"policy/config/{stack}.json").read_text())


def _opts(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def args_of(reg: Registration, props: dict[str, Any] | None = None, **config: Any) -> ResourceValidationArgs:
    props = reveal(reg.inputs) if props is None else props
    # Wrapped as the engine wraps them: Mapping/Sequence proxies that refuse unknown values.
    wrapped = unknown_checking_proxy(props)
    return ResourceValidationArgs(reg.type, wrapped, reg.urn, reg.name, _opts(reg.protect), None, config)


def violations(rule: str, args: ResourceValidationArgs) -> list[str]:
    found: list[str] = []
    resource_validator(RULE[rule])(args, lambda message, urn=None: found.append(message))
    return found


def stack_violations(deployment: Deployment, regs: list[Registration] | None = None) -> list[tuple[str, str]]:
    resources = [
        PolicyResource(
            r.type, unknown_checking_proxy(reveal(r.inputs)), r.urn, r.name, _opts(r.protect), None, None, [], {}
        )
        for r in regs or deployment.registrations
    ]
    found: list[tuple[str, str]] = []
    for rule in STACK_RULES:
        stack_validator(rule)(StackValidationArgs(resources), lambda m, urn=None, n=rule.name: found.append((n, m)))
    return found


def all_violations(deployment: Deployment, stack: str) -> list[tuple[str, str, str]]:
    per_rule = policy_config(stack)
    found = []
    for reg in deployment.registrations:
        if not reg.custom:
            continue
        for rule in RULES:
            config = per_rule.get(rule.name) if isinstance(per_rule.get(rule.name), dict) else {}
            found += [(rule.name, reg.name, m) for m in violations(rule.name, args_of(reg, **config))]
    return found + [(name, "stack", m) for name, m in stack_violations(deployment)]


@functools.cache
def deployed(stack: str, target: str) -> Deployment:
    # As tests/rendering.py renders them (prod on Docker: one edge per host).
    return run_program(stack, overrides={"target": target, **SETTINGS.get((stack, target), {})})


def _pick(deployment: Deployment, typ: str, name: str) -> Registration:
    return deployment.named(name, typ)


def _conf(props: dict[str, Any], suffix: str, edit: Callable[[str], str]) -> dict[str, Any]:
    """``props`` with the generated file ending in ``suffix`` edited (Docker upload or k8s key)."""
    for upload in props.get("uploads") or []:
        if upload["file"].endswith(suffix):
            upload["content"] = edit(upload["content"])
            return props
    for section in ("data", "stringData"):
        for key in props.get(section) or {}:
            if key.endswith(suffix):
                props[section][key] = edit(props[section][key])
                return props
    raise AssertionError(f"no {suffix} in these props")


def _believe_every_peer(conf: str, source: str) -> str:
    """nginx.conf taking X-Forwarded-For (real_ip_header) from ``source``."""
    assert conf.count("\n  limit_req_zone ") == 1
    return conf.replace("\n  limit_req_zone ", f"\n  set_real_ip_from {source};\n  limit_req_zone ")


def _unsafe_rollback(record: str) -> str:
    """A release record rolled back past r2, whose migrations were not declared compatible."""
    step = {"release": "r2", "migrations": ["001_add_tag"], "head": "001_add_tag", "backwardCompatible": False}
    rolled = {"migrationHead": "000_init", "rollbackFrom": "r2", "runsMigrations": False, "appliedSince": [step]}
    return json.dumps({**json.loads(record), **rolled})


def _container(props: dict[str, Any]) -> dict[str, Any]:
    return props["spec"]["template"]["spec"]["containers"][0]


CONTAINER, DEPLOYMENT = "docker:index/container:Container", "kubernetes:apps/v1:Deployment"
STATEFULSET, SERVICE = "kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:Service"
# PostgreSQL on Kubernetes: a CloudNativePG Cluster (the operator's pods are not resources here).
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
# (rule, stack, target, resource type, resource name, weakening, expected message fragment)
RULE_CASES: list[tuple[str, str, str, str, str, Callable[[dict[str, Any]], Any], str]] = [
    ("data-services-not-public", "staging", "docker", CONTAINER, "postgres",
     lambda p: p.update(ports=[{"internal": 5432, "external": 5432, "ip": "0.0.0.0"}]), "on 0.0.0.0:5432"),
    ("data-services-not-public", "staging", "kubernetes", SERVICE, "redis",
     lambda p: p["spec"].update(type="LoadBalancer"), "outside the cluster"),
    ("redis-auth-and-tls", "staging", "docker", CONTAINER, "redis-config",
     lambda p: _conf(p, "redis.conf", lambda c: c.replace("user default on resetpass ", "user default on nopass ")),
     "no requirepass and no default user with passwords"),
    ("redis-auth-and-tls", "staging", "docker", CONTAINER, "redis",
     lambda p: p.update(command=["redis-server"]), "without the generated redis.conf"),
    # Labelled a carrier but could start: it is the service, and must start with redis.conf.
    ("redis-auth-and-tls", "staging", "docker", CONTAINER, "redis-config",
     lambda p: p.update(start=True), "without the generated redis.conf"),
    ("redis-auth-and-tls", "staging", "kubernetes", "kubernetes:core/v1:Secret", "redis-secret-files",
     lambda p: _conf(p, "redis.conf", lambda c: c.replace("port 0\n", "port 6379\n")), "plain-text port is open"),
    ("minio-https-console-private", "staging", "docker", CONTAINER, "minio",
     lambda p: p.update(ports=[{"internal": 9001, "external": 9001, "ip": "127.0.0.1"}]), "console (port 9001)"),
    # Its certificates are not in the config volume it mounts read-only: nothing says they are there.
    ("minio-https-console-private", "staging", "docker", CONTAINER, "minio",
     lambda p: [v.update(readOnly=False) for v in p["volumes"]], "no public.crt in /etc/aixsss/minio-certs"),
    ("minio-https-console-private", "prod", "kubernetes", STATEFULSET, "minio",
     lambda p: _container(p).update(args=[a for a in _container(p)["args"] if a != "--certs-dir"]),
     "without --certs-dir"),
    # Its key is no longer among the items of the directory it mounts at /etc/aixsss.
    ("minio-https-console-private", "staging", "kubernetes", STATEFULSET, "minio",
     lambda p: [s["secret"].update(items=[]) for v in p["spec"]["template"]["spec"]["volumes"]
                for s in v.get("projected", {}).get("sources", []) if "secret" in s],
     "no private.key in /etc/aixsss/minio-certs"),
    ("images-pinned", "staging", "docker", "docker:index/remoteImage:RemoteImage", "web-image",
     lambda p: p.update(name="ghcr.io/aixsss/web:latest"), "is not pinned"),
    ("images-pinned", "prod", "kubernetes", DEPLOYMENT, "api",
     lambda p: _container(p).update(image="ghcr.io/aixsss/api"), "is not pinned"),
    ("images-pinned", "prod", "kubernetes", CNPG_CLUSTER, "postgres-cluster",
     lambda p: p["spec"].update(imageName="ghcr.io/cloudnative-pg/postgresql:latest"),
     "image ghcr.io/cloudnative-pg/postgresql:latest is not pinned"),
    ("resource-limits", "staging", "docker", CONTAINER, "api", lambda p: p.pop("memory"), "no memory limit"),
    ("resource-limits", "staging", "docker", CONTAINER, "api-config", lambda p: p.pop("cpus"), "no CPU limit"),
    ("resource-limits", "prod", "kubernetes", DEPLOYMENT, "worker",
     lambda p: _container(p)["resources"].pop("limits"), "no cpu limit"),
    ("resource-limits", "prod", "kubernetes", CNPG_CLUSTER, "postgres-cluster",
     lambda p: p["spec"]["resources"]["limits"].pop("memory"),
     "Cluster postgres-cluster has no memory limit for its instances"),
    ("health-checks", "staging", "docker", CONTAINER, "web", lambda p: p.pop("healthcheck"), "no healthcheck"),
    # A carrier needs none only while it cannot start.
    ("health-checks", "staging", "docker", CONTAINER, "redis-config",
     lambda p: p.update(restart="unless-stopped"), "no healthcheck"),
    ("health-checks", "prod", "kubernetes", DEPLOYMENT, "edge",
     lambda p: [_container(p).pop(k) for k in ("readinessProbe", "livenessProbe")], "no readiness or liveness"),
    ("non-root", "staging", "docker", CONTAINER, "worker", lambda p: p.update(user="0:0"), "runs as root"),
    ("non-root", "staging", "docker", CONTAINER, "minio-volume-owner",
     lambda p: p.update(networkMode="bridge"), "runs as root"),
    # The carrier runs as nobody only while it cannot run.
    ("non-root", "staging", "docker", CONTAINER, "edge-config",
     lambda p: p.update(networkMode="bridge", user="0:0"), "runs as root"),
    # postgres's pods are CloudNativePG's (uid 26, admitted by Pod Security restricted): the
    # StatefulSets the program still declares are redis's (in prod its HA nodes) and minio's.
    ("non-root", "prod", "kubernetes", STATEFULSET, "redis-node",
     lambda p: _container(p)["securityContext"].update(runAsUser=0), "may run as root"),
    # prod's HA nodes start from their script, not from redis.conf directly.
    ("redis-auth-and-tls", "prod", "kubernetes", "kubernetes:core/v1:Secret", "redis-node-secret-files",
     lambda p: _conf(p, "redis.conf", lambda c: c.replace("port 0\n", "port 6379\n")), "plain-text port is open"),
    ("redis-auth-and-tls", "prod", "kubernetes", STATEFULSET, "redis-node",
     lambda p: _container(p).update(command=["redis-server"]), "without the generated /redis-node-start.sh"),
    ("no-privilege-escalation", "staging", "docker", CONTAINER, "edge",
     lambda p: p.update(securityOpts=[]), "no-new-privileges"),
    ("no-privilege-escalation", "prod", "kubernetes", DEPLOYMENT, "api",
     lambda p: _container(p)["securityContext"].update(allowPrivilegeEscalation=True), "privilege escalation"),
    ("capabilities-dropped", "staging", "docker", CONTAINER, "minio",
     lambda p: p.update(capabilities={"drops": [], "adds": []}), "does not drop ALL"),
    ("capabilities-dropped", "prod", "kubernetes", DEPLOYMENT, "web",
     lambda p: _container(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "adds SYS_ADMIN"),
    # Capabilities in any spelling the runtimes accept.
    ("capabilities-dropped", "staging", "docker", CONTAINER, "api",
     lambda p: p["capabilities"].update(adds=["cap_sys_admin"]), "adds SYS_ADMIN"),
    ("capabilities-dropped", "prod", "kubernetes", DEPLOYMENT, "worker",
     lambda p: _container(p)["securityContext"]["capabilities"].update(add=["CAP_NET_ADMIN"]), "adds NET_ADMIN"),
    ("capabilities-dropped", "staging", "docker", CONTAINER, "web",
     lambda p: p["capabilities"].update(drops=["all"], adds=["Sys_Ptrace"]), "adds SYS_PTRACE"),
    ("no-host-namespaces", "staging", "docker", CONTAINER, "worker",
     lambda p: p.update(pidMode="host"), "pidMode host"),
    ("no-host-namespaces", "staging", "docker", CONTAINER, "edge",
     lambda p: p.update(networkMode="host"), "networkMode host"),
    ("no-host-namespaces", "prod", "kubernetes", DEPLOYMENT, "api",
     lambda p: p["spec"]["template"]["spec"].update(hostNetwork=True), "hostNetwork is true"),
    ("no-host-paths", "staging", "docker", CONTAINER, "worker",
     lambda p: p["volumes"].append({"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}),
     "the Docker socket"),
    ("no-host-paths", "prod", "kubernetes", DEPLOYMENT, "web",
     lambda p: p["spec"]["template"]["spec"]["volumes"].append({"name": "etc", "hostPath": {"path": "/etc"}}),
     "host path /etc"),
    ("seccomp-confined", "staging", "docker", CONTAINER, "api",
     lambda p: p["securityOpts"].append("seccomp=unconfined"), "seccomp=unconfined"),
    ("seccomp-confined", "prod", "kubernetes", DEPLOYMENT, "edge",
     lambda p: _container(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
    ("read-only-root", "staging", "docker", CONTAINER, "minio",
     lambda p: p.update(readOnly=False), "writable root filesystem"),
    ("read-only-root", "prod", "kubernetes", DEPLOYMENT, "web",
     lambda p: _container(p)["securityContext"].update(readOnlyRootFilesystem=False), "writable root filesystem"),
    ("only-the-edge-is-exposed", "prod", "kubernetes", SERVICE, "web",
     lambda p: p["spec"].update(type="NodePort"), "only the edge"),
    ("only-the-edge-is-exposed", "staging", "docker", CONTAINER, "api",
     lambda p: p.update(ports=[{"internal": 3001, "external": 3001, "ip": "0.0.0.0"}]), "only the edge"),
    ("no-secrets-in-configmaps", "prod", "kubernetes", "kubernetes:core/v1:ConfigMap", "edge-files",
     lambda p: p["data"].update({"app.env": "DB_PASSWORD=hunter2\n"}), "looks like a credential"),
    ("no-allow-all-network-policy", "prod", "kubernetes", "kubernetes:networking.k8s.io/v1:NetworkPolicy",
     "default-deny", lambda p: p["spec"].update(ingress=[{}]), "admits any source on any port"),
    ("kubernetes-secrets-by-reference", "prod", "kubernetes", DEPLOYMENT, "api",
     lambda p: _container(p)["env"].append({"name": "JWT_SECRET", "value": "inline"}), "JWT_SECRET is set inline"),
    # `<NAME>_FILE` passes only as a path (MinIO's, to its Secret's file), never as the value.
    ("kubernetes-secrets-by-reference", "prod", "kubernetes", "kubernetes:apps/v1:StatefulSet", "minio",
     lambda p: _container(p)["env"].append({"name": "MINIO_ROOT_PASSWORD_FILE", "value": "hunter2"}),
     "MINIO_ROOT_PASSWORD_FILE is set inline"),
    ("namespace-pod-security-restricted", "prod", "kubernetes", "kubernetes:core/v1:Namespace", "namespace",
     lambda p: p["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}), "restricted"),
    ("edge-tls-and-hsts", "staging", "docker", CONTAINER, "edge-config",
     lambda p: _conf(p, "nginx.conf", lambda c: c.replace("TLSv1.2 TLSv1.3", "TLSv1 TLSv1.1 TLSv1.2")),
     "TLSv1.2/TLSv1.3 only"),
    ("edge-tls-and-hsts", "prod", "kubernetes", "kubernetes:core/v1:ConfigMap", "edge-files",
     lambda p: _conf(p, "nginx.conf", lambda c: c.replace("max-age=63072000", "max-age=300")), "HSTS"),
    ("edge-sees-the-client", "prod", "kubernetes", SERVICE, "edge",
     lambda p: p["spec"].pop("externalTrafficPolicy"), "without externalTrafficPolicy Local"),
    ("edge-sees-the-client", "prod", "kubernetes", SERVICE, "edge",
     lambda p: p["spec"].update(externalTrafficPolicy="Cluster"), "every client shares one rate-limit bucket"),
    # What a gateway stack's edge would say if it believed every peer (the stack files use none).
    ("edge-sees-the-client", "prod", "kubernetes", "kubernetes:core/v1:ConfigMap", "edge-files",
     lambda p: _conf(p, "nginx.conf", lambda c: _believe_every_peer(c, "::/0")),
     "set_real_ip_from ::/0 lets any client choose"),
    ("edge-sees-the-client", "staging", "docker", CONTAINER, "edge-config",
     lambda p: _conf(p, "nginx.conf", lambda c: _believe_every_peer(c, "0.0.0.0/0")),
     "set_real_ip_from 0.0.0.0/0"),
    # The api's release record turned into a rollback across a migration not declared compatible
    # (the config refuses it: tests/test_releases.py; this is the record had it been bypassed).
    ("rollback-crosses-compatible-migrations", "staging", "docker", CONTAINER, "api-config",
     lambda p: _conf(p, "release.json", _unsafe_rollback), "release r2 applied migration 001_add_tag"),
    ("rollback-crosses-compatible-migrations", "prod", "kubernetes", "kubernetes:core/v1:ConfigMap", "api-files",
     lambda p: _conf(p, "release.json", _unsafe_rollback), "not declared backward compatible"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "stack", "target", "typ", "name", "weaken", "expected"),
    RULE_CASES,
    ids=[f"{c[0]}-{c[2]}-{c[4]}-{i}" for i, c in enumerate(RULE_CASES)],
)
def test_rule_passes_the_program_and_catches_the_weakened_resource(
    rule: str, stack: str, target: str, typ: str, name: str, weaken: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    reg = _pick(deployed(stack, target), typ, name)
    assert violations(rule, args_of(reg)) == []
    props = copy.deepcopy(reveal(reg.inputs))
    weaken(props)
    found = violations(rule, args_of(reg, props))
    assert found and any(expected in m for m in found), found


def test_every_rule_has_a_case_a_description_and_a_remediation() -> None:
    assert {c[0] for c in RULE_CASES} | {"stateful-resources-protected"} == set(RULE)
    for policy in [*resource_policies(), *stack_policies()]:
        assert policy.description and policy.remediation_steps
    assert [p.name for p in resource_policies()] == [r.name for r in RULES]


def test_stateful_resources_must_be_protected_where_the_config_says() -> None:
    prod = deployed("prod", "kubernetes")
    # PostgreSQL's claims are the operator's: the Cluster is the resource that holds its data.
    assert not [r.name for r in prod.of_type("kubernetes:core/v1:PersistentVolumeClaim") if "postgres" in r.name]
    for typ, name, kind in (
        # prod's Redis is the HA set: each node's claim comes from the StatefulSet's template.
        (STATEFULSET, "redis-node", "StatefulSet"),
        (STATEFULSET, "minio", "StatefulSet"),
        (CNPG_CLUSTER, "postgres-cluster", "Cluster"),
    ):
        held = _pick(prod, typ, name)
        assert held.protect and violations("stateful-resources-protected", args_of(held, requireProtect=True)) == []
        held = dataclasses.replace(held, protect=False)
        assert violations("stateful-resources-protected", args_of(held, requireProtect=True)) == [
            f"{kind} {name} holds data but is not protected (protect: true)"
        ]
        assert violations("stateful-resources-protected", args_of(held, requireProtect=False)) == []
    # Only CloudNativePG's Cluster: a kind of the same name in another API group holds nothing known.
    store = _pick(prod, "kubernetes:barmancloud.cnpg.io/v1:ObjectStore", "postgres-backups-objectstore")
    other = copy.deepcopy(reveal(_pick(prod, CNPG_CLUSTER, "postgres-cluster").inputs))
    other["apiVersion"] = "example.com/v1"
    unprotected = dataclasses.replace(_pick(prod, CNPG_CLUSTER, "postgres-cluster"), protect=False)
    assert violations("stateful-resources-protected", args_of(unprotected, other, requireProtect=True)) == []
    assert not store.protect  # it describes a bucket; the bucket's data is not in the cluster
    assert violations("stateful-resources-protected", args_of(store, requireProtect=True)) == []


def test_every_namespace_needs_a_default_deny_policy() -> None:
    prod = deployed("prod", "kubernetes")
    assert stack_violations(prod) == []
    without = [r for r in prod.registrations if r.name != "default-deny"]
    assert stack_violations(prod, without) == [
        ("namespace-default-deny", "namespace aixsss-prod has no default-deny NetworkPolicy "
         "(all pods, Ingress and Egress, no rules)")
    ]  # fmt: skip


VOLUME = "docker:index/volume:Volume"
Change = Callable[[dict[str, Any]], Any]


def _weakened(deployment: Deployment, changes: dict[tuple[str, str], Change]) -> list[Registration]:
    """Every registration, those named in ``changes`` (type, name) with their inputs changed."""
    regs = []
    for reg in deployment.registrations:
        change = changes.get((reg.type, reg.name))
        if change is not None:
            props = copy.deepcopy(reveal(reg.inputs))
            change(props)
            reg = dataclasses.replace(reg, inputs=props)
        regs.append(reg)
    assert len([r for r in regs if (r.type, r.name) in changes]) == len(changes)
    return regs


def _drop_upload(suffix: str) -> Change:
    return lambda p: p.update(uploads=[u for u in p["uploads"] if not u["file"].endswith(suffix)])


def _config_volume(name: str) -> str:
    return reveal(_pick(deployed("staging", "docker"), VOLUME, f"{name}-config").inputs)["name"]


def _mount(volume: str, **changes: Any) -> Change:
    """Change the container's mount at /etc/aixsss."""
    return lambda p: [
        v.update(volumeName=volume, **changes) for v in p["volumes"] if v["containerPath"] == "/etc/aixsss"
    ]


# (what is weakened, the changes, a fragment of the message docker-config-delivered reports)
DELIVERY_CASES: list[tuple[str, dict[tuple[str, str], Change], str]] = [
    ("redis.conf not delivered", {(CONTAINER, "redis-config"): _drop_upload("redis.conf")},
     "redis reads /etc/aixsss/redis.conf, which is not among its files"),
    ("a file redis's health check names", {(CONTAINER, "redis-config"): _drop_upload("tls/ca.crt")},
     "redis reads /etc/aixsss/tls/ca.crt"),
    ("postgres's config_file=", {(CONTAINER, "postgres-config"): _drop_upload("postgresql.conf")},
     "postgres reads /etc/aixsss/postgresql.conf"),
    ("minio's certificate", {(CONTAINER, "minio-config"): _drop_upload("public.crt")},
     "minio has no public.crt in /etc/aixsss/minio-certs"),
    ("minio's key", {(CONTAINER, "minio-config"): _drop_upload("private.key")},
     "minio has no private.key in /etc/aixsss/minio-certs"),
    ("nginx.conf not delivered", {(CONTAINER, "edge-config"): _drop_upload("nginx.conf")},
     "edge reads /etc/aixsss/nginx.conf"),
    ("a file outside the volume", {(CONTAINER, "edge-config"): lambda p: p["uploads"][0].update(file="/etc/nginx/x")},
     "config carrier edge-config uploads /etc/nginx/x outside its config volume"),
    ("the service may rewrite its config", {(CONTAINER, "edge"): _mount(_config_volume("edge"), readOnly=False)},
     "edge mounts the config volume aixsss-staging-edge-config-"),
    ("another service's config", {(CONTAINER, "edge"): _mount(_config_volume("redis"), readOnly=True)},
     "edge (edge) mounts the config of redis (redis-config)"),
    ("two carriers fill one volume", {(CONTAINER, "api-config"): _mount(_config_volume("worker"))},
     "is filled by 2 config carriers (expected one)"),
    ("a carrier that could start", {(CONTAINER, "redis-config"): lambda p: p.update(start=True)},
     "config carrier redis-config could run"),
    ("a config volume mounted elsewhere", {(CONTAINER, "web"): lambda p: p.update(
        volumes=[{"volumeName": _config_volume("edge"), "containerPath": "/srv", "readOnly": True}])},
     "web mounts the config volume aixsss-staging-edge-config-"),
    # A data volume named and labelled like a config volume (to go unprotected) is filled by no carrier.
    ("data named as config", {(VOLUME, "redis-data"): lambda p: p.update(
        name="aixsss-staging-redis-config-0123abcd",
        labels=[*p["labels"], {"label": "aixsss.io/role", "value": "config"}])},
     "aixsss-staging-redis-config-0123abcd is a config volume (unprotected) but no carrier fills it"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "changes", "expected"), DELIVERY_CASES, ids=[c[0] for c in DELIVERY_CASES])
def test_each_docker_service_reads_its_files_from_its_own_carrier(
    what: str, changes: dict[tuple[str, str], Change], expected: str
) -> None:
    staging = deployed("staging", "docker")
    assert stack_violations(staging) == []
    found = stack_violations(staging, _weakened(staging, changes))
    assert {rule for rule, _ in found} == {"docker-config-delivered"} and any(expected in m for _, m in found), found


def test_the_delivery_rule_reads_no_file_content_so_it_runs_in_a_first_preview() -> None:
    """Certificates and passwords are not known before the first update; paths are."""
    staging = deployed("staging", "docker")
    unknown = lambda p: [u.update(content=UNKNOWN_STRING_VALUE) for u in p.get("uploads") or []]  # noqa: E731
    changes: dict[tuple[str, str], Change] = {(CONTAINER, r.name): unknown for r in staging.of_type(CONTAINER)}
    assert stack_violations(staging, _weakened(staging, changes)) == []


def test_an_unknown_carrier_id_leaves_the_rules_running_but_an_unknown_service_does_not() -> None:
    """A service's `aixsss.io/config` label is its carrier's id, unknown in a preview that creates
    the carrier: the rules skip that label, not the container."""
    redis = _pick(deployed("staging", "docker"), CONTAINER, "redis")
    props = copy.deepcopy(reveal(redis.inputs))
    config = next(label for label in props["labels"] if label["label"] == "aixsss.io/config")
    config["value"] = UNKNOWN_STRING_VALUE
    assert [(r.name, m) for r in RULES for m in violations(r.name, args_of(redis, props))] == []
    props["command"] = ["redis-server"]
    assert violations("redis-auth-and-tls", args_of(redis, props)) == [
        "redis starts without the generated redis.conf (no auth, no TLS)"
    ]
    service = next(label for label in props["labels"] if label["label"] == "aixsss.service")
    service["value"] = UNKNOWN_STRING_VALUE
    with pytest.raises(UnknownValueError):
        violations("redis-auth-and-tls", args_of(redis, props))


def test_config_volumes_go_unprotected_data_volumes_do_not() -> None:
    """A config volume is refilled on every change and replaced when its paths change: protecting
    it would stop that. Its role label and name tell it apart; docker-config-delivered makes sure
    nothing but a carrier's config is in a volume marked so (DELIVERY_CASES: data named as config),
    and a data volume merely named like one is still data."""
    staging = deployed("staging", "docker")
    config = _pick(staging, VOLUME, "redis-config")
    assert not config.protect
    assert violations("stateful-resources-protected", args_of(config, requireProtect=True)) == []
    data = _pick(staging, VOLUME, "redis-data")
    assert data.protect and violations("stateful-resources-protected", args_of(data, requireProtect=True)) == []
    assert violations(
        "stateful-resources-protected", args_of(dataclasses.replace(data, protect=False), requireProtect=True)
    )
    renamed = dataclasses.replace(data, protect=False, inputs={**data.inputs, "name": reveal(config.inputs["name"])})
    assert violations("stateful-resources-protected", args_of(renamed, requireProtect=True)), "a name alone"


@pytest.mark.parametrize(("stack", "target"), [c for c in CASES if c[0] != "dev"], ids=lambda v: v)
def test_staging_and_prod_have_no_violation(stack: str, target: str) -> None:
    assert all_violations(deployed(stack, target), stack) == []


def test_dev_has_no_violation_when_it_builds_its_images() -> None:
    """dev builds api, worker and web from app.source: tags named after the source's hash."""
    for target in ("docker", "kubernetes"):
        assert all_violations(deployed("dev", target), "dev") == [], target


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_dev_reports_exactly_its_latest_images(target: str) -> None:
    """dev may run prebuilt app images at `latest` (advisory there): exactly that is reported."""
    latest = {name: f"ghcr.io/aixsss/{name}:latest" for name in ("api", "worker", "web")}
    overrides = {"target": target, "app.source": "", **{f"images.{k}": v for k, v in latest.items()}}
    found = all_violations(run_program("dev", overrides=overrides), "dev")
    assert {rule for rule, _, _ in found} == {"images-pinned"}
    assert all("ghcr.io/aixsss/" in m and m.endswith(":latest is not pinned (a tag other than latest, or @sha256 "
                                                     "digest)") for _, _, m in found)  # fmt: skip
    named = {name.removesuffix("-image") for _, name, _ in found}
    assert named >= {"api", "worker", "web"}


def test_a_weakened_config_produces_exactly_the_expected_violations() -> None:
    """staging/docker with an untagged Redis image (a config change dev allows) and a Redis
    started without TLS and with an open plain-text port (a resource change)."""
    weak = run_program("dev", overrides={"images.redis": "redis", "target": "docker"})
    baseline = set(all_violations(deployed("dev", "docker"), "dev"))
    new = [v for v in all_violations(weak, "dev") if v not in baseline]
    assert new == [("images-pinned", "redis-image", "image redis is not pinned (a tag other than latest, "
                                                    "or @sha256 digest)")]  # fmt: skip

    staging = deployed("staging", "docker")
    redis = _pick(staging, CONTAINER, "redis-config")
    props = copy.deepcopy(reveal(redis.inputs))
    _conf(props, "redis.conf", lambda c: "\n".join(x for x in c.splitlines() if not x.startswith("tls-")).replace(
        "port 0", "port 6379"))  # fmt: skip
    assert [(r.name, m) for r in RULES for m in violations(r.name, args_of(redis, props))] == [
        ("redis-auth-and-tls", "/etc/aixsss/redis.conf: the plain-text port is open (set `port 0`)"),
        ("redis-auth-and-tls", "/etc/aixsss/redis.conf: TLS is not configured (tls-port, tls-cert-file, tls-key-file)"),
    ]


def test_the_entry_point_builds_the_pack_with_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """policy/__main__.py as Pulumi runs it (runpy on the directory); the real constructor
    serves the pack and blocks, so a recorder stands in for it."""
    import runpy

    import aixsss_policy.pack as pack

    built: dict[str, Any] = {}
    monkeypatch.setattr(pack, "PolicyPack", lambda **kwargs: built.update(kwargs))
    runpy.run_path(str(ROOT / "policy"), run_name="__main__")
    assert built["name"] == "aixsss"
    assert built["enforcement_level"].value == "mandatory"
    assert [p.name for p in built["policies"]] == [r.name for r in RULES] + [r.name for r in STACK_RULES]


@pytest.mark.parametrize(
    "image",
    ["postgres:16", "postgres", "postgres:latest", "registry:5000/app", "registry:5000/app:1.2",
     "ghcr.io/aixsss/api@sha256:" + "a" * 64, "nginxinc/nginx-unprivileged:1.29", "repo/app:"],
)  # fmt: skip
def test_the_pack_and_the_config_model_agree_on_what_pinned_means(image: str) -> None:
    # The pack runs in its own venv without the program, so it carries its own copy.
    from aixsss_policy.resources import image_is_pinned as pack_rule

    from components.config import image_is_pinned as config_rule

    assert pack_rule(image) == config_rule(image)
