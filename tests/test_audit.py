"""What auditors read: the stack outputs (audit.json) with the numbers `pulumi stack output
--json` prints, and a checklist whose every reason is checked against the declared resources."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from rendering import CASES, rendered

from components.spec import Zone
from offline import topology
from offline.engine import SECRET_KEY, SECRET_SIG, Deployment, integral, is_secret, reveal, run_program
from offline.render import Rendered


def _floats(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _floats(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _floats(v, f"{path}[{i}]")]
    return [f"{path}={value}"] if isinstance(value, float) else []


def test_integral_makes_whole_floats_ints_and_leaves_the_rest() -> None:
    secret = {SECRET_KEY: SECRET_SIG, "value": {"port": 5432.0}}
    given = {"replicas": 3.0, "ratio": 2.5, "flag": True, "ports": [80.0, 0.5], "url": secret, "name": "3.0"}
    got = integral(given)
    assert got == {"replicas": 3, "ratio": 2.5, "flag": True, "ports": [80, 0.5], "url": secret, "name": "3.0"}
    assert type(got["replicas"]) is int and type(got["ports"][0]) is int and type(got["url"]["value"]["port"]) is int
    # The negative control: a fraction stays a float, and a bool is not turned into 1.
    assert type(got["ratio"]) is float and type(got["ports"][1]) is float and got["flag"] is True
    assert got["url"][SECRET_KEY] == SECRET_SIG


@pytest.mark.parametrize("stack, target", [("prod", "kubernetes"), ("dev", "docker")])
def test_outputs_print_whole_numbers_as_integers(
    stack: str, target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = rendered(tmp_path_factory.getbasetemp() / stack, stack, target)
    # Every number the program exports is whole, so none may be a float in either view.
    assert not _floats(reveal(result.deployment.outputs))
    text = (result.out / "audit.json").read_text()
    audit = json.loads(text)
    assert not _floats(audit)
    api = audit["services"]["api"]
    expected = {"prod": 3, "dev": 1}[stack]
    assert type(api["replicas"]) is int and api["replicas"] == expected
    assert f'"replicas": {expected},' in text and f'"replicas": {expected}.0' not in text
    assert type(api["limits"]["memoryMb"]) is int


# --- The checklist: each reason against what the rendered resources show -------------------

DATA = ("postgres", "redis", "minio")
CONTAINER = "docker:index/container:Container"
ROLE = "aixsss.io/role"
NETWORK = "docker:index/network:Network"


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    stack, target = request.param
    return rendered(tmp_path_factory.getbasetemp() / stack, stack, target)


def _item(deployment: Deployment, key: str) -> dict[str, Any]:
    return reveal(deployment.outputs)["checklist"][key]


def _listed(reason: str, after: str) -> list[str]:
    """The comma-separated list that follows ``after`` in a reason, up to the next ';'."""
    assert after in reason, f"{after!r} not in {reason!r}"
    return [part.strip() for part in reason.split(after, 1)[1].split(";")[0].split(",")]


def _kubernetes(deployment: Deployment) -> bool:
    return not deployment.of_type(CONTAINER)


def _workload(deployment: Deployment, service: str) -> dict[str, Any]:
    """The rendered container of a long-running service (a Docker container, or the first
    container of its Kubernetes Deployment/StatefulSet). On Docker the service's helpers carry
    its `aixsss.service` label too and are told apart by `aixsss.io/role`: the volume owner (runs
    once) and the config carrier (created, never started; no network, no health check)."""
    for reg in deployment.registrations:
        plain = reveal(reg.inputs)
        if reg.type == CONTAINER:
            labels = {item["label"]: item["value"] for item in plain.get("labels") or []}
            if labels.get("aixsss.service") == service and ROLE not in labels and not plain.get("attach"):
                return plain
        elif plain.get("kind") in ("Deployment", "StatefulSet") and reg.name == service:
            return plain["spec"]["template"]["spec"]["containers"][0]
    raise AssertionError(f"no workload for {service}")


CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"


def _cluster(deployment: Deployment) -> dict[str, Any]:
    """Kubernetes: PostgreSQL's CloudNativePG Cluster (its pods and claims are the operator's)."""
    [cluster] = [reveal(r.inputs) for r in deployment.of_type(CNPG_CLUSTER)]
    assert cluster["metadata"]["name"] == "postgres"
    return cluster


def _operated(deployment: Deployment, service: str) -> bool:
    """Whether an operator, not the program, runs ``service``'s pods (postgres on Kubernetes)."""
    return _kubernetes(deployment) and service == "postgres"


