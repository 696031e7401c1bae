"""The real program under engine-like mocks, for every stack on both targets."""

from __future__ import annotations

import functools
import re

import pytest
from harness import Deployment, Registration, plain_strings, reveal, run_program
from rendering import SETTINGS

CASES = [
    ("dev", "docker"),
    ("dev", "kubernetes"),
    ("staging", "kubernetes"),
    ("staging", "docker"),
    ("prod", "kubernetes"),
    ("prod", "docker"),
]
SERVICE_TYPES = {
    "postgres": "aixsss:service:Database",
    "redis": "aixsss:service:Cache",
    "minio": "aixsss:service:ObjectStore",
    "api": "aixsss:service:Api",
    "worker": "aixsss:service:Worker",
    "web": "aixsss:service:Web",
    "edge": "aixsss:service:LoadBalancer",
}
API_ENV = {
    "NODE_ENV",
    "PORT",
    "DATABASE_URL",
    "JWT_SECRET",
    "API_KEY_ENCRYPTION_KEY",
    "REDIS_URL",
    "AI_QUEUE_NAME",
    "CORS_ORIGIN",
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
}
WORKER_ENV = {
    "NODE_ENV",
    "DATABASE_URL",
    "API_KEY_ENCRYPTION_KEY",
    "REDIS_URL",
    "AI_QUEUE_NAME",
    "WORKER_CONCURRENCY",
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
}
SECRET_ENV = {
    "DATABASE_URL",
    "JWT_SECRET",
    "API_KEY_ENCRYPTION_KEY",
    "REDIS_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
}
CONTAINER = "docker:index/container:Container"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
JOB = "kubernetes:batch/v1:Job"
# PostgreSQL on Kubernetes: a CloudNativePG Cluster, whose operator runs the instances.
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
SCHEDULED_BACKUP = "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup"


@functools.cache
def deploy(stack: str, target: str) -> Deployment:
    return run_program(stack, overrides={"target": target, **SETTINGS.get((stack, target), {})})


@pytest.fixture(params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str, Deployment]:
    stack, target = request.param
    return stack, target, deploy(stack, target)


DOCKER_CASES = [c for c in CASES if c[1] == "docker"]
KUBERNETES_CASES = [c for c in CASES if c[1] == "kubernetes"]


@pytest.fixture(params=DOCKER_CASES, ids=[f"{s}-{t}" for s, t in DOCKER_CASES])
def docker_case(request: pytest.FixtureRequest) -> tuple[str, str, Deployment]:
    stack, target = request.param
    return stack, target, deploy(stack, target)


@pytest.fixture(params=KUBERNETES_CASES, ids=[f"{s}-{t}" for s, t in KUBERNETES_CASES])
def k8s_case(request: pytest.FixtureRequest) -> tuple[str, str, Deployment]:
    stack, target = request.param
    return stack, target, deploy(stack, target)


def component(d: Deployment, name: str) -> Registration:
    return d.named(name, SERVICE_TYPES[name])


def workloads(d: Deployment, service: str) -> list[Registration]:
    """The containers (Docker) or Deployment/StatefulSet/Job/CloudNativePG Cluster (Kubernetes)
    under a component."""
    owner = component(d, service)
    kinds = {CONTAINER, DEPLOYMENT, STATEFULSET, JOB, CNPG_CLUSTER}
    return [r for r in d.registrations if r.type in kinds and owner in d.ancestors(r)]


def main_workload(d: Deployment, service: str) -> Registration:
    clusters = [w for w in workloads(d, service) if w.type == CNPG_CLUSTER]
    if clusters:
        assert len(clusters) == 1 and clusters[0].plain["metadata"]["name"] == service, clusters
        return clusters[0]
    found = [w for w in workloads(d, service) if w.name in (service, f"{service}-1")]
    assert found, f"no workload for {service}"
    return found[0]


