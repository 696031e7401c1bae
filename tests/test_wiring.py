"""Wiring checked against independent expectations: what each healthcheck and probe actually
calls, that it is what the server listens on, secret fingerprints recomputed from the deployed
values, file modes of secret files, Services and ports, and checklist items that must turn
false when the program is broken.

Expected values are literals written here or parsed from another rendered artefact (the
server's own config file, its env), never computed with the program's functions.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from cryptography import x509
from harness import (
    Deployment,
    Registration,
    carrier_of,
    delivered,
    is_secret,
    k8s_file,
    k8s_files,
    plain_strings,
    reveal,
    run_program,
)

from components.conf import postgres

CONTAINER = "docker:index/container:Container"
SECRET = "kubernetes:core/v1:Secret"
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
# PostgreSQL on Kubernetes: a CloudNativePG Cluster; its operator makes the pods and Services.
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
BARMAN_STORE = "kubernetes:barmancloud.cnpg.io/v1:ObjectStore"
CA = "/etc/aixsss/tls/ca.crt"
# One container per service, so each is found by its plain name (prod sets several replicas).
ONE_EACH = {
    "api.replicas": 1,
    "worker.replicas": 1,
    "web.replicas": 1,
    "edge.replicas": 1,
    "database.instances": 1,
    "database.synchronousReplicas": 0,
    "cache.highAvailability": False,
}


@functools.cache
def deployed(stack: str, target: str) -> Deployment:
    return run_program(stack, overrides={"target": target})


def container(d: Deployment, name: str) -> Registration:
    return d.named(name, CONTAINER)


def prefixed(d: Deployment, prefix: str) -> Registration:
    """A run-once job's container (named with its release), not its volume owner or config carrier."""
    found = [
        c for c in d.of_type(CONTAINER) if c.name.startswith(prefix + "-") and not c.name.endswith(("owner", "-config"))
    ]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def docker_env(c: Registration) -> dict[str, str]:
    return dict(e.split("=", 1) for e in reveal(c.inputs["envs"]))


def uploads(d: Deployment, c: Registration) -> dict[str, dict[str, Any]]:
    """What ``c`` sees under /etc/aixsss: its config carrier's uploads (tests.harness.delivered)."""
    return delivered(d, c)


def workload(d: Deployment, name: str) -> dict[str, Any]:
    found = [r for r in d.registrations if r.type in WORKLOADS and r.name == name]
    assert len(found) == 1, name
    return found[0].plain


def pod_spec(d: Deployment, name: str) -> dict[str, Any]:
    return workload(d, name)["spec"]["template"]["spec"]


def k8s_env(d: Deployment, name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in pod_spec(d, name)["containers"][0].get("env", []):
        if e["name"].endswith("_FILE") and e.get("value", "").startswith("/etc/aixsss/env/"):
            # A secret the image reads from the file named (ServiceSpec.file_env): its content.
            env[e["name"].removesuffix("_FILE")] = k8s_file(d, name, e["value"])
        elif "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = d.named(ref["name"], SECRET).plain["stringData"][ref["key"]]
    return env


def cnpg_cluster(d: Deployment) -> dict[str, Any]:
    (cluster,) = d.of_type(CNPG_CLUSTER)
    assert cluster.plain["metadata"]["name"] == "postgres"
    return cluster.plain


def secret_data(d: Deployment, name: str) -> dict[str, str]:
    return d.named(name, SECRET).plain["stringData"]


# --------------------------------------------------------------------------- healthchecks

# What each Docker healthcheck runs, written out.
DOCKER_HEALTHCHECKS = {
    "postgres": ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "aixsss", "-d", "aixsss"],
    "redis": [
        "CMD",
        "sh",
        "-c",
        "redis-cli --tls --cacert /etc/aixsss/tls/ca.crt -h 127.0.0.1 -p 6379 ping | grep -q PONG",
    ],
    "minio": ["CMD", "mc", "ready", "local", "--insecure"],
    "web": ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/"],
    # Only Redis answers -NOAUTH to a PING without the password: TLS, the name check and the
    # route through the tunnel all worked.
    "api-redis-tls": [
        "CMD",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\\r\\n' >&3 && "
        "IFS= read -r -t 3 reply <&3 && [[ $reply == -NOAUTH* ]]",
    ],
    "edge": ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"],
}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_docker_healthchecks_call_the_right_targets(stack: str) -> None:
    d = run_program(stack, overrides={"target": "docker", **ONE_EACH})
    for name, tests in DOCKER_HEALTHCHECKS.items():
        assert container(d, name).plain["healthcheck"]["tests"] == tests, name
    api = container(d, "api").plain["healthcheck"]["tests"]
    assert api[:3] == ["CMD", "node", "-e"]
    # The app on the port PORT says (behind its draining front on Docker), then the front: its
    # check goes through it to the app, on the port clients use.
    assert re.findall(r"fetch\((.+?)\)\.then", api[3]) == ["'http://127.0.0.1:'+process.env.PORT+'/api/health'"]
    assert container(d, "api-front").plain["healthcheck"]["tests"] == [
        "CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:3001/api/health",
    ]  # fmt: skip
    assert "b.ok?0:1" in api[3], "healthy means the body says ok, not merely a response"
    worker = container(d, "worker").plain["healthcheck"]["tests"]
    assert worker[:3] == ["CMD", "node", "-e"] and "process.env.REDIS_URL" in worker[3] and "ping()" in worker[3]


def test_docker_healthchecks_target_what_each_server_listens_on() -> None:
    d = deployed("dev", "docker")
    # redis: TLS on the port redis.conf opens, the plain port being closed, with a mounted CA.
    redis_files = uploads(d, container(d, "redis"))
    conf = redis_files["/etc/aixsss/redis.conf"]["content"].splitlines()
    tls_port = next(line.split()[1] for line in conf if line.startswith("tls-port "))
    assert "port 0" in conf
    probe = container(d, "redis").plain["healthcheck"]["tests"][3]
    assert f"-p {tls_port} " in probe and "--tls" in probe
    assert CA in redis_files and f"--cacert {CA}" in probe
    # The CLI authenticates with REDISCLI_AUTH: a password redis.conf's default user accepts.
    (user,) = [line for line in conf if line.startswith("user default ")]
    digest = hashlib.sha256(docker_env(container(d, "redis"))["REDISCLI_AUTH"].encode()).hexdigest()
    assert f"#{digest}" in user.split()
    # edge: the plain listener of nginx.conf, whose server block answers /healthz itself.
    nginx = uploads(d, container(d, "edge"))["/etc/aixsss/nginx.conf"]["content"]
    plain_server = nginx.split("  server {")[1]
    assert "    listen 8080;" in plain_server.splitlines()
    (healthz,) = [line for line in plain_server.splitlines() if "location = /healthz {" in line]
    assert healthz.endswith(' return 200 "ok\\n"; }')  # its access_log: exporters.probe_log with monitoring
    # minio: the S3 address it serves, over HTTPS (certs dir), which the mc alias points at.
    minio = container(d, "minio").plain
    args = minio["command"]
    assert args[args.index("--address") + 1] == ":9000" and "--certs-dir" in args
    assert docker_env(container(d, "minio"))["MC_HOST_local"] == "https://localhost:9000"
    # api: the port its PORT env makes it listen on, where its draining front forwards; the front
    # listens on the api's port.
    assert docker_env(container(d, "api"))["PORT"] == "3002"
    front = uploads(d, container(d, "api-front"))["/etc/aixsss/front.conf"]["content"].splitlines()
    assert "    server 127.0.0.1:3002;" in front and "    listen 3001;" in front
    # postgres: the image's bootstrap superuser is `postgres` (peer through the socket only); the
    # owner the clients act as is a plain role the credentials job makes (issue 12). pg_isready
    # asks as the owner: any answer, a refusal included, means the server is up.
    assert docker_env(container(d, "postgres"))["POSTGRES_USER"] == "postgres"