def _networked(deployment: Deployment, service: str) -> dict[str, Any]:
    """The container that holds ``service``'s networks: its own, or, when it joins another's
    namespace (`container:<id>`), that sidecar's (labelled with the service and role sidecar)."""
    container = _workload(deployment, service)
    if not str(container.get("networkMode", "")).startswith("container:"):
        return container
    for reg in deployment.of_type(CONTAINER):
        plain = reveal(reg.inputs)
        labels = {item["label"]: item["value"] for item in plain.get("labels") or []}
        if labels.get("aixsss.service") == service and labels.get(ROLE) == "sidecar" and plain.get("networksAdvanced"):
            return plain
    raise AssertionError(f"{service} joins a namespace no sidecar of it owns")


def test_data_isolation_lists_exactly_the_flows_into_data_services(case: Rendered) -> None:
    item = _item(case.deployment, "network.dataIsolated")
    # Independent: the flows the platforms recorded on the enforcing resources (NetworkPolicy
    # annotations, container labels), read back by the topology.
    # The HA Redis set's nodes and Sentinels (prod on Kubernetes) hold Redis's data too.
    servers = (*DATA, "redis-node", "redis-sentinel")
    into = [e for e in case.topology.edges if e.server in servers and e.client not in (topology.WORLD, topology.HOST)]
    expected = {f"{e.client}->{e.server}:{','.join(map(str, e.ports))}" for e in into}
    assert "edge->api:3001" not in item["reason"] and "edge->web" not in item["reason"]
    assert all(e.tls for e in into) and item["ok"] is True
    assert set(_listed(item["reason"], "every flow into them is TLS: ")) == expected
    assert item["reason"].startswith("postgres, redis, minio only in the backend zone;")
    published_clause = "published for the host, so also on a network of published ports of its own (not internal): "
    listed = _listed(item["reason"], published_clause) if published_clause in item["reason"] else []
    metrics_clause = "where Prometheus scrapes the exporters in their namespaces (plain HTTP, metrics only): "
    scraped = _listed(item["reason"], metrics_clause) if metrics_clause in item["reason"] else []
    if not _kubernetes(case.deployment):
        backend = _network(case.deployment, "backend")
        labelled = [{i["label"]: i["value"] for i in reveal(c.inputs.get("labels")) or []} for c in
                    case.deployment.of_type(CONTAINER)]  # fmt: skip
        exporters = {labels["aixsss.service"] for labels in labelled if labels.get(ROLE) == "exporter"}
        # Every data service is on the backend network, on a network of published ports of its
        # own exactly when it publishes a port, and on the metrics network exactly when exporters
        # share its namespace (the reason says which); on no other network.
        for service in DATA:
            container = _workload(case.deployment, service)
            assert (service in listed) == bool(container.get("ports")), service
            assert (service in scraped) == (service in exporters), service
            prefix = backend.removesuffix("-backend")
            expected = [backend] + [f"{prefix}-{service}-published"] * (service in listed)
            expected += [f"{prefix}-{service}-metrics"] * (service in scraped)
            assert sorted(n["name"] for n in container["networksAdvanced"]) == sorted(expected), service
        assert {"postgres", "redis"} <= exporters
    else:
        assert not listed and not scraped


def _network(deployment: Deployment, name: str) -> str:
    return next(reveal(n.inputs)["name"] for n in deployment.of_type(NETWORK) if n.name == f"{name}-network")


def test_no_docker_network_joins_the_edge_or_web_to_a_data_service() -> None:
    """What the backend zone promises: only api, worker and the jobs reach the data services. A
    network shared with the edge or web keeps it only if Docker stops traffic between its
    containers (bridge option enable_icc false)."""
    deployment = run_program("dev")
    assert reveal(deployment.outputs)["target"] == "docker"
    members: dict[str, set[str]] = {}
    for reg in deployment.of_type(CONTAINER):
        plain = reveal(reg.inputs)
        labels = {item["label"]: item["value"] for item in plain.get("labels") or []}
        for network in plain.get("networksAdvanced") or []:
            members.setdefault(network["name"], set()).add(labels.get("aixsss.service", reg.name))
    no_icc = {
        reveal(n.inputs)["name"]
        for n in deployment.of_type(NETWORK)
        if (reveal(n.inputs).get("options") or {}).get("com.docker.network.bridge.enable_icc") == "false"
    }
    shared = {
        name: sorted(services)
        for name, services in members.items()
        if services & set(DATA) and services & {"edge", "web"} and name not in no_icc
    }
    assert shared == {}