def env_of(w: Registration) -> dict[str, object]:
    """Env names -> value (or the secretKeyRef on Kubernetes)."""
    if w.type == CONTAINER:
        return dict(e.split("=", 1) for e in reveal(w.inputs["envs"]))
    container = w.plain["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_component_tree(case: tuple[str, str, Deployment]) -> None:
    _, _, d = case
    for name, typ in SERVICE_TYPES.items():
        comp = d.named(name, typ)
        assert d.children(comp), f"{name} has no children"
    assert d.of_type("aixsss:secrets:StackSecrets") and d.of_type("aixsss:pki:InternalPki")


def test_every_app_env_var_present(case: tuple[str, str, Deployment]) -> None:
    _stack, target, d = case
    api_env = env_of(main_workload(d, "api"))
    worker_env = env_of(main_workload(d, "worker"))
    assert set(api_env) >= API_ENV, API_ENV - set(api_env)
    assert set(worker_env) >= WORKER_ENV, WORKER_ENV - set(worker_env)
    assert api_env["AI_QUEUE_NAME"] == worker_env["AI_QUEUE_NAME"] == "ai-jobs"
    # On Docker the api listens behind its draining front, which holds 3001 (spec.Handover).
    assert api_env["PORT"] == ("3002" if target == "docker" else "3001")
    domain = d.config["aixsss:domain"]
    assert api_env["CORS_ORIGIN"] == f"https://{domain}"
    assert str(api_env["S3_ENDPOINT"]).startswith("https://minio")
    if target == "docker":
        # The login role of secrets.rotation's generation (0), not the owner (README: rotation).
        assert str(api_env["DATABASE_URL"]).startswith("postgresql://aixsss_g0:")
        assert "sslmode=require" in str(api_env["DATABASE_URL"])
        # The app's client speaks plain text to its TLS tunnel on loopback (components/cache.py).
        assert str(api_env["REDIS_URL"]).startswith("redis://default:") and api_env["REDIS_URL"].endswith(
            "@127.0.0.1:6379"
        )
        assert len(str(api_env["JWT_SECRET"])) == 64
        # api and worker share the encryption key (it encrypts data both read).
        assert api_env["API_KEY_ENCRYPTION_KEY"] == worker_env["API_KEY_ENCRYPTION_KEY"]
    else:
        for key in SECRET_ENV:
            assert "secretKeyRef" in api_env[key], f"{key} must come from a Secret"
        for key in SECRET_ENV - {"JWT_SECRET"}:
            assert "secretKeyRef" in worker_env[key]


def test_kubernetes_env_secrets_hold_the_values(k8s_case: tuple[str, str, Deployment]) -> None:
    _, _target, d = k8s_case
    secret = d.named("api-env", "kubernetes:core/v1:Secret")
    data = secret.plain["stringData"]
    assert data["DATABASE_URL"].startswith("postgresql://aixsss_g0:") and "sslmode=require" in data["DATABASE_URL"]
    assert data["REDIS_URL"].startswith("redis://default:") and data["REDIS_URL"].endswith("@127.0.0.1:6379")
    assert len(data["JWT_SECRET"]) == 64
    import base64

    assert len(base64.b64decode(data["API_KEY_ENCRYPTION_KEY"])) == 32


def test_no_generated_secret_in_plain_inputs_or_outputs(case: tuple[str, str, Deployment]) -> None:
    _, _, d = case
    assert len(d.generated_secrets) >= 8
    for reg in d.registrations:
        for text in plain_strings(reg.inputs) + plain_strings(reg.outputs):
            for secret in d.generated_secrets:
                assert secret not in text, f"{reg.type} {reg.name} leaks a secret in plain text"
    for text in plain_strings(d.outputs):
        for secret in d.generated_secrets:
            assert secret not in text, "a stack output leaks a secret"


def test_connection_strings_are_secret_outputs(case: tuple[str, str, Deployment]) -> None:
    _, _, d = case
    from harness import is_secret

    assert is_secret(d.outputs["databaseUrl"]) and is_secret(d.outputs["redisUrl"])
    fingerprints = d.outputs["secretInventory"]
    assert set(fingerprints) >= {
        "JWT_SECRET",
        "API_KEY_ENCRYPTION_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "BACKUP_S3_ACCESS_KEY_ID",
        "BACKUP_S3_SECRET_ACCESS_KEY",
    }
    assert all(not is_secret(v) and v.startswith("sha256:") for v in fingerprints.values())


def test_encryption_key_protected_and_never_rotated(case: tuple[str, str, Deployment]) -> None:
    _, _, d = case
    key = d.named("apiKeyEncryptionKey", "random:index/randomBytes:RandomBytes")
    assert key.protect and key.plain["length"] == 32 and "keepers" not in key.plain
    for password in d.of_type("random:index/randomPassword:RandomPassword"):
        if password.name in NEVER_ROTATED:
            assert "keepers" not in password.plain, password.name
            continue
        # A second slot (Redis, components/secrets.py) holds the newest odd generation: none yet.
        expected = "-1" if password.name.endswith("Slot1") else "0"
        assert password.plain["keepers"] == {"rotation": expected}, password.name


# Docker's initdb password for the PostgreSQL owner: the first credentials job removes it, so
# it opens nothing afterwards, and keeping it keeps the server's container through a rotation.
NEVER_ROTATED = {"postgresBootstrapPassword"}
# Every generated secret but the API key encryption key, written out: the backups' S3 user is new.
ROTATABLE = {
    "postgresPassword",
    "redisPassword",
    "redisPasswordSlot1",
    "minioRootUser",
    "minioRootPassword",
    "minioAppAccessKey",
    "minioAppSecretKey",
    "backupAccessKey",
    "backupSecretKey",
    "jwtSecret",
}


def test_rotation_regenerates_rotatable_secrets() -> None:
    d = run_program("dev", overrides={"secrets.rotation": 3})
    passwords = {
        p.name: p for p in d.of_type("random:index/randomPassword:RandomPassword") if p.name not in NEVER_ROTATED
    }
    assert set(passwords) == ROTATABLE
    # Every one regenerated at generation 3 but Redis's slot 0, last regenerated at 2 (slot k
    # at the generations of parity k, so the previous generation's password stays valid).
    keepers = {name: p.plain["keepers"] for name, p in passwords.items()}
    assert keepers == {name: {"rotation": "2" if name == "redisPassword" else "3"} for name in ROTATABLE}
    assert "keepers" not in d.named("apiKeyEncryptionKey").plain


def test_rotation_on_kubernetes_reaches_the_store_and_keeps_the_cluster() -> None:
    before = run_program("staging")
    after = run_program("staging", overrides={"secrets.rotation": 3})
    # The store's bootstrap is a new release, so it registers the rotated backup keys (and the
    # app's) before CloudNativePG archives with them.
    (job_before,) = [j for j in before.of_type(JOB) if j.name == "minio-bootstrap"]
    (job_after,) = [j for j in after.of_type(JOB) if j.name == "minio-bootstrap"]
    assert job_before.plain["metadata"]["name"] != job_after.plain["metadata"]["name"]
    for name in ("backupAccessKey", "backupSecretKey", "postgresPasswordSlot1"):
        assert after.named(name).plain["keepers"] == {"rotation": "3"}, name
    # The Cluster is the same object: the rotated password and keys travel in its Secrets, the
    # database stays; only its managed login roles change (tests/test_cnpg_logins.py).
    old, new = (d.named("postgres-cluster", CNPG_CLUSTER).plain for d in (before, after))
    assert old["spec"].pop("managed") != new["spec"].pop("managed")
    assert old == new


def test_supplied_secret_replaces_generated_one() -> None:
    d = run_program("dev", secret_config={"secrets.jwtSecret": "s" * 64})
    names = {p.name for p in d.of_type("random:index/randomPassword:RandomPassword")}
    assert "jwtSecret" not in names
    assert env_of(main_workload(d, "api"))["JWT_SECRET"] == "s" * 64


def test_stateful_resources_protected_outside_dev(case: tuple[str, str, Deployment]) -> None:
    stack, target, d = case
    stateful_types = {
        "docker:index/volume:Volume",
        "kubernetes:core/v1:PersistentVolumeClaim",
        STATEFULSET,
        CNPG_CLUSTER,
    }
    # Config volumes hold only what the program writes into them on every deploy.
    kept = [r for r in d.registrations if r.type in stateful_types and not r.name.endswith("-config")]
    stateful = [r for r in kept if "webroot" not in r.name]
    assert len(stateful) >= 3
    # On Kubernetes the database is the Cluster (its operator owns the instances' claims).
    assert (CNPG_CLUSTER in {r.type for r in stateful}) == (target == "kubernetes")
    for reg in stateful:
        assert reg.protect == (stack != "dev"), f"{reg.name} protect"
        assert reg.retain_on_delete == (stack != "dev")


def test_order_data_then_migrations_then_api_and_worker(case: tuple[str, str, Deployment]) -> None:
    _, target, d = case
    migrate = [w for w in workloads(d, "api") if w.name.startswith("api-migrate") and not w.name.endswith("-config")]
    assert len(migrate) == 1
    api = main_workload(d, "api")
    # Migrations need PostgreSQL alone; the api also Redis; nothing waits for the object store,
    # which the application does not read (APP.md).
    assert d.depends_on(migrate[0], main_workload(d, "postgres"))
    assert not d.depends_on(migrate[0], main_workload(d, "redis"))
    bootstrap = next(w for w in workloads(d, "minio") if re.fullmatch(r"minio-bootstrap(-[0-9a-f]{12})?", w.name))
    assert d.depends_on(bootstrap, main_workload(d, "minio"))
    assert not d.depends_on(api, bootstrap) and not d.depends_on(api, main_workload(d, "minio"))
    assert d.depends_on(api, migrate[0]) and d.depends_on(api, main_workload(d, "redis"))
    # The worker needs the schema and the queue, not the api: the two start side by side.
    worker = main_workload(d, "worker")
    assert d.depends_on(worker, migrate[0]) and d.depends_on(worker, main_workload(d, "redis"))
    assert not d.depends_on(worker, api)
    # The edge waits for neither: nginx re-resolves their names while it runs (test_deploy_order).
    assert not d.depends_on(main_workload(d, "edge"), api)
    assert not d.depends_on(main_workload(d, "edge"), main_workload(d, "web"))
    # No needless ordering: web and the data services start in parallel.
    assert not d.depends_on(main_workload(d, "web"), main_workload(d, "postgres"))
    assert not d.depends_on(main_workload(d, "redis"), main_workload(d, "postgres"))
    if target == "kubernetes":
        cluster = main_workload(d, "postgres")
        assert cluster.type == CNPG_CLUSTER
        assert not [w for w in d.of_type(STATEFULSET) if w.name == "postgres"]
        # A custom resource is awaited only as far as it says: pulumi-kubernetes waits for the
        # Cluster's Ready condition, so the migrations start on a primary that accepts connections.
        annotations = cluster.plain["metadata"]["annotations"]
        assert annotations["pulumi.com/waitFor"] == "condition=Ready"
        assert int(annotations["pulumi.com/timeoutSeconds"]) >= 600
        # The daily backup is declared once the Cluster exists; nothing of the app waits for it.
        (backup,) = d.of_type(SCHEDULED_BACKUP)
        assert d.depends_on(backup, cluster)
        assert not d.depends_on(api, backup) and not d.depends_on(migrate[0], backup)


def test_only_the_edge_publishes_ports(case: tuple[str, str, Deployment]) -> None:
    stack, target, d = case
    if target == "docker":
        for c in d.of_type(CONTAINER):
            ports = c.plain.get("ports") or []
            if re.fullmatch(r"edge(-\d+)?", c.name):
                assert {p["external"] for p in ports} == {80, 443}
            elif ports:
                # Only dev publishes data services, and only on loopback, for debugging.
                assert stack == "dev" and c.name in ("postgres", "redis", "minio")
                assert all(p["ip"] == "127.0.0.1" for p in ports)
                assert 9001 not in {p["internal"] for p in ports}, "the MinIO console is never published"
    else:
        services = d.of_type("kubernetes:core/v1:Service")
        public = [s for s in services if s.plain["spec"]["type"] != "ClusterIP"]
        assert [s.name for s in public] == ["edge"]


def test_docker_hardening(docker_case: tuple[str, str, Deployment]) -> None:
    _, _target, d = docker_case
    networks = {n.plain["name"].rsplit("-", 1)[1]: n.plain for n in d.of_type("docker:index/network:Network")}
    # Only egress routes out; `published` carries the published ports of the edge (and dev's data).
    assert {name for name, n in networks.items() if not n.get("internal")} == {"egress", "published"}
    for c in d.of_type(CONTAINER):
        p = c.plain
        assert p["capabilities"]["drops"] == ["ALL"], c.name
        assert "no-new-privileges:true" in p["securityOpts"], c.name
        # Rotated logs on every container, the helpers included.
        assert p["logDriver"] == "json-file" and p["logOpts"] == {"max-size": "10m", "max-file": "3"}, c.name
        if c.name.endswith("-config"):
            # A config carrier is created, filled and never started: writable only so the daemon
            # takes the uploads (components/platforms/docker.py).
            assert p["start"] is False and p["networkMode"] == "none" and p["readOnly"] is False, c.name
            continue
        if c.name.endswith("volume-owner"):
            continue
        assert p["readOnly"] is True, c.name
        assert p["memory"] > 0 and float(p["cpus"]) > 0, c.name
        assert p["user"] and not p["user"].startswith("0:"), c.name
        if {"label": "aixsss.io/role", "value": "exporter"} in p["labels"]:
            # In its service's namespace; no shell in its image for a health check (its scrape is).
            assert p["networkMode"].startswith("container:") and "healthcheck" not in p, c.name
            assert p["restart"] == "unless-stopped" and not p.get("ports"), c.name
            continue
        if c.name.startswith(("postgres-credentials", "postgres-retire-logins")):
            # Through the server's socket only (a shared volume): no network at all.
            assert p["networkMode"] == "none" and p["attach"] is True and "networksAdvanced" not in p, c.name
            continue
        if not (c.name.startswith(("api-migrate", "minio-bootstrap")) or c.name == "edge-acme-client"):
            # The api and its draining fronts have their checks, yet `pulumi up` awaits the edge's
            # route container instead, which checks through the fronts (docker_routes).
            fronted = re.fullmatch(r"api(-\d+)?(-front)?", c.name) is not None
            assert p["healthcheck"]["tests"][0] == "CMD" and p.get("wait", False) is not fronted, c.name
            assert p["restart"] == "unless-stopped"
    postgres = d.named("postgres", CONTAINER).plain
    # Outside dev, postgres is on the internal backend network and, for its exporters' scrapes, on
    # an internal metrics network of its own (dev publishes it on loopback, through a non-internal
    # network of its own).
    expected = [networks["backend"]["name"], f"aixsss-{d.stack}-postgres-metrics"]
    expected += [f"aixsss-{d.stack}-postgres-published"] if d.stack == "dev" else []
    assert [n["name"] for n in postgres["networksAdvanced"]] == expected
    assert postgres["healthcheck"]["tests"][1] == "pg_isready"
    assert d.named("redis", CONTAINER).plain["healthcheck"]["tests"][1:3] == ["sh", "-c"]


def test_kubernetes_hardening(k8s_case: tuple[str, str, Deployment]) -> None:
    stack, _target, d = k8s_case
    ns = d.of_type("kubernetes:core/v1:Namespace")[0].plain["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    for w in [*d.of_type(DEPLOYMENT), *d.of_type(STATEFULSET), *d.of_type(JOB)]:
        pod = w.plain["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True and sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["resources"]["limits"] == container["resources"]["requests"]
        if w.type != JOB:
            assert "readinessProbe" in container and "livenessProbe" in container, w.name
    api = main_workload(d, "api").plain["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": 3001, "scheme": "HTTP"}
    if stack == "prod":
        assert main_workload(d, "api").plain["spec"]["replicas"] >= 2
        pdbs = {p.name for p in d.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
        assert {"api", "edge"} <= pdbs
    # PostgreSQL: the operator builds the pods (non-root, read-only root, no privilege escalation,
    # its own probes); the program decides their size, spread, disruption budget and replication.
    cluster = main_workload(d, "postgres").plain["spec"]
    assert cluster["resources"]["limits"] == cluster["resources"]["requests"]
    assert cluster["enablePDB"] is True
    assert cluster["affinity"] == {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"}
    replication = {"dev": (1, None), "staging": (1, None), "prod": (3, {"method": "any", "number": 1})}
    instances, synchronous = replication[stack]
    assert cluster["instances"] == instances and cluster["postgresql"].get("synchronous") == synchronous
    # The application's user over TLS with SCRAM only; nothing in plain text.
    assert cluster["postgresql"]["pg_hba"] == [
        "hostssl all aixsss all reject",
        "hostssl aixsss +aixsss all scram-sha-256",
        "hostnossl all all all reject",
        "host all all all reject",
    ]
    assert not cluster.get("enableSuperuserAccess")


def _policies(d: Deployment) -> dict[str, dict]:
    return {p.name: p.plain["spec"] for p in d.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}


def test_kubernetes_network_flows(k8s_case: tuple[str, str, Deployment]) -> None:
    _, _target, d = k8s_case
    policies = _policies(d)
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" in deny and deny["ingress"] == [] and deny["egress"] == []
    allowed_ingress = {name.split("-from-")[1] for name in policies if name.startswith("postgres-from-")}
    assert allowed_ingress == {"api", "worker", "api-migrate", "postgres-act-as-owner"}
    assert {n.split("-from-")[1] for n in policies if n.startswith("redis-from-")} == {"api", "worker"}
    # PostgreSQL's WAL and base backups go to the bundled store: a flow like the app's.
    assert {n.split("-from-")[1] for n in policies if n.startswith("minio-from-")} == {
        "api",
        "worker",
        "minio-bootstrap",
        "postgres",
    }
    assert {n.split("-to-")[1] for n in policies if n.startswith("postgres-to-")} == {"minio"}
    assert policies["minio-from-postgres"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert policies["postgres-to-minio"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert {n.split("-from-")[1] for n in policies if n.startswith("api-from-")} == {"edge"}
    egress = {n for n in policies if n.endswith("-https-egress")}
    assert egress == {"api-https-egress", "worker-https-egress"}
    assert policies["postgres-from-api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert "allow-dns" in policies
    # The MinIO console is reachable by no flow, only the S3 API is.
    assert policies["minio-from-api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]
    # CloudNativePG's own traffic, written out: the operator (its namespace) and the instances
    # among themselves on PostgreSQL and the instance manager's status port; the instances to
    # the API server's range (kubernetes.apiServerCidr, default 0.0.0.0/0) on 443 and 6443.
    cnpg_ports = [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 8000}]
    instances = {"matchLabels": {"app.kubernetes.io/name": "postgres"}}
    assert policies["postgres-cluster-ingress"] == {
        "podSelector": instances,
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}}],
                "ports": cnpg_ports,
            },
            {"from": [{"podSelector": instances}], "ports": cnpg_ports},
        ],
    }
    assert policies["postgres-cluster-egress"] == {
        "podSelector": instances,
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"podSelector": instances}], "ports": cnpg_ports},
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
            },
        ],
    }