K8S_HTTP_PROBES = {
    "api": {"path": "/api/health", "port": 3001, "scheme": "HTTP"},
    "web": {"path": "/", "port": 8080, "scheme": "HTTP"},
    "edge": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
    "minio": {"path": "/minio/health/live", "port": 9000, "scheme": "HTTPS"},
}
K8S_EXEC_PROBES = {
    "redis": ["sh", "-c", "redis-cli --tls --cacert /etc/aixsss/tls/ca.crt -h 127.0.0.1 -p 6379 ping | grep -q PONG"],
}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_kubernetes_probes_call_the_right_targets(stack: str) -> None:
    d = deployed(stack, "kubernetes")
    for name, expected in K8S_HTTP_PROBES.items():
        c = pod_spec(d, name)["containers"][0]
        for kind in ("readinessProbe", "livenessProbe"):
            assert c[kind].get("httpGet") == expected, (name, kind)
        # The probed port is one the container declares.
        assert expected["port"] in [p["containerPort"] for p in c["ports"]], name
    for name, command in K8S_EXEC_PROBES.items():
        # prod's Redis is the HA set: its data nodes carry the probe (redis is HAProxy there).
        name = f"{name}-node" if name == "redis" and stack == "prod" else name
        c = pod_spec(d, name)["containers"][0]
        for kind in ("readinessProbe", "livenessProbe"):
            assert c[kind].get("exec") == {"command": command}, (name, kind)
    worker = pod_spec(d, "worker")["containers"][0]["livenessProbe"]["exec"]["command"]
    assert "process.env.REDIS_URL" in worker[-1]
    for job in ("api-migrate", "minio-bootstrap"):
        c = pod_spec(d, job)["containers"][0]
        assert "readinessProbe" not in c and "livenessProbe" not in c, job
    # PostgreSQL's pods are CloudNativePG's, probed by it (its instance manager); the program
    # sets no probe of its own and waits for the Cluster's Ready condition instead.
    assert not [r.name for r in d.registrations if r.type in WORKLOADS and r.name == "postgres"]
    cluster = cnpg_cluster(d)
    assert "probes" not in cluster["spec"]
    assert cluster["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"


def test_kubernetes_probe_targets_are_what_the_servers_serve() -> None:
    d = deployed("staging", "kubernetes")
    conf = k8s_file(d, "redis", "/etc/aixsss/redis.conf").splitlines()
    assert "port 0" in conf and "tls-port 6379" in conf
    nginx = k8s_file(d, "edge", "/etc/aixsss/nginx.conf")
    assert "    listen 8080;" in nginx.split("  server {")[1].splitlines()
    assert k8s_env(d, "api")["PORT"] == "3001"
    args = pod_spec(d, "minio")["containers"][0]["args"]
    assert args[args.index("--address") + 1] == ":9000" and "--certs-dir" in args


# --------------------------------------------------------------------------- services and ports

# The program's Services (CloudNativePG makes PostgreSQL's: postgres-rw, -ro, -r).
SERVICE_PORTS = {
    "redis": [("redis", 6379, "redis")],
    "minio": [("s3", 9000, "s3"), ("console", 9001, "console")],
    "api": [("http", 3001, "http")],
    "web": [("http", 8080, "http")],
    "edge": [("http", 80, "http"), ("https", 443, "https")],
}
CONTAINER_PORTS = {
    "redis": {"redis": 6379},
    "minio": {"s3": 9000, "console": 9001},
    "api": {"http": 3001},
    "web": {"http": 8080},
    "edge": {"http": 8080, "https": 8443},
}


def test_kubernetes_services_select_their_pods_and_name_real_ports() -> None:
    d = deployed("staging", "kubernetes")
    services = {s.name: s.plain["spec"] for s in d.of_type("kubernetes:core/v1:Service")}
    assert set(services) == set(SERVICE_PORTS)
    for name, spec in services.items():
        assert sorted((p["name"], p["port"], p["targetPort"]) for p in spec["ports"]) == sorted(SERVICE_PORTS[name])
        labels = workload(d, name)["spec"]["template"]["metadata"]["labels"]
        assert spec["selector"] and all(labels.get(k) == v for k, v in spec["selector"].items()), name
        declared = {p["name"]: p["containerPort"] for p in pod_spec(d, name)["containers"][0]["ports"]}
        assert declared == CONTAINER_PORTS[name], name
    nginx = k8s_file(d, "edge", "/etc/aixsss/nginx.conf").splitlines()
    # Fully qualified: nginx's resolver uses no search domains; re-resolved through the cluster DNS.
    assert "    server api.aixsss-staging.svc.cluster.local:3001 resolve max_fails=1 fail_timeout=10s;" in nginx
    assert "    server web.aixsss-staging.svc.cluster.local:8080 resolve max_fails=1 fail_timeout=10s;" in nginx
    assert "  resolver kube-dns.kube-system.svc.cluster.local valid=5s ipv6=off;" in nginx
    # PostgreSQL's clients use CloudNativePG's read-write Service (the primary, wherever it is),
    # on PostgreSQL's port, by a name the server certificate carries.
    for name in ("api", "worker", "api-migrate"):
        url = urlsplit(k8s_env(d, name)["DATABASE_URL"])
        assert (url.hostname, url.port) == ("postgres-rw.aixsss-staging.svc", 5432), name
    assert cnpg_cluster(d)["metadata"]["name"] == "postgres"  # the Services are named after it
    server = x509.load_pem_x509_certificate(secret_data(d, "postgres-server-tls")["tls.crt"].encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "postgres-rw.aixsss-staging.svc" in names.get_values_for_type(x509.DNSName)


def test_docker_containers_answer_to_their_service_name() -> None:
    d = run_program("dev", overrides={"api.replicas": 2})
    for c in d.of_type(CONTAINER):
        service = c.plain["labels"]
        name = next(label["value"] for label in service if label["label"] == "aixsss.service")
        for network in c.plain.get("networksAdvanced") or []:
            if c.name.endswith(("volume-owner", "acme-client")):
                continue
            if c.name == "postgres-backups":  # a companion: never reached by postgres's name
                assert not network.get("aliases"), (c.name, network)
                continue
            assert network["aliases"] == [name], (c.name, network)
    nginx = uploads(d, container(d, "edge"))["/etc/aixsss/nginx.conf"]["content"].splitlines()
    # The edge takes api's and web's instances from its routes (tests/test_routes_docker.py): each
    # by its namespace owner's container name, looked up through Docker's embedded DNS again
    # every 5 s (a restarted container may get a new address).
    assert "    include /etc/nginx/routes/live/api/*.conf;" in nginx
    assert "    include /etc/nginx/routes/live/web/*.conf;" in nginx
    assert "  resolver 127.0.0.11 valid=5s ipv6=off;" in nginx
    [routes] = reveal(container(d, "edge-routes-api").inputs["command"])
    for tunnel in ("api-1-redis-tls", "api-2-redis-tls"):
        name = reveal(container(d, tunnel).plain["name"])
        assert f"server {name}:3001 resolve max_fails=1 fail_timeout=10s;" in routes.splitlines(), tunnel
    env = docker_env(container(d, "api-1"))
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres" and urlsplit(env["DATABASE_URL"]).port == 5432
    # Redis through the tunnel beside each api container, which owns the namespace api-1 joins.
    assert urlsplit(env["REDIS_URL"]).hostname == "127.0.0.1" and urlsplit(env["REDIS_URL"]).port == 6379
    assert container(d, "api-1").plain["networkMode"] == f"container:{container(d, 'api-1-redis-tls').id}"
    assert env["S3_ENDPOINT"] == "https://minio:9000"


def test_docker_tmpfs_is_noexec_and_swap_is_off() -> None:
    d = deployed("dev", "docker")
    for c in d.of_type(CONTAINER):
        for path, options in (c.plain.get("tmpfs") or {}).items():
            assert {"noexec", "nosuid"} <= set(options.split(",")), (c.name, path)
        assert c.plain["memorySwap"] == c.plain["memory"], c.name


def test_kubernetes_rollouts_and_disruptions_keep_a_pod() -> None:
    d = deployed("prod", "kubernetes")
    for r in d.of_type("kubernetes:apps/v1:Deployment"):
        assert r.plain["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, r.name
    for pdb in d.of_type("kubernetes:policy/v1:PodDisruptionBudget"):
        if pdb.name in ("redis-node", "redis-sentinel"):
            # Quorum sets of three (prod's Redis HA): one member at a time may go.
            assert pdb.plain["spec"]["maxUnavailable"] == 1, pdb.name
            continue
        assert pdb.plain["spec"]["minAvailable"] == 1, pdb.name


# --------------------------------------------------------------------------- secrets

SECRET_ENV = {
    "redis": {"REDISCLI_AUTH"},
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
    # It also registers the backups' S3 user, limited to the backups bucket.
    "minio-bootstrap": {
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "APP_ACCESS_KEY",
        "APP_SECRET_KEY",
        "BACKUP_ACCESS_KEY",
        "BACKUP_SECRET_KEY",
    },
    "api-migrate": {"DATABASE_URL"},
    "api": {
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "API_KEY_ENCRYPTION_KEY",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    },
    "worker": {"DATABASE_URL", "REDIS_URL", "API_KEY_ENCRYPTION_KEY", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
}


# Docker's PostgreSQL is the image's container, configured by its environment.
DOCKER_SECRET_ENV = {**SECRET_ENV, "postgres": {"POSTGRES_PASSWORD"}}
# CloudNativePG's Secrets: name -> (type, keys), each referenced by the Cluster or its ObjectStore.
CNPG_SECRETS = {
    "postgres-app": ("kubernetes.io/basic-auth", {"username", "password"}),
    "postgres-server-tls": ("kubernetes.io/tls", {"tls.crt", "tls.key"}),
    "postgres-ca": ("Opaque", {"ca.crt"}),
    "postgres-backup-s3": ("Opaque", {"ACCESS_KEY_ID", "ACCESS_SECRET_KEY"}),
    "postgres-backup-ca": ("Opaque", {"ca.crt"}),
}


def _is_secret_data(secret: Registration) -> bool:
    data = secret.inputs["stringData"]
    return is_secret(data) or all(is_secret(v) for v in data.values())


# Secrets given as files on Kubernetes (ServiceSpec.file_env), by workload.
K8S_SECRET_FILES = {"minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_kubernetes_secret_env_comes_only_from_the_workloads_secret(stack: str) -> None:
    d = deployed(stack, "kubernetes")
    for name, keys in SECRET_ENV.items():
        # prod's Redis is the HA set: the data nodes hold the password (redis is HAProxy there).
        name = f"{name}-node" if name == "redis" and stack == "prod" else name
        env = pod_spec(d, name)["containers"][0]["env"]
        by_ref = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        # MinIO reads its root credentials from files of its Secret: not in its environment.
        keys = keys - K8S_SECRET_FILES.get(name, set())
        assert set(by_ref) == keys, name
        if not keys:
            assert not [r for r in d.registrations if r.type == SECRET and r.name == f"{name}-env"], name
            continue
        assert all(ref == {"name": f"{name}-env", "key": key} for key, ref in by_ref.items()), name
        secret = d.named(f"{name}-env", SECRET)
        assert set(secret.plain["stringData"]) == keys
        assert _is_secret_data(secret), name
    # PostgreSQL's credentials reach CloudNativePG only through its Secrets, by reference.
    for name, (typ, keys) in CNPG_SECRETS.items():
        secret = d.named(name, SECRET)
        assert secret.plain["type"] == typ and set(secret.plain["stringData"]) == keys, name
        assert secret.plain["metadata"]["namespace"] == f"aixsss-{stack}", name
    for name in ("postgres-app", "postgres-server-tls", "postgres-backup-s3"):
        assert _is_secret_data(d.named(name, SECRET)), name
    spec = cnpg_cluster(d)["spec"]
    assert spec["bootstrap"]["initdb"] == {"database": "aixsss", "owner": "aixsss", "secret": {"name": "postgres-app"}}
    assert spec["certificates"] == {"serverTLSSecret": "postgres-server-tls", "serverCASecret": "postgres-ca"}
    (store,) = d.of_type(BARMAN_STORE)
    configuration = store.plain["spec"]["configuration"]
    assert configuration["s3Credentials"] == {
        "accessKeyId": {"name": "postgres-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "postgres-backup-s3", "key": "ACCESS_SECRET_KEY"},
    }
    assert configuration["endpointCA"] == {"name": "postgres-backup-ca", "key": "ca.crt"}
    assert "env" not in spec and "superuserSecret" not in spec
    # CloudNativePG's initdb owner is a plain role (no superuser, unlike the Docker image's
    # POSTGRES_USER before issue 12), and its `postgres` superuser has no password to log in with.
    assert spec.get("enableSuperuserAccess", False) is False


def test_docker_env_holding_secrets_is_a_secret_input() -> None:
    d = deployed("dev", "docker")
    for name, keys in DOCKER_SECRET_ENV.items():
        c = container(d, name) if name in ("postgres", "redis", "minio", "api", "worker") else prefixed(d, name)
        assert is_secret(c.inputs["envs"]), name
        assert keys <= set(docker_env(c)), name


INVENTORY_SOURCES: dict[str, Callable[[Callable[[str], dict[str, str]]], str]] = {
    # The clients' (Docker: the login role's, whose verifier the credentials job sets;
    # Kubernetes: the owner's, from postgres-app, which CloudNativePG reads).
    "POSTGRES_PASSWORD": lambda env: unquote(urlsplit(env("api")["DATABASE_URL"]).password or ""),
    "REDIS_PASSWORD": lambda env: env("redis")["REDISCLI_AUTH"],
    "MINIO_ROOT_USER": lambda env: env("minio")["MINIO_ROOT_USER"],
    "MINIO_ROOT_PASSWORD": lambda env: env("minio")["MINIO_ROOT_PASSWORD"],
    "S3_ACCESS_KEY_ID": lambda env: env("api")["S3_ACCESS_KEY_ID"],
    "S3_SECRET_ACCESS_KEY": lambda env: env("api")["S3_SECRET_ACCESS_KEY"],
    "JWT_SECRET": lambda env: env("api")["JWT_SECRET"],
    "API_KEY_ENCRYPTION_KEY": lambda env: env("worker")["API_KEY_ENCRYPTION_KEY"],
    # The backups' S3 user, as the store's bootstrap registers it.
    "BACKUP_S3_ACCESS_KEY_ID": lambda env: env("minio-bootstrap")["BACKUP_ACCESS_KEY"],
    "BACKUP_S3_SECRET_ACCESS_KEY": lambda env: env("minio-bootstrap")["BACKUP_SECRET_KEY"],
}


def _env_reader(d: Deployment, target: str) -> Callable[[str], dict[str, str]]:
    """What each service is given: its environment; on Kubernetes, PostgreSQL's is what
    CloudNativePG is given (postgres-app), in the Docker image's names."""

    def docker(name: str) -> dict[str, str]:
        return docker_env(prefixed(d, name) if name in ("api-migrate", "minio-bootstrap") else container(d, name))

    def kubernetes(name: str) -> dict[str, str]:
        if name == "postgres":
            app = secret_data(d, "postgres-app")
            return {"POSTGRES_USER": app["username"], "POSTGRES_PASSWORD": app["password"]}
        return k8s_env(d, name)

    return docker if target == "docker" else kubernetes


@pytest.mark.parametrize(("stack", "target"), [("dev", "docker"), ("staging", "kubernetes"), ("prod", "docker")])
def test_fingerprints_are_sha256_of_the_deployed_values(stack: str, target: str) -> None:
    d = deployed(stack, target) if stack != "prod" else run_program("prod", overrides={"target": "docker", **ONE_EACH})
    env = _env_reader(d, target)
    inventory = d.outputs["secretInventory"]
    sources = dict(INVENTORY_SOURCES)
    if target == "docker":
        # The image's initdb password, which the first credentials job removes.
        sources["POSTGRES_BOOTSTRAP_PASSWORD"] = lambda env: env("postgres")["POSTGRES_PASSWORD"]
    assert set(inventory) == set(sources)
    for name, source in sources.items():
        value = source(env)
        assert inventory[name] == "sha256:" + hashlib.sha256(value.encode()).hexdigest(), name
        assert not is_secret(inventory[name])
    assert len(set(inventory.values())) == len(inventory), "two secrets share a value"


def test_fingerprint_of_a_supplied_secret() -> None:
    supplied = "s3cr3t-" + "x" * 57
    d = run_program("dev", secret_config={"secrets.jwtSecret": supplied})
    assert docker_env(container(d, "api"))["JWT_SECRET"] == supplied
    assert d.outputs["secretInventory"]["JWT_SECRET"] == "sha256:" + hashlib.sha256(supplied.encode()).hexdigest()


@pytest.mark.parametrize(("stack", "target"), [("dev", "docker"), ("staging", "kubernetes")])
def test_every_consumer_gets_the_same_secret(stack: str, target: str) -> None:
    d = deployed(stack, target)
    env = _env_reader(d, target)
    api, worker = env("api"), env("worker")
    for key in ("DATABASE_URL", "REDIS_URL", "API_KEY_ENCRYPTION_KEY", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert api[key] == worker[key], key
    # URL credentials are percent-encoded; decoded, they are the servers' own.
    url = urlsplit(api["DATABASE_URL"])
    if target == "docker":
        # This generation's login role, whose SCRAM verifier the credentials job sets; the
        # server's container has only the bootstrap password of its superuser.
        assert (url.username, env("postgres")["POSTGRES_USER"]) == ("aixsss_g0", "postgres")
        verifier = docker_env(prefixed(d, "postgres-credentials"))["LOGIN_VERIFIER"]
        salt = base64.b64decode(verifier.split("$")[1].split(":")[1])
        assert verifier == postgres.scram_verifier(unquote(url.password or ""), salt)
        assert env("postgres")["POSTGRES_PASSWORD"] != unquote(url.password or "")
    else:
        # This generation's login role, a CloudNativePG managed role with its own Secret; the
        # owner (postgres-app) is initdb's and never logs in over the network.
        login = secret_data(d, "postgres-login-g0")
        assert unquote(url.password or "") == login["password"]
        assert url.username == login["username"] == "aixsss_g0"
        assert env("postgres")["POSTGRES_USER"] == "aixsss"
    assert unquote(urlsplit(api["REDIS_URL"]).password or "") == env("redis")["REDISCLI_AUTH"]
    if target == "docker":
        migrate = docker_env(prefixed(d, "api-migrate"))
        bootstrap = docker_env(prefixed(d, "minio-bootstrap"))
        conf = uploads(d, container(d, "redis"))["/etc/aixsss/redis.conf"]["content"]
    else:
        migrate, bootstrap = env("api-migrate"), env("minio-bootstrap")
        conf = k8s_file(d, "redis", "/etc/aixsss/redis.conf")
    (user,) = [line for line in conf.splitlines() if line.startswith("user default ")]
    assert f"#{hashlib.sha256(env('redis')['REDISCLI_AUTH'].encode()).hexdigest()}" in user.split()
    assert migrate["DATABASE_URL"] == api["DATABASE_URL"]
    assert bootstrap["APP_ACCESS_KEY"] == api["S3_ACCESS_KEY_ID"]
    assert bootstrap["APP_SECRET_KEY"] == api["S3_SECRET_ACCESS_KEY"]
    assert bootstrap["MINIO_ROOT_PASSWORD"] == env("minio")["MINIO_ROOT_PASSWORD"]
    # The backups' user is not the app's: the app's keys cannot reach the backups bucket.
    assert bootstrap["BACKUP_ACCESS_KEY"] not in (bootstrap["APP_ACCESS_KEY"], bootstrap["MINIO_ROOT_USER"])
    assert bootstrap["BACKUP_SECRET_KEY"] not in (bootstrap["APP_SECRET_KEY"], bootstrap["MINIO_ROOT_PASSWORD"])
    if target == "kubernetes":
        # CloudNativePG archives with exactly the keys the bootstrap registers, and checks the
        # store's certificate against the CA that signed it.
        keys = secret_data(d, "postgres-backup-s3")
        assert keys == {
            "ACCESS_KEY_ID": bootstrap["BACKUP_ACCESS_KEY"],
            "ACCESS_SECRET_KEY": bootstrap["BACKUP_SECRET_KEY"],
        }
        assert secret_data(d, "postgres-backup-ca")["ca.crt"] == k8s_file(d, "minio-bootstrap", CA)
        # and the owner CloudNativePG creates is the user in the URL, with the same password
        assert cnpg_cluster(d)["spec"]["bootstrap"]["initdb"]["owner"] == "aixsss"


def test_api_key_encryption_key_survives_rotation() -> None:
    plain = run_program("dev")
    rotated = run_program("dev", overrides={"secrets.rotation": 4})
    key = rotated.named("apiKeyEncryptionKey", "random:index/randomBytes:RandomBytes")
    assert key.protect is True and "keepers" not in key.plain
    assert plain.named("apiKeyEncryptionKey").plain == key.plain
    for stack, retained in (("dev", False), ("staging", True), ("prod", True)):
        reg = deployed(stack, "kubernetes").named("apiKeyEncryptionKey", "random:index/randomBytes:RandomBytes")
        assert reg.protect is True and reg.retain_on_delete is retained, stack


@pytest.mark.parametrize(("stack", "protected"), [("dev", False), ("staging", True), ("prod", True)])
def test_namespace_is_protected_where_data_is(stack: str, protected: bool) -> None:
    namespace = deployed(stack, "kubernetes").of_type("kubernetes:core/v1:Namespace")[0]
    assert namespace.protect is protected and namespace.retain_on_delete is protected


# --------------------------------------------------------------------------- secret files

# Docker uploads: path -> (permissions, owner). Keys and the file holding the Redis password
# are readable by the service's user only; everything else is world-readable, never writable.
DOCKER_FILES: dict[str, dict[str, tuple[str, str | None]]] = {
    "postgres": {
        "/etc/aixsss/postgresql.conf": ("0444", None),
        "/etc/aixsss/pg_hba.conf": ("0444", None),
        "/etc/aixsss/pg_ident.conf": ("0444", None),
        "/etc/aixsss/tls/server.crt": ("0444", None),
        "/etc/aixsss/tls/ca.crt": ("0444", None),
        "/etc/aixsss/tls/server.key": ("0600", "999"),
        # pgBackRest's: no secret in either (the repository keys are secret env).
        "/etc/aixsss/pgbackrest.conf": ("0444", None),
        "/etc/aixsss/pgbackrest-scheduler.sh": ("0444", None),
    },
    "redis": {
        "/etc/aixsss/redis.conf": ("0600", "999"),
        "/etc/aixsss/tls/server.crt": ("0444", None),
        "/etc/aixsss/tls/ca.crt": ("0444", None),
        "/etc/aixsss/tls/server.key": ("0600", "999"),
    },
    "minio": {
        "/etc/aixsss/minio-certs/public.crt": ("0444", None),
        "/etc/aixsss/minio-certs/CAs/ca.crt": ("0444", None),
        "/etc/aixsss/minio-certs/private.key": ("0600", "1000"),
    },
    "edge": {
        "/etc/aixsss/nginx.conf": ("0444", None),
        "/etc/aixsss/tls/tls.crt": ("0444", None),
        "/etc/aixsss/tls/tls.key": ("0600", "101"),
    },
    # The api's release record (components/releases.py): read by the policy pack, no secret in it.
    "api": {CA: ("0444", None), "/etc/aixsss/release.json": ("0444", None), "/etc/aixsss/front.conf": ("0444", None)},
    "worker": {CA: ("0444", None)},
}


def test_docker_secret_files_are_private_to_the_service_user() -> None:
    d = deployed("dev", "docker")
    for name, files in DOCKER_FILES.items():
        c = container(d, name)
        found = {path: (u["permissions"], u.get("owner")) for path, u in uploads(d, c).items()}
        assert found == files, name
        uid = c.plain["user"].split(":")[0]
        assert all(owner in (None, uid) for _, owner in files.values()), name
    assert is_secret(carrier_of(d, container(d, "redis")).inputs["uploads"])


def test_docker_acme_bootstrap_key_is_private() -> None:
    d = run_program("prod", overrides={"target": "docker", **ONE_EACH})
    # Delivered like every service's files: a carrier fills the volume the client mounts read-only.
    client = container(d, "edge-acme-client")
    files = delivered(d, client)
    uid = client.plain["user"].split(":")[0]
    key = files["/etc/aixsss/bootstrap/tls.key"]
    assert (key["permissions"], key["owner"]) == ("0400", uid)
    assert files["/etc/aixsss/bootstrap/tls.crt"]["permissions"] == "0444"
    assert is_secret(carrier_of(d, client).inputs["uploads"])


# Kubernetes: which paths each pod gets from its Secret (everything else: a ConfigMap).
K8S_SECRET_PATHS = {
    "redis": {"/etc/aixsss/redis.conf", "/etc/aixsss/tls/server.key"},
    # With its root credentials (MINIO_ROOT_USER_FILE and MINIO_ROOT_PASSWORD_FILE name them).
    "minio": {
        "/etc/aixsss/minio-certs/private.key",
        "/etc/aixsss/env/MINIO_ROOT_USER",
        "/etc/aixsss/env/MINIO_ROOT_PASSWORD",
    },
    "edge": {"/etc/aixsss/tls/tls.key"},
}
FS_GROUP = {"redis": 999, "minio": 1000, "edge": 101}


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_kubernetes_secret_files_come_from_secrets_readable_by_the_pod_group_only(stack: str) -> None:
    d = deployed(stack, "kubernetes")
    for name, secret_paths in K8S_SECRET_PATHS.items():
        pod = pod_spec(d, name)
        volumes = {v["name"]: v for v in pod["volumes"]}
        from_secret = set()
        for mount in pod["containers"][0]["volumeMounts"]:
            sources = volumes[mount["name"]].get("projected", {}).get("sources", [])
            for source in sources:
                kind = "secret" if "secret" in source else "configMap"
                for item in source[kind]["items"]:
                    path = f"{mount['mountPath']}/{item['path']}"
                    # Owned by root, readable by the pod's fsGroup: secrets never by others.
                    assert item["mode"] == (0o440 if kind == "secret" else 0o444), (name, path)
                    if kind == "secret":
                        from_secret.add(path)
            if sources:
                assert mount["readOnly"] is True
                assert volumes[mount["name"]]["projected"]["defaultMode"] == 0o440
        assert from_secret == secret_paths, name
        assert set(secret_paths) <= set(k8s_files(d, name)), name
        assert pod["securityContext"]["fsGroup"] == FS_GROUP[name], name
    # PostgreSQL's key reaches CloudNativePG in a kubernetes.io/tls Secret (the operator mounts it
    # for the postgres user); its CA Secret holds the certificate alone, no key to sign with.
    tls = d.named("postgres-server-tls", SECRET)
    assert tls.plain["type"] == "kubernetes.io/tls" and "PRIVATE KEY" in tls.plain["stringData"]["tls.key"]
    assert is_secret(tls.inputs["stringData"]) or is_secret(tls.inputs["stringData"]["tls.key"])
    assert set(secret_data(d, "postgres-ca")) == {"ca.crt"}
    assert "PRIVATE KEY" not in secret_data(d, "postgres-ca")["ca.crt"]


def test_kubernetes_acme_certificate_secret_mode() -> None:
    pod = pod_spec(deployed("prod", "kubernetes"), "edge")
    tls = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "edge-public-tls")
    assert tls["secret"]["defaultMode"] == 0o440


def test_no_secret_file_content_in_a_config_map() -> None:
    d = deployed("staging", "kubernetes")
    for cm in d.of_type("kubernetes:core/v1:ConfigMap"):
        for key, text in cm.plain["data"].items():
            assert "PRIVATE KEY" not in text and "requirepass" not in text, (cm.name, key)
    # and the private keys in Secrets are secret inputs, not plain strings
    for text in [t for s in d.of_type(SECRET) for t in plain_strings(s.inputs)]:
        assert "PRIVATE KEY" not in text


# --------------------------------------------------------------------------- checklist turning false
# The checklist must decide from what is declared. Each case breaks the program in one place
# (a spec changed before it is placed, or a config renderer) and expects exactly that item false.


def _break_spec(monkeypatch: pytest.MonkeyPatch, service: str, change: Callable[[Any], Any]) -> None:
    from components.service import Service

    original = Service._place

    def place(self: Any, platform: Any, spec: Any, depends_on: list[Any]) -> Any:
        if spec.name == service:
            spec = change(spec)
        return original(self, platform, spec, depends_on)

    monkeypatch.setattr(Service, "_place", place)


def _checklist(stack: str = "dev") -> dict[str, dict[str, Any]]:
    return reveal(run_program(stack).outputs)["checklist"]


def _false(checklist: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k, v in checklist.items() if not v["ok"]}


def _only_false(checklist: dict[str, dict[str, Any]], item: str) -> str:
    assert _false(checklist) == {item}, checklist
    return checklist[item]["reason"]


def test_checklist_all_true_as_declared() -> None:
    for stack in ("dev", "staging", "prod"):
        checklist = reveal(run_program(stack).outputs)["checklist"]
        assert not _false(checklist), (stack, checklist)


def test_checklist_database_published_publicly(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_spec(
        monkeypatch,
        "postgres",
        lambda s: dataclasses.replace(s, ports=[dataclasses.replace(p, host_ip="0.0.0.0") for p in s.ports]),
    )
    reason = _only_false(_checklist(), "security.databaseNotPublic")
    assert "0.0.0.0" in reason and "5432" in reason


def test_checklist_data_service_outside_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.spec import Zone

    _break_spec(monkeypatch, "redis", lambda s: dataclasses.replace(s, zones=frozenset({Zone.BACKEND, Zone.FRONTEND})))
    assert "redis" in _only_false(_checklist(), "network.dataIsolated")


def test_checklist_plain_text_flow_into_data(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_spec(
        monkeypatch,
        "postgres",
        lambda s: dataclasses.replace(s, ports=[dataclasses.replace(p, tls=False) for p in s.ports]),
    )
    assert "postgres" in _only_false(_checklist("staging"), "network.dataIsolated")


def test_checklist_secret_not_injected_as_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    def move_jwt(s: Any) -> Any:
        secret_env = dict(s.secret_env)
        secret_env.pop("JWT_SECRET")
        return dataclasses.replace(s, secret_env=secret_env, env={**s.env, "JWT_SECRET": "not-a-secret-" * 4})

    _break_spec(monkeypatch, "api", move_jwt)
    assert "JWT_SECRET" in _only_false(_checklist(), "env.secretsGeneratedAndInjected")


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_checklist_api_not_probed_at_health(monkeypatch: pytest.MonkeyPatch, stack: str) -> None:
    # Docker runs the command, Kubernetes the HTTP probe: break both, each target sees its own.
    def elsewhere(s: Any) -> Any:
        command = [part.replace("/api/health", "/api/version") for part in s.probe.command]
        return dataclasses.replace(s, probe=dataclasses.replace(s.probe, http_path="/api/version", command=command))

    _break_spec(monkeypatch, "api", elsewhere)
    _only_false(_checklist(stack), "health.endpoint")


def test_checklist_api_probed_on_the_wrong_port(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_spec(monkeypatch, "api", lambda s: dataclasses.replace(s, probe=dataclasses.replace(s.probe, port=3000)))
    _only_false(_checklist("staging"), "health.endpoint")


def test_checklist_a_serving_service_without_health_check(monkeypatch: pytest.MonkeyPatch) -> None:
    _break_spec(monkeypatch, "web", lambda s: dataclasses.replace(s, probe=None))
    assert "web" in _only_false(_checklist(), "health.endpoint")


def test_checklist_minio_without_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_certs(s: Any) -> Any:
        args = list(s.args)
        i = args.index("--certs-dir")
        return dataclasses.replace(s, args=args[:i] + args[i + 2 :])

    _break_spec(monkeypatch, "minio", no_certs)
    _only_false(_checklist(), "security.minioHttps")


def test_checklist_redis_plain_port_open(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.conf import redis

    original = redis.render
    monkeypatch.setattr(redis, "render", lambda s: original(s).replace("\nport 0\n", "\nport 6380\n"))
    _only_false(_checklist(), "security.redisAuthAndTls")


def test_checklist_redis_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.conf import redis

    original = redis.render

    def no_password(s: Any) -> str:
        return "\n".join(line for line in original(s).splitlines() if not line.startswith("user default")) + "\n"

    monkeypatch.setattr(redis, "render", no_password)
    _only_false(_checklist(), "security.redisAuthAndTls")


def test_checklist_no_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("postgres", "redis", "minio"):
        # PostgreSQL keeps the socket volume its credentials jobs share: it holds no data.
        _break_spec(
            monkeypatch, name, lambda s: dataclasses.replace(s, volumes=[v for v in s.volumes if not v.holds_data])
        )
    _only_false(_checklist(), "storage.volumesDeclared")


# --------------------------------------------------------------------------- docker networks

# Every container's networks, written out: Docker filters by network, not by port, so network
# membership is the whole of who may reach whom (frontend and backend are internal: no route
# out). Docker publishes nothing from internal networks: each publisher also joins a
# non-internal network of its own, `<service>-published`, which no other container joins.
DOCKER_NETWORKS = {
    # The services with exporters in their namespace: a metrics network each, of their own.
    "postgres": {"backend", "postgres-metrics"},
    # Its backup scheduler: the zone only, never the network of postgres's published port.
    "postgres-backups": {"backend"},
    "redis": {"backend", "redis-metrics"},
    "minio": {"backend"},
    "minio-bootstrap": {"backend"},
    "api-migrate": {"backend"},
    # PostgreSQL's credentials jobs reach it through its socket (a shared volume): no network.
    "postgres-credentials": set(),
    "postgres-retire-logins": set(),
    # api and worker join the namespace of their Redis tunnel, which holds their networks.
    "api": set(),
    "api-redis-tls": {"frontend", "backend", "egress"},
    # The api's draining front (spec.Handover) takes the api's port in the same namespace.
    "api-front": set(),
    "worker": set(),
    "worker-redis-tls": {"backend", "egress"},
    "web": {"frontend"},
    "edge": {"frontend", "edge-published", "edge-metrics"},
    "edge-acme-client": {"egress"},
    # Exporters join their service's namespace (network_mode container:<service>).
    "postgres-pg-exporter": set(),
    "postgres-backup-exporter": set(),
    "redis-exporter": set(),
    "edge-nginx-exporter": set(),
    "edge-mtail": set(),
    # The edge's route containers only write a file into the edge's routes volume: no network.
    "edge-routes-api": set(),
    "edge-routes-web": set(),
}
# dev publishes the data ports on loopback (docker.publishDataPorts).
DEV_PUBLISHERS = {"postgres", "redis", "minio"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_docker_network_membership_of_every_container(stack: str) -> None:
    # From the second rotation: the job that retires the logins before the previous one is there too.
    d = run_program(stack, overrides={"target": "docker", "secrets.rotation": 2, **ONE_EACH})
    prefix = f"aixsss-{stack}-"
    seen = set()
    for c in d.of_type(CONTAINER):
        if c.name.endswith(("volume-owner", "-config")):
            assert c.plain["networkMode"] == "none" and not c.plain.get("networksAdvanced"), c.name
            continue
        key = re.sub(r"-[0-9a-f]{12}$", "", c.name)
        nets = {n["name"].removeprefix(prefix) for n in c.plain.get("networksAdvanced") or []}
        published = {f"{key}-published"} if stack == "dev" and key in DEV_PUBLISHERS else set()
        assert nets == DOCKER_NETWORKS[key] | published, c.name
        seen.add(key)
    assert seen == set(DOCKER_NETWORKS) - ({"edge-acme-client"} if stack == "dev" else set())
    internal = {
        n.plain["name"].removeprefix(prefix): n.plain.get("internal") for n in d.of_type("docker:index/network:Network")
    }
    publishers = {"edge", *(DEV_PUBLISHERS if stack == "dev" else ())}
    assert internal == {"frontend": True, "backend": True, "egress": False} | {
        f"{p}-published": False for p in publishers
    } | {f"{s}-metrics": True for s in ("postgres", "redis", "edge")}


# --------------------------------------------------------------------------- app environment

NODE_ENV = {"dev": "development", "staging": "production", "prod": "production"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_node_env_and_trusted_ca_of_the_apps(stack: str) -> None:
    d = deployed(stack, "kubernetes")
    # The CA CloudNativePG serves with (serverCASecret), which signed the server certificate.
    ca_pem = secret_data(d, "postgres-ca")["ca.crt"]
    assert ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    server = x509.load_pem_x509_certificate(secret_data(d, "postgres-server-tls")["tls.crt"].encode())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    for name in ("api", "worker", "api-migrate"):
        env = k8s_env(d, name)
        assert env["NODE_ENV"] == NODE_ENV[stack], name
        # Prisma verifies postgres against the file named by sslcert: the CA, mounted here.
        sslcert = re.search(r"[?&]sslcert=([^&]+)", env["DATABASE_URL"])
        assert sslcert and unquote(sslcert.group(1)) == CA, name
        assert k8s_file(d, name, CA) == ca_pem, name
    for name in ("api", "worker"):
        # Node trusts the internal CA for rediss:// and the S3 endpoint.
        assert k8s_env(d, name)["NODE_EXTRA_CA_CERTS"] == CA, name
    bootstrap = k8s_env(d, "minio-bootstrap")
    assert bootstrap["SSL_CERT_FILE"] == CA and k8s_file(d, "minio-bootstrap", CA) == ca_pem


def test_docker_apps_trust_the_stack_ca() -> None:
    d = deployed("dev", "docker")
    ca_pem = uploads(d, container(d, "redis"))[CA]["content"]
    for c in (container(d, "api"), container(d, "worker"), prefixed(d, "api-migrate"), prefixed(d, "minio-bootstrap")):
        assert uploads(d, c)[CA]["content"] == ca_pem, c.name
    for c in (container(d, "api"), container(d, "worker")):
        env = docker_env(c)
        assert env["NODE_EXTRA_CA_CERTS"] == CA and env["NODE_ENV"] == "development", c.name


# Generated secret lengths: the least strength each secret must have, written out.
PASSWORD_LENGTHS = {
    "postgresPassword": 32,
    "redisPassword": 32,
    "redisPasswordSlot1": 32,  # the second rotation slot (components/secrets.py)
    "postgresPasswordSlot1": 32,  # Kubernetes: the login roles' second slot
    "minioRootUser": 16,
    "minioRootPassword": 40,
    "minioAppAccessKey": 20,
    "minioAppSecretKey": 40,
    "backupAccessKey": 20,
    "backupSecretKey": 40,
    "jwtSecret": 64,
}


def test_the_docker_postgres_password_has_its_strength() -> None:
    """One host generates PostgreSQL's password alone (Kubernetes: two slots, below)."""
    d = deployed("dev", "docker")
    generated = d.named("postgresPassword", "random:index/randomPassword:RandomPassword")
    assert len(reveal(generated.outputs["result"])) >= PASSWORD_LENGTHS["postgresPassword"]


def test_generated_secrets_have_their_strength() -> None:
    d = deployed("staging", "kubernetes")
    passwords = {p.name: p for p in d.of_type("random:index/randomPassword:RandomPassword")}
    assert set(passwords) == set(PASSWORD_LENGTHS)
    for name, p in passwords.items():
        assert len(reveal(p.outputs["result"])) >= PASSWORD_LENGTHS[name], name
    # S3 access key ids: upper case and digits, as MinIO's and AWS's.
    for name in ("minioAppAccessKey", "backupAccessKey"):
        assert re.fullmatch(r"[A-Z0-9]{20}", reveal(passwords[name].outputs["result"])), name
    key = d.named("apiKeyEncryptionKey", "random:index/randomBytes:RandomBytes")
    assert int(key.plain["length"]) == 32  # the app's AES-256 key: exactly 32 bytes


# --------------------------------------------------------------------------- one docker host


def _overlap(a: str, b: str) -> bool:
    # 0.0.0.0 binds every address, so it collides with any address on the same port.
    return a == b or "0.0.0.0" in (a, b)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_two_containers_publish_the_same_host_port(stack: str) -> None:
    from components.config import StackConfigError

    try:
        d = run_program(stack, overrides={"target": "docker"})
    except StackConfigError as refused:
        assert "edge.replicas" in str(refused)  # refusing the stack file's values is a fix too
        return
    bindings = [(c.name, p["ip"], int(p["external"])) for c in d.of_type(CONTAINER) for p in c.plain.get("ports") or []]
    for i, (name, ip, port) in enumerate(bindings):
        for other, other_ip, other_port in bindings[i + 1 :]:
            assert not (port == other_port and _overlap(ip, other_ip)), f"{name} and {other} both bind {ip}:{port}"


# --------------------------------------------------------------------------- the app's redis client


def _as_the_app_parses(redis_url: str) -> tuple[str, int]:
    """What api and worker connect to: the app's parseRedisUrl (apps/api/src/jobs/queue.providers.ts,
    apps/worker/src/worker.ts) keeps host, port and password and drops the scheme, so BullMQ
    connects in plain text even to rediss:// (tests/appcode/test_app_redis.py runs that code)."""
    parsed = urlsplit(redis_url)
    return parsed.hostname or "", parsed.port or 6379


def _tunnel_of(d: Deployment, target: str, name: str) -> str:
    """The Redis tunnel's nginx.conf as ``name``'s sidecar gets it."""
    if target == "docker":
        return uploads(d, container(d, f"{name}-redis-tls"))["/etc/aixsss/redis-tls.conf"]["content"]
    sidecars = [c for c in pod_spec(d, name).get("initContainers", []) if c.get("restartPolicy") == "Always"]
    assert [c["name"] for c in sidecars] == ["redis-tls"], name
    data = d.named(f"{name}-redis-tls-files", "kubernetes:core/v1:ConfigMap").plain["data"]
    return data["etc_aixsss_redis-tls.conf"]


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_the_apps_redis_client_reaches_redis_through_a_verifying_tunnel(target: str) -> None:
    d = deployed("dev", target)
    redis_conf = (
        uploads(d, container(d, "redis"))["/etc/aixsss/redis.conf"]["content"]
        if target == "docker"
        else k8s_file(d, "redis", "/etc/aixsss/redis.conf")
    ).splitlines()
    assert "port 0" in redis_conf and "tls-port 6379" in redis_conf  # Redis itself: TLS only
    for name in ("api", "worker"):
        env = docker_env(container(d, name)) if target == "docker" else k8s_env(d, name)
        host, port = _as_the_app_parses(env["REDIS_URL"])
        # Plain text only on the namespace's loopback, where the tunnel listens...
        assert host == "127.0.0.1", name
        tunnel = [line.strip() for line in _tunnel_of(d, target, name).splitlines()]
        assert f"listen 127.0.0.1:{port};" in tunnel, name
        # ...which opens TLS to Redis's TLS port and checks its certificate against the CA.
        upstream = next(line for line in tunnel if line.startswith("server ") and line.endswith("resolve;"))
        assert upstream.split()[1].rsplit(":", 1)[1] == "6379", upstream
        for directive in ("proxy_ssl on;", "proxy_ssl_verify on;", "proxy_ssl_server_name on;"):
            assert directive in tunnel, (name, directive)
        assert "proxy_ssl_trusted_certificate /etc/aixsss/tls/ca.crt;" in tunnel
        if target == "docker":
            owner = container(d, f"{name}-redis-tls")
            assert container(d, name).plain["networkMode"] == f"container:{owner.id}", name


# --------------------------------------------------------------------------- run-once jobs and volumes


def test_docker_run_once_jobs_are_waited_for_and_never_restarted() -> None:
    d = deployed("dev", "docker")
    for prefix in ("api-migrate", "minio-bootstrap"):
        job = prefixed(d, prefix).plain
        # attach: `pulumi up` waits for the exit and fails the update if the job fails.
        assert job["attach"] is True and job["mustRun"] is False and job["restart"] == "no", prefix
        assert not job.get("wait"), prefix
    for name in ("api", "worker", "postgres"):
        service = container(d, name).plain
        assert not service.get("attach") and service["mustRun"] is True, name


def test_kubernetes_jobs_are_replaced_not_patched() -> None:
    d = deployed("staging", "kubernetes")
    jobs = d.of_type("kubernetes:batch/v1:Job")
    assert {j.name for j in jobs} == {"api-migrate", "minio-bootstrap", "postgres-act-as-owner"}
    for job in jobs:
        # A Job's pod template is immutable: a new release deletes the old Job first.
        assert job.delete_before_replace is True, job.name
        assert job.plain["spec"]["template"]["spec"]["restartPolicy"] == "Never", job.name


def test_kubernetes_claims_do_not_wait_for_binding() -> None:
    # With WaitForFirstConsumer storage a claim binds only once its pod exists.
    for claim in deployed("staging", "kubernetes").of_type("kubernetes:core/v1:PersistentVolumeClaim"):
        assert claim.plain["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true", claim.name


VOLUME_OWNERS = {"minio": "1000:1000"}
# Their images make the mounted directories their user's (Volume.owned_by_image), and Docker copies
# owner and mode into a new volume: no root job (tests/realdocker starts them on fresh volumes).
IMAGE_OWNED = {"postgres": "999:999", "redis": "999:999"}


def test_docker_volumes_are_handed_to_the_service_user() -> None:
    d = deployed("dev", "docker")
    for name, owner in VOLUME_OWNERS.items():
        chown = container(d, f"{name}-volume-owner").plain
        assert chown["entrypoints"] == ["chown", "-R", owner], name
        assert container(d, name).plain["user"] == owner, name
        # Its data volumes; the config volume is mounted read-only and filled by its carrier.
        service_volumes = {v["volumeName"] for v in container(d, name).plain["volumes"] if not v.get("readOnly")}
        assert {v["volumeName"] for v in chown["volumes"]} == service_volumes, name
        assert d.depends_on(container(d, name), container(d, f"{name}-volume-owner")), name
    owners = {c.name for c in d.of_type(CONTAINER) if c.name.endswith("-volume-owner")}
    # The edge's routes volume: the edge writes what it loaded there (docker_routes).
    assert owners == {f"{name}-volume-owner" for name in VOLUME_OWNERS} | {"edge-routes-volume-owner"}, owners
    routes = container(d, "edge-routes-volume-owner").plain
    assert routes["entrypoints"] == ["chown", "-R", container(d, "edge").plain["user"]]
    for name, user in IMAGE_OWNED.items():
        assert container(d, name).plain["user"] == user, name


def test_kubernetes_tunnel_probes_run_inside_the_pod() -> None:
    # A TCP probe dials the pod IP; the tunnel listens on 127.0.0.1 only, so its probes are
    # commands: the startup probe (which holds the app back) needs Redis's answer through it.
    d = deployed("prod", "kubernetes")
    for name in ("api", "worker"):
        (sidecar,) = pod_spec(d, name)["initContainers"]
        assert sidecar["restartPolicy"] == "Always"
        startup, liveness = sidecar["startupProbe"], sidecar["livenessProbe"]
        assert "tcpSocket" not in startup and "tcpSocket" not in liveness
        assert startup["exec"]["command"] == DOCKER_HEALTHCHECKS["api-redis-tls"][1:]
        assert liveness["exec"]["command"] == ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6379"]


def test_an_image_pull_secret_reaches_every_pod() -> None:
    d = run_program("staging", overrides={"kubernetes.imagePullSecret": "registry-creds"})
    for reg in d.registrations:
        if reg.type in WORKLOADS:
            spec = reg.plain["spec"]["template"]["spec"]
            assert spec["imagePullSecrets"] == [{"name": "registry-creds"}], reg.name
    # CloudNativePG's instances too (its PostgreSQL image may come from the same registry).
    assert cnpg_cluster(d)["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]