def test_the_audit_lists_every_network_a_docker_service_joins(tmp_path_factory: pytest.TempPathFactory) -> None:
    wrong = {}
    for stack in ("dev", "staging", "prod"):
        deployment = rendered(tmp_path_factory.getbasetemp() / stack, stack, "docker").deployment
        for service, facts in reveal(deployment.outputs)["services"].items():
            if facts["replicas"] == 0:
                continue  # the run-once jobs: _workload finds long-running containers
            joined = sorted(n["name"] for n in _networked(deployment, service)["networksAdvanced"])
            if sorted(facts["networks"]) != joined:
                wrong[f"{stack} {service}"] = (facts["networks"], joined)
    assert wrong == {}


def test_data_exposure_reason_names_what_the_platform_published(case: Rendered) -> None:
    item = _item(case.deployment, "security.databaseNotPublic")
    published = []
    if not _kubernetes(case.deployment):
        for service in DATA:
            for p in _workload(case.deployment, service).get("ports") or []:
                published.append(f"{service} {p['ip']}:{int(p['external'])}->{int(p['internal'])}")
    # From outside the stack into a data service, as the topology reads it back.
    outside = [e for e in case.topology.edges if e.server in DATA and e.client in (topology.WORLD, topology.HOST)]
    assert len(outside) == len(published)
    assert all(e.client == topology.HOST for e in outside)
    if published:
        assert set(_listed(item["reason"], "published on loopback only: ")) == set(published)
    else:
        assert item["reason"] == "postgres, redis, minio publish no port"
    assert item["ok"] is True
    stack, target = case.deployment.stack, "kubernetes" if _kubernetes(case.deployment) else "docker"
    assert bool(published) == (stack == "dev" and target == "docker")


def test_secret_environment_reason_matches_the_api_workload(case: Rendered) -> None:
    item = _item(case.deployment, "env.secretsGeneratedAndInjected")
    named = _listed(item["reason"], "api's secret environment holds ")
    assert named == ["JWT_SECRET", "API_KEY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"] and item["ok"] is True
    if _kubernetes(case.deployment):
        env = _workload(case.deployment, "api")["env"]
        by_ref = {e["name"] for e in env if "secretKeyRef" in (e.get("valueFrom") or {})}
        assert set(named) <= by_ref
    else:
        replicas = [r for r in case.deployment.of_type(CONTAINER) if re.fullmatch(r"api(-\d+)?", r.name)]
        assert replicas and len(replicas) == reveal(case.deployment.outputs)["services"]["api"]["replicas"]
        for api in replicas:
            assert is_secret(api.inputs["envs"])
            assert set(named) <= {e.split("=", 1)[0] for e in reveal(api.inputs["envs"])}


def test_redis_reason_names_lines_of_the_rendered_redis_conf(case: Rendered) -> None:
    item = _item(case.deployment, "security.redisAuthAndTls")
    named = _listed(item["reason"].split(" (")[0], "redis.conf sets ")
    assert named == ["port 0", "tls-port 6379", "user default"] and item["ok"] is True
    confs = list((case.out / "config").rglob("redis.conf"))
    assert len(confs) == 1
    lines = confs[0].read_text().splitlines()
    for setting in named:
        assert any(line == setting or line.startswith(setting + " ") for line in lines), setting
    assert "port 6379" not in lines


def test_minio_reason_matches_its_args_certificate_and_endpoint(case: Rendered) -> None:
    item = _item(case.deployment, "security.minioHttps")
    found = re.fullmatch(
        r"minio's endpoint is (https://([^:]+):(\d+)); it runs with --certs-dir (\S+), which holds "
        r"public\.crt \(the stack CA's minio certificate\) and private\.key",
        item["reason"],
    )
    assert found and item["ok"] is True, item["reason"]
    endpoint, host, port, certs_dir = found.groups()
    minio = _workload(case.deployment, "minio")
    args = minio.get("args") or minio.get("command")
    assert args[args.index("--certs-dir") + 1] == certs_dir and f":{port}" in args
    crt = [p for p in (case.out / "config").rglob("public.crt") if str(p).endswith(f"{certs_dir}/public.crt")]
    assert len(crt) == 1 and crt[0].read_text() == (case.out / "certs/minio.crt").read_text()
    assert (crt[0].parent / "private.key").is_file()
    cert = x509.load_pem_x509_certificate(crt[0].read_bytes())
    assert host in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert endpoint in str(reveal(case.deployment.outputs)) or endpoint in str(_workload(case.deployment, "api"))