def test_docker_network_isolation(docker_case: tuple[str, str, Deployment]) -> None:
    _, _target, d = docker_case

    def zones(name: str) -> set[str]:
        c = d.named(name, CONTAINER).plain
        if str(c.get("networkMode", "")).startswith("container:"):
            # It joins its Redis tunnel's namespace: the tunnel holds the service's networks.
            c = d.named(f"{name}-redis-tls", CONTAINER).plain
        return {n["name"].rsplit("-", 1)[1] for n in c["networksAdvanced"]}

    first = "api-1" if any(c.name == "api-1" for c in d.of_type(CONTAINER)) else "api"
    # dev publishes the data ports on loopback, each through a non-internal network of its own;
    # postgres and redis (exporters in their namespaces) have a metrics network of their own.
    for name in ("postgres", "redis", "minio"):
        metrics = {"metrics"} if name != "minio" else set()
        assert zones(name) == ({"backend", "published"} if d.stack == "dev" else {"backend"}) | metrics, name
    assert zones(first) == {"frontend", "backend", "egress"}
    assert zones("worker" if any(c.name == "worker" for c in d.of_type(CONTAINER)) else "worker-1") == {
        "backend",
        "egress",
    }
    assert zones("web" if any(c.name == "web" for c in d.of_type(CONTAINER)) else "web-1") == {"frontend"}