def test_storage_reason_matches_the_declared_volumes(case: Rendered) -> None:
    item = _item(case.deployment, "storage.volumesDeclared")
    parts = item["reason"].split("; ")
    # Per service in order; Docker's PostgreSQL has two (its data, and the socket its backup
    # scheduler shares).
    assert list(dict.fromkeys(p.split(" ")[0] for p in parts)) == list(DATA) and item["ok"] is True
    for part in parts:
        found = re.fullmatch(r"(\S+) (\S+) at (\S+) \((.*)\)", part)
        assert found, part
        service, volume, path, how = found.groups()
        if _operated(case.deployment, service):
            # The Cluster's storage, from which the operator makes each instance's claim
            # (test_kubernetes_storage_reason_names_the_postgres_cluster checks the rest).
            size = _cluster(case.deployment)["spec"]["storage"]["size"]
            assert f"a claim of {size} per instance" in how, (how, size)
            continue
        if how.startswith("StatefulSet "):
            # The HA Redis set's members (cache.highAvailability): a claim per member from the
            # StatefulSet's template, as many as its replicas.
            set_name = how.split(" ")[1].rstrip(":")
            members = reveal(case.deployment.named(set_name, "kubernetes:apps/v1:StatefulSet").inputs)["spec"]
            (template,) = [t for t in members["volumeClaimTemplates"] if t["metadata"]["name"] == volume]
            size = template["spec"]["resources"]["requests"]["storage"]
            assert how == f"StatefulSet {set_name}: a claim {volume}-{set_name}-<n> of {size} per member, " + (
                f"{int(members['replicas'])} members"
            )
            continue
        container = _workload(case.deployment, service)
        if _kubernetes(case.deployment):
            claims = {
                reveal(r.inputs)["metadata"]["name"]: reveal(r.inputs)["spec"]["resources"]["requests"]["storage"]
                for r in case.deployment.of_type("kubernetes:core/v1:PersistentVolumeClaim")
            }
            claim = f"{service}-{volume}"
            assert how == f"PersistentVolumeClaim {claim} of {claims[claim]}"
            assert path in [m["mountPath"] for m in container["volumeMounts"]]
        else:
            assert how.startswith("a Docker volume, which Docker does not cap, ")
            names = {reveal(r.inputs)["name"] for r in case.deployment.of_type("docker:index/volume:Volume")}
            mounts = {v["volumeName"]: v["containerPath"] for v in container["volumes"] if v.get("volumeName")}
            mounted = [name for name, at in mounts.items() if at == path and name.endswith(f"-{service}-{volume}")]
            assert len(mounted) == 1 and mounted[0] in names


def test_health_reason_matches_each_rendered_check(case: Rendered) -> None:
    item = _item(case.deployment, "health.endpoint")
    assert (
        item["reason"].startswith(
            "api's health check requests /api/health: as its HTTP probe on port 3001, "
            "as its command on the port the app listens on (PORT);"
        )
        and item["ok"] is True
    )
    checks = dict(re.findall(r"(\S+) \(([^)]*)\)", item["reason"].split("health checks: ", 1)[1]))
    assert set(checks) == {"postgres", "redis", "minio", "api", "worker", "web", "edge"}
    kubernetes = _kubernetes(case.deployment)
    for service, check in checks.items():
        if _operated(case.deployment, service):
            # The operator's instance manager probes its pods; the program waits for the
            # Cluster's Ready condition. What the reason should say:
            # test_kubernetes_health_reason_names_the_operators_probes.
            annotations = _cluster(case.deployment)["metadata"]["annotations"]
            assert annotations["pulumi.com/waitFor"] == "condition=Ready"
            continue
        container = _workload(case.deployment, service)
        probe = container["readinessProbe"] if kubernetes else container["healthcheck"]
        if check.startswith("command "):
            command = probe["exec"]["command"] if kubernetes else probe["tests"][1:]
            assert check.removeprefix("command ") in " ".join(command), (service, check)
        else:
            scheme, method, path, _, port = check.split(" ")
            assert kubernetes and method == "GET", (service, check)
            assert probe["httpGet"] == {"scheme": scheme, "path": path, "port": float(port)}, service
    api = _workload(case.deployment, "api")
    if kubernetes:
        assert api["readinessProbe"]["httpGet"]["path"] == "/api/health"
    else:
        assert "127.0.0.1:'+process.env.PORT+'/api/health" in " ".join(api["healthcheck"]["tests"])


def test_kubernetes_storage_reason_names_the_postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> None:
    deployment = rendered(tmp_path_factory.getbasetemp() / "prod", "prod", "kubernetes").deployment
    reason = _item(deployment, "storage.volumesDeclared")["reason"]
    [part] = [p for p in reason.split("; ") if p.startswith("postgres ")]
    spec = _cluster(deployment)["spec"]
    claims = {
        reveal(r.inputs)["metadata"]["name"] for r in deployment.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    }
    # Every claim it names is one the program declares; postgres's is the Cluster's storage.
    assert not [name for name in re.findall(r"PersistentVolumeClaim (\S+)", part) if name not in claims], part
    assert "Cluster postgres" in part and spec["storage"]["size"] in part, part
    assert f"{int(spec['instances'])} instances" in part, part  # prod: 3, one claim each


def test_kubernetes_health_reason_names_the_operators_probes(tmp_path_factory: pytest.TempPathFactory) -> None:
    deployment = rendered(tmp_path_factory.getbasetemp() / "prod", "prod", "kubernetes").deployment
    reason = _item(deployment, "health.endpoint")["reason"]
    checks = dict(re.findall(r"(\S+) \(([^)]*)\)", reason.split("health checks: ", 1)[1]))
    # No probe of the program's: CloudNativePG's instance manager (startup, /readyz and
    # /healthz on its status port 8000), and the Cluster's Ready condition awaited.
    assert not checks["postgres"].startswith("command "), checks["postgres"]
    assert "CloudNativePG" in checks["postgres"] and "Ready" in checks["postgres"], checks["postgres"]


# --- Items that turn false: the program changed the way a mistake would change it ----------


def _run_with_spec_change(
    monkeypatch: pytest.MonkeyPatch, module: Any, change: Callable[[dict[str, Any]], dict[str, Any]], stack: str = "dev"
) -> Deployment:
    """Run the real program with every ServiceSpec ``module`` builds passed through ``change``."""
    original = module.ServiceSpec
    monkeypatch.setattr(module, "ServiceSpec", lambda **kwargs: original(**change(kwargs)))
    return run_program(stack)