def test_tls_settings(case: tuple[str, str, Deployment]) -> None:
    stack, target, d = case
    certs = {c["name"]: c for c in d.outputs["certificates"]}
    assert {"postgres", "redis", "minio", "ca"} <= set(certs)
    assert any(s.startswith("postgres") for s in certs["postgres"]["sans"])
    if target == "kubernetes":
        # Clients reach CloudNativePG's Services: the certificate names each of them.
        ns = f"aixsss-{stack}"
        for service in ("postgres-rw", "postgres-r", "postgres-ro"):
            for name in (service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"):
                assert name in certs["postgres"]["sans"], name
    for leaf in d.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert leaf.plain["validityPeriodHours"] == 8760 and leaf.plain["earlyRenewalHours"] == 720
        assert "server_auth" in leaf.plain["allowedUses"]
    # The public certificate: the internal CA signs it in dev and staging (the stack files'
    # domains, written out); prod's comes from ACME through cert-manager, not from pulumi-tls.
    public = {"dev": ["aixsss.localhost"], "staging": ["staging.aixsss.example.com"], "prod": None}[stack]
    assert (certs["public"]["sans"] if "public" in certs else None) == public


def test_outputs_for_auditors(case: tuple[str, str, Deployment]) -> None:
    stack, target, d = case
    out = d.outputs
    domain = d.config["aixsss:domain"]
    assert out["endpoints"]["health"] == f"https://{domain}/api/health"
    assert set(out["images"]) >= set(SERVICE_TYPES)
    facts = out["services"]["postgres"]
    assert {"tls", "auth", "exposedPorts", "networks", "nonRoot", "readOnlyRootFs", "limits"} <= set(facts)
    checklist = out["checklist"]
    assert len(checklist) == 9 and all(set(item) == {"ok", "reason"} for item in checklist.values())
    assert all(item["ok"] for item in checklist.values()), checklist
    # PostgreSQL archives to the store on both targets (Barman Cloud; pgBackRest on Docker), and
    # auditors read that flow in the checklist's list of flows into data services.
    kubernetes = target == "kubernetes"
    assert out["services"]["postgres"]["talksTo"] == ["minio"]
    assert "postgres->minio:9000" in checklist["network.dataIsolated"]["reason"]
    # Durability as declared, written out per stack and target.
    database = out["durability"]["database"]
    instances, synchronous = (3, 1) if (stack, target) == ("prod", "kubernetes") else (1, 0)
    assert (database["instances"], database["synchronousReplicas"]) == (instances, synchronous)
    assert database["failover"] == ("CloudNativePG promotes a standby" if instances > 1 else "none (one instance)")
    # What runs: on Kubernetes the operator's PostgreSQL image, one pod per instance.
    # Docker: the official image plus pgBackRest, built on the host and tagged by its inputs.
    docker_image = re.compile(rf"aixsss-{stack}/aixsss-postgres:pg-[0-9a-f]{{16}}")
    image = out["services"]["postgres"]["image"]
    assert out["images"]["postgres"] == image
    if kubernetes:
        assert image == "ghcr.io/cloudnative-pg/postgresql:16.10"
    else:
        assert docker_image.fullmatch(image), image
    assert out["services"]["postgres"]["replicas"] == instances
    if kubernetes:
        backups = database["backups"]
        assert backups["destination"] == f"s3://aixsss-backups/postgres/ at https://minio.aixsss-{stack}.svc:9000"
        assert backups["wal"] == "continuous archiving (Barman Cloud plugin)"
        assert backups["base"] == "daily at 03:00 UTC" and backups["retention"] == "14d"
    else:
        backups = database["backups"]
        assert backups["destination"] == "s3://aixsss-backups/postgres/ at https://minio:9000"
        assert backups["wal"].startswith("continuous archiving (pgBackRest")