def _ports(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda spec: {**spec, "ports": [dataclasses.replace(p, **changes) for p in spec["ports"]]}


def test_dev_publishes_data_ports_on_loopback_only_and_not_without_the_setting() -> None:
    published = run_program("dev")
    item = _item(published, "security.databaseNotPublic")
    loopback = [e for e in topology.of(published).edges if e.client == topology.HOST and e.server in DATA]
    assert item["ok"] is True and len(loopback) == 3
    assert set(_listed(item["reason"], "published on loopback only: ")) == {
        f"{e.server} 127.0.0.1:{e.ports[0]}->{e.ports[0]}" for e in loopback
    }
    closed = run_program("dev", overrides={"docker.publishDataPorts": False})
    item = _item(closed, "security.databaseNotPublic")
    assert item == {"ok": True, "reason": "postgres, redis, minio publish no port"}
    assert not [e for e in topology.of(closed).edges if e.server in DATA and e.client == topology.HOST]


def test_a_data_port_on_a_public_address_fails_the_exposure_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import cache

    deployment = _run_with_spec_change(monkeypatch, cache, _ports(host_ip="0.0.0.0"))
    item = _item(deployment, "security.databaseNotPublic")
    public = [e for e in topology.of(deployment).edges if e.client == topology.WORLD and e.server in DATA]
    assert [(e.server, e.ports) for e in public] == [("redis", (6379,))]
    assert item == {"ok": False, "reason": "published beyond loopback: redis 0.0.0.0:6379->6379"}


def test_a_plain_text_data_port_fails_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import cache

    deployment = _run_with_spec_change(monkeypatch, cache, _ports(tls=False))
    item = _item(deployment, "network.dataIsolated")
    plain = {
        f"{e.client}->{e.server}:{e.ports[0]}"
        for e in topology.of(deployment).edges
        if e.server in DATA and not e.tls and e.client not in (topology.WORLD, topology.HOST)
    }
    assert plain == {"api->redis:6379", "worker->redis:6379"} and item["ok"] is False
    assert item["reason"].startswith("postgres, redis, minio only in the backend zone; plain-text flows into them: ")
    assert set(_listed(item["reason"], "plain-text flows into them: ")) == plain


def test_a_data_service_outside_the_backend_zone_fails_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import cache

    change = lambda spec: {**spec, "zones": frozenset({Zone.BACKEND, Zone.FRONTEND})}  # noqa: E731
    deployment = _run_with_spec_change(monkeypatch, cache, change)
    item = _item(deployment, "network.dataIsolated")
    frontend = _network(deployment, "frontend")
    assert frontend in [n["name"] for n in _workload(deployment, "redis")["networksAdvanced"]]
    assert item["ok"] is False
    assert item["reason"].startswith(
        "outside the backend zone: redis (backend, frontend); every flow into them is TLS: "
    )


def test_redis_with_a_plain_text_port_fails_its_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.conf import redis

    original = redis.render
    monkeypatch.setattr(redis, "render", lambda s: original(s).replace("\nport 0\n", "\nport 6380\n"))
    item = _item(run_program("dev"), "security.redisAuthAndTls")
    assert item == {"ok": False, "reason": "redis.conf lacks port 0"}


def test_a_redis_tunnel_that_does_not_verify_fails_its_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.conf import tls_tunnel

    original = tls_tunnel.render
    monkeypatch.setattr(
        tls_tunnel, "render", lambda s: original(s).replace("proxy_ssl_verify on;", "proxy_ssl_verify off;")
    )
    item = _item(run_program("dev"), "security.redisAuthAndTls")
    assert item["ok"] is False
    assert item["reason"].endswith("but api, worker has no verifying TLS tunnel to Redis")
    monkeypatch.undo()
    ok = _item(run_program("dev"), "security.redisAuthAndTls")
    assert ok["ok"] is True and "TLS tunnel beside them" in ok["reason"]


def test_minio_without_its_certificates_fails_its_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import object_store

    def change(spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "files": [f for f in spec["files"] if not f.path.endswith("public.crt")]}

    item = _item(_run_with_spec_change(monkeypatch, object_store, change), "security.minioHttps")
    assert item["ok"] is False
    assert item["reason"].endswith(
        "--certs-dir /etc/aixsss/minio-certs lacks the stack CA's minio certificate or its key"
    )


def test_a_data_service_without_a_volume_fails_the_storage_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import cache

    item = _item(_run_with_spec_change(monkeypatch, cache, lambda s: {**s, "volumes": []}), "storage.volumesDeclared")
    assert item == {"ok": False, "reason": "no volume: redis"}


def test_a_service_without_a_health_check_fails_the_health_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import web

    item = _item(_run_with_spec_change(monkeypatch, web, lambda s: {**s, "probe": None}), "health.endpoint")
    assert item["ok"] is False and item["reason"].endswith("; none on web")
    assert "web (" not in item["reason"]


def test_api_without_a_secret_fails_the_secrets_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import api

    def change(spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "secret_env": {k: v for k, v in spec.get("secret_env", {}).items() if k != "JWT_SECRET"}}

    item = _item(_run_with_spec_change(monkeypatch, api, change), "env.secretsGeneratedAndInjected")
    assert item == {"ok": False, "reason": "api's secret environment lacks JWT_SECRET"}


def test_an_api_probe_off_the_health_path_fails_and_says_which_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import api

    def change(spec: dict[str, Any]) -> dict[str, Any]:
        probe = spec.get("probe")
        return {**spec, "probe": probe and dataclasses.replace(probe, http_path="/")}

    item = _item(_run_with_spec_change(monkeypatch, api, change), "health.endpoint")
    assert item["ok"] is False
    assert item["reason"].startswith(
        "api's HTTP probe requests / on port 3001; its command requests /api/health on the port in PORT; "
        "health checks: "
    )
