"""Every configurable value reaches what is deployed: odd values in, the same odd values out.

Tested at their defaults only, a program that ignores a key and hard-codes its default passes.
Here each key gets a distinctive non-default value, and the test reads it back from the
rendered resources (container env, uploaded files, Kubernetes objects) against literals written
in the test, never against a value the program computes.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest
from harness import Deployment, Registration, delivered, k8s_file, reveal, run_program

CONTAINER = "docker:index/container:Container"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
CERT = "tls:index/locallySignedCert:LocallySignedCert"

# Distinctive values: none is a default, and no two services share a cpu/memory figure, so a
# value read from the wrong section shows. Physically sensible (maxmemory below the cache's
# memory, shared_buffers a quarter of the database's).
ODD: dict[str, Any] = {
    "domain": "shop.example.org",
    "api.aiQueueName": "q-7f3",
    "worker.concurrency": 7,
    "cache.maxmemoryMb": 333,
    "cache.memoryMb": 640,
    "cache.cpuMillis": 300,
    "cache.storageGb": 3,
    "database.maxConnections": 97,
    "database.connectionLimit": 9,
    "database.memoryMb": 1536,
    "database.cpuMillis": 1250,
    "database.storageGb": 13,
    "objectStore.bucket": "media-5q",
    "objectStore.storageGb": 29,
    "objectStore.cpuMillis": 400,
    "objectStore.memoryMb": 768,
    "objectStore.noncurrentVersionDays": 23,
    "api.migrationCommand": ["node", "dist/migrate.js", "--yes"],
    "api.replicas": 3,
    "api.cpuMillis": 750,
    "api.memoryMb": 704,
    "worker.replicas": 2,
    "worker.cpuMillis": 350,
    "worker.memoryMb": 448,
    "web.replicas": 2,
    "web.cpuMillis": 150,
    "web.memoryMb": 96,
    "edge.cpuMillis": 450,
    "edge.memoryMb": 192,
    "edge.clientMaxBodySizeMb": 17,
    "edge.apiRatePerSecond": 13,
    "edge.apiRateBurst": 27,
    "edge.apiRateDelay": 9,
    "tls.validityHours": 2000,
    "tls.earlyRenewalHours": 100,
    "backup.bucket": "bk-3z",
    "backup.hourUtc": 5,
    "backup.retentionDays": 9,
    "backup.serverName": "pg-main-4",
}
KUBERNETES_ODD: dict[str, Any] = {
    **ODD,
    "edge.replicas": 3,
    "kubernetes.namespace": "team-a9",
    "kubernetes.storageClass": "fast-ssd",
    # CloudNativePG (Kubernetes only: one instance on Docker): neither is a default or prod's 3/1.
    "database.instances": 4,
    "database.synchronousReplicas": 2,
}
# cpu (Docker's `cpus`, Kubernetes' quantity) and memory per workload name, as written above.
LIMITS = {
    "postgres": ("1.25", "1250m", 1536),
    "redis": ("0.3", "300m", 640),
    "minio": ("0.4", "400m", 768),
    "api": ("0.75", "750m", 704),
    "worker": ("0.35", "350m", 448),
    "web": ("0.15", "150m", 96),
    "edge": ("0.45", "450m", 192),
}


@functools.cache
def docker_dev() -> Deployment:
    return run_program("dev", overrides=ODD)


@functools.cache
def kubernetes_staging() -> Deployment:
    return run_program("staging", overrides=KUBERNETES_ODD)


def containers(d: Deployment, service: str) -> list[Registration]:
    return [c for c in d.of_type(CONTAINER) if re.fullmatch(rf"{re.escape(service)}(-\d+)?", c.name)]


def container(d: Deployment, service: str) -> Registration:
    found = containers(d, service)
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def job_container(d: Deployment, prefix: str) -> Registration:
    found = [
        c for c in d.of_type(CONTAINER) if c.name.startswith(f"{prefix}-") and not c.name.endswith(("owner", "-config"))
    ]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def docker_env(c: Registration) -> dict[str, str]:
    return dict(e.split("=", 1) for e in reveal(c.inputs["envs"]))


def uploaded(d: Deployment, c: Registration, path: str) -> str:
    """The content ``c`` sees at ``path``: from its config carrier (tests.harness.delivered)."""
    return delivered(d, c)[path]["content"]


def k8s_workload(d: Deployment, name: str) -> dict[str, Any]:
    kinds = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
    found = [r for r in d.registrations if r.type in kinds and r.name == name]
    assert len(found) == 1, name
    return found[0].plain


def k8s_container(d: Deployment, name: str) -> dict[str, Any]:
    return k8s_workload(d, name)["spec"]["template"]["spec"]["containers"][0]


def k8s_custom(d: Deployment, kind: str, name: str) -> dict[str, Any]:
    """A custom resource (CloudNativePG, Barman Cloud) by its kind and metadata name."""
    found = [r.plain for r in d.registrations if r.plain.get("kind") == kind and r.plain["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def k8s_cluster(d: Deployment) -> dict[str, Any]:
    """The CloudNativePG Cluster's spec: PostgreSQL on Kubernetes (no StatefulSet of ours)."""
    return k8s_custom(d, "Cluster", "postgres")["spec"]


def k8s_env(d: Deployment, name: str) -> dict[str, Any]:
    """Plain env values, and secret ones resolved through the Secret they reference."""
    env: dict[str, Any] = {}
    for e in k8s_container(d, name).get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = d.named(ref["name"], "kubernetes:core/v1:Secret").plain["stringData"][ref["key"]]
    return env


# ------------------------------------------------------------------------ application env


def test_queue_name_and_concurrency_reach_api_and_worker_on_docker() -> None:
    d = docker_dev()
    for c in containers(d, "api"):
        assert docker_env(c)["AI_QUEUE_NAME"] == "q-7f3", c.name
    for c in containers(d, "worker"):
        env = docker_env(c)
        assert env["AI_QUEUE_NAME"] == "q-7f3" and env["WORKER_CONCURRENCY"] == "7", c.name


def test_queue_name_and_concurrency_reach_api_and_worker_on_kubernetes() -> None:
    d = kubernetes_staging()
    assert k8s_env(d, "api")["AI_QUEUE_NAME"] == "q-7f3"
    worker = k8s_env(d, "worker")
    assert worker["AI_QUEUE_NAME"] == "q-7f3" and worker["WORKER_CONCURRENCY"] == "7"


def test_bucket_reaches_the_apps_the_bootstrap_script_and_the_policy() -> None:
    for d, env_of in (
        (docker_dev(), lambda d, n: docker_env(containers(d, n)[0])),
        (kubernetes_staging(), k8s_env),
    ):
        for app in ("api", "worker"):
            assert env_of(d, app)["S3_BUCKET"] == "media-5q", app
    d = docker_dev()
    bootstrap = job_container(d, "minio-bootstrap")
    script = uploaded(d, bootstrap, "/etc/aixsss/bootstrap.sh")
    assert "mc mb --ignore-existing root/media-5q" in script.splitlines()
    assert "mc anonymous set none root/media-5q" in script.splitlines()
    # backup.bucket: a bucket of its own, private, for the backups' own user.
    assert "mc mb --ignore-existing root/bk-3z" in script.splitlines()
    assert "mc anonymous set none root/bk-3z" in script.splitlines()
    backup_policy = json.loads(uploaded(d, bootstrap, "/etc/aixsss/backup-policy.json"))
    assert sorted({r for s in backup_policy["Statement"] for r in s["Resource"]}) == [
        "arn:aws:s3:::bk-3z",
        "arn:aws:s3:::bk-3z/*",
    ]
    # No bucket name hard-coded: what is left of "aixsss" is paths and the two policies' names.
    stripped = script.replace("/etc/aixsss/", "").replace("aixsss-app", "").replace("aixsss-backups", "")
    assert "aixsss" not in stripped
    policy = json.loads(uploaded(d, bootstrap, "/etc/aixsss/app-policy.json"))
    resources = sorted({r for s in policy["Statement"] for r in s["Resource"]})
    assert resources == ["arn:aws:s3:::media-5q", "arn:aws:s3:::media-5q/*"]
    k = kubernetes_staging()
    k8s_script = k8s_file(k, "minio-bootstrap", "/etc/aixsss/bootstrap.sh").splitlines()
    assert "mc mb --ignore-existing root/media-5q" in k8s_script
    assert "mc mb --ignore-existing root/bk-3z" in k8s_script


def _lifecycles(script: list[str]) -> dict[str, dict]:
    """bucket -> the lifecycle configuration the script imports for it (a here-document)."""
    return {
        line.split()[-2].removeprefix("root/"): json.loads(script[i + 1])
        for i, line in enumerate(script)
        if line.startswith("mc ilm rule import ")
    }


def test_versioning_and_noncurrent_days_reach_both_buckets() -> None:
    for script in (
        uploaded(docker_dev(), job_container(docker_dev(), "minio-bootstrap"), "/etc/aixsss/bootstrap.sh").splitlines(),
        k8s_file(kubernetes_staging(), "minio-bootstrap", "/etc/aixsss/bootstrap.sh").splitlines(),
    ):
        assert "mc version enable root/media-5q" in script and "mc version enable root/bk-3z" in script
        lifecycles = _lifecycles(script)
        assert set(lifecycles) == {"media-5q", "bk-3z"}
        for config in lifecycles.values():
            (rule,) = config["Rules"]
            assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 23} and rule["Status"] == "Enabled"
    off = run_program("dev", overrides={**ODD, "objectStore.versioning": False})
    script = uploaded(off, job_container(off, "minio-bootstrap"), "/etc/aixsss/bootstrap.sh").splitlines()
    assert "mc version suspend root/media-5q" in script and "mc version suspend root/bk-3z" in script
    assert not any(line.startswith("mc version enable") for line in script)
    # The rule stays: it expires the versions kept while versioning was on.
    assert set(_lifecycles(script)) == {"media-5q", "bk-3z"}


def test_domain_reaches_cors_nginx_certificate_and_outputs() -> None:
    d = docker_dev()
    assert docker_env(containers(d, "api")[0])["CORS_ORIGIN"] == "https://shop.example.org"
    conf = uploaded(d, container(d, "edge"), "/etc/aixsss/nginx.conf")
    assert "    server_name shop.example.org;" in conf.splitlines()
    public = d.named("public-csr", "tls:index/certRequest:CertRequest").plain
    assert public["dnsNames"] == ["shop.example.org"]
    assert reveal(d.outputs)["endpoints"]["health"] == "https://shop.example.org/api/health"
    assert k8s_env(kubernetes_staging(), "api")["CORS_ORIGIN"] == "https://shop.example.org"


def test_connection_limit_reaches_every_database_url() -> None:
    # Prisma's pool per process: the stack's peak must fit database.maxConnections.
    d = docker_dev()
    urls = [docker_env(c)["DATABASE_URL"] for c in [*containers(d, "api"), *containers(d, "worker")]]
    urls.append(docker_env(job_container(d, "api-migrate"))["DATABASE_URL"])
    k = kubernetes_staging()
    urls += [k8s_env(k, name)["DATABASE_URL"] for name in ("api", "worker", "api-migrate")]
    for url in urls:
        assert re.search(r"[?&]connection_limit=9(&|$)", url), url


def test_migration_command_is_what_the_migration_job_runs() -> None:
    d = docker_dev()
    assert job_container(d, "api-migrate").plain["entrypoints"] == ["node", "dist/migrate.js", "--yes"]
    assert k8s_container(kubernetes_staging(), "api-migrate")["command"] == ["node", "dist/migrate.js", "--yes"]


def test_a_new_migration_command_is_a_new_release() -> None:
    # The job runs once per release; a changed command must run again.
    before = job_container(run_program("dev"), "api-migrate").name
    after = job_container(docker_dev(), "api-migrate").name
    assert before != after
    k8s_before = k8s_workload(run_program("staging"), "api-migrate")["metadata"]["name"]
    k8s_after = k8s_workload(kubernetes_staging(), "api-migrate")["metadata"]["name"]
    assert k8s_before != k8s_after


# ------------------------------------------------------------------------ server settings


def test_redis_maxmemory_is_the_configured_one() -> None:
    docker_conf = uploaded(docker_dev(), container(docker_dev(), "redis"), "/etc/aixsss/redis.conf").splitlines()
    k8s_conf = k8s_file(kubernetes_staging(), "redis", "/etc/aixsss/redis.conf").splitlines()
    for conf in (docker_conf, k8s_conf):
        assert "maxmemory 333mb" in conf
        assert "maxmemory-policy noeviction" in conf


def test_postgres_connections_and_buffers_follow_the_config() -> None:
    dev = docker_dev()
    docker_conf = uploaded(dev, container(dev, "postgres"), "/etc/aixsss/postgresql.conf").splitlines()
    assert "max_connections = 97" in docker_conf
    assert "shared_buffers = 384MB" in docker_conf  # a quarter of database.memoryMb 1536
    # Kubernetes: the operator writes postgresql.conf from the Cluster's parameters.
    parameters = k8s_cluster(kubernetes_staging())["postgresql"]["parameters"]
    assert parameters["max_connections"] == "97"
    assert parameters["shared_buffers"] == "384MB"


def test_edge_limits_follow_the_config() -> None:
    docker_conf = uploaded(docker_dev(), container(docker_dev(), "edge"), "/etc/aixsss/nginx.conf")
    k8s_conf = k8s_file(kubernetes_staging(), "edge", "/etc/aixsss/nginx.conf")
    for conf in (docker_conf, k8s_conf):
        lines = [line.strip() for line in conf.splitlines()]
        assert "client_max_body_size 17m;" in lines
        assert "limit_req_zone $binary_remote_addr zone=api:10m rate=13r/s;" in lines
        assert "limit_req zone=api burst=27 delay=9;" in lines


def test_certificate_lifetimes_follow_the_config() -> None:
    for d in (docker_dev(), kubernetes_staging()):
        leaves = d.of_type(CERT)
        assert leaves
        for leaf in leaves:
            assert leaf.plain["validityPeriodHours"] == 2000 and leaf.plain["earlyRenewalHours"] == 100, leaf.name


# ------------------------------------------------------------------------ sizes and counts


def test_docker_limits_and_replicas_follow_the_config() -> None:
    d = docker_dev()
    counts = {"api": 3, "worker": 2, "web": 2, "edge": 1, "postgres": 1, "redis": 1, "minio": 1}
    for service, (cpus, _quantity, memory) in LIMITS.items():
        found = containers(d, service)
        assert len(found) == counts[service], (service, [c.name for c in found])
        for c in found:
            p = c.plain
            assert (p["cpus"], p["memory"], p["memorySwap"]) == (cpus, memory, memory), c.name


def test_kubernetes_limits_and_replicas_follow_the_config() -> None:
    d = kubernetes_staging()
    replicas = {"api": 3, "worker": 2, "web": 2, "edge": 3}
    cluster = k8s_cluster(d)
    for name, (_cpus, quantity, memory) in LIMITS.items():
        # PostgreSQL's pods are the operator's: each instance gets the Cluster's resources.
        resources = cluster["resources"] if name == "postgres" else k8s_container(d, name)["resources"]
        expected = {"cpu": quantity, "memory": f"{memory}Mi"}
        assert resources == {"requests": expected, "limits": expected}, name
    for name, count in replicas.items():
        assert k8s_workload(d, name)["spec"]["replicas"] == count, name
    # database.instances and database.synchronousReplicas: a commit waits for two of three standbys.
    assert cluster["instances"] == 4
    assert cluster["postgresql"]["synchronous"] == {"method": "any", "number": 2}
    # A workload with more than one pod is spread and keeps one through disruptions; the
    # operator keeps the Cluster's own PDB and anti-affinity when asked to.
    pdbs = {p.name for p in d.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    assert pdbs == {"api", "worker", "web", "edge"}
    assert cluster["enablePDB"] is True
    assert cluster["affinity"] == {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"}


def test_asynchronous_replication_declares_no_synchronous_standbys() -> None:
    cluster = k8s_cluster(run_program("staging", overrides={"database.instances": 2}))
    assert cluster["instances"] == 2 and "synchronous" not in cluster["postgresql"]
    prod = k8s_cluster(run_program("prod"))  # Pulumi.prod.yaml: 3 instances, 1 synchronous
    assert prod["instances"] == 3 and prod["postgresql"]["synchronous"] == {"method": "any", "number": 1}


def test_the_migration_job_gets_the_api_limits() -> None:
    cpus, quantity, memory = LIMITS["api"]
    job = job_container(docker_dev(), "api-migrate").plain
    assert (job["cpus"], job["memory"]) == (cpus, memory)
    assert k8s_container(kubernetes_staging(), "api-migrate")["resources"]["limits"] == {
        "cpu": quantity,
        "memory": f"{memory}Mi",
    }


def test_storage_sizes_and_class_reach_the_claims() -> None:
    d = kubernetes_staging()
    claims = {c.name: c.plain["spec"] for c in d.of_type(PVC)}
    # PostgreSQL's claims are the operator's, one per instance, from the Cluster's storage.
    assert {name: spec["resources"]["requests"]["storage"] for name, spec in claims.items()} == {
        "redis-data": "3Gi",
        "minio-data": "29Gi",
    }
    assert {spec["storageClassName"] for spec in claims.values()} == {"fast-ssd"}
    assert k8s_cluster(d)["storage"] == {"size": "13Gi", "storageClass": "fast-ssd"}
    reason = reveal(d.outputs)["checklist"]["storage.volumesDeclared"]["reason"]
    # The reason's wording is free; each volume's size must appear next to its service.
    for service, size in (("postgres", "13"), ("redis", "3"), ("minio", "29")):
        assert re.search(rf"\b{service}\b[^;,]*?\b{size} ?G", reason), (service, reason)


def test_default_storage_class_is_left_to_the_cluster() -> None:
    d = run_program("staging")
    claims = d.of_type(PVC)
    assert claims and all(not c.plain["spec"].get("storageClassName") for c in claims)
    assert k8s_cluster(d)["storage"] == {"size": "10Gi"}  # database.storageGb's default


# ------------------------------------------------------------------------ kubernetes namespace


def test_own_namespace_holds_every_object_and_every_address() -> None:
    d = kubernetes_staging()
    namespace = d.of_type("kubernetes:core/v1:Namespace")[0].plain
    assert namespace["metadata"]["name"] == "team-a9"
    for reg in d.registrations:
        if reg.type.startswith("kubernetes:") and reg.type != "kubernetes:core/v1:Namespace" and reg.custom:
            meta = reg.plain.get("metadata")
            if meta is not None:
                assert meta["namespace"] == "team-a9", (reg.type, reg.name)
    env = k8s_env(d, "api")
    # The Cluster's read-write Service: always the primary, whichever instance that is.
    assert "@postgres-rw.team-a9.svc:5432/aixsss?" in env["DATABASE_URL"]
    store = k8s_custom(d, "ObjectStore", "postgres-backups")["spec"]["configuration"]
    assert store["endpointURL"] == "https://minio.team-a9.svc:9000"
    # The app reaches Redis through its tunnel, which resolves and verifies the namespace's name.
    assert env["REDIS_URL"].endswith("@127.0.0.1:6379")
    files = d.named("api-redis-tls-files", "kubernetes:core/v1:ConfigMap").plain["data"]
    tunnel = files["etc_aixsss_redis-tls.conf"].splitlines()
    assert "    server redis.team-a9.svc.cluster.local:6379 resolve;" in tunnel
    assert "    proxy_ssl_name redis.team-a9.svc;" in tunnel
    assert env["S3_ENDPOINT"] == "https://minio.team-a9.svc:9000"
    conf = k8s_file(d, "edge", "/etc/aixsss/nginx.conf")
    assert "    server api.team-a9.svc.cluster.local:3001 resolve max_fails=1 fail_timeout=10s;" in conf.splitlines()
    assert "    server web.team-a9.svc.cluster.local:8080 resolve max_fails=1 fail_timeout=10s;" in conf.splitlines()
    provider = d.of_type("pulumi:providers:kubernetes")[0].plain
    assert provider["namespace"] == "team-a9"


def test_the_clusters_pods_carry_the_labels_its_network_policies_select() -> None:
    """The operator labels each instance's pod with the Cluster's inheritedMetadata: without the
    service's name there, every NetworkPolicy for postgres (its clients', its own) selects none."""
    d = kubernetes_staging()
    pod_labels = k8s_cluster(d)["inheritedMetadata"]["labels"]
    selecting = []
    for policy in d.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        spec = policy.plain["spec"]
        selectors = [spec["podSelector"]]
        for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
            peers = rule.get("from") or rule.get("to") or []
            selectors += [peer["podSelector"] for peer in peers if "podSelector" in peer]
        for selector in selectors:
            wanted = (selector or {}).get("matchLabels") or {}
            if wanted.get("app.kubernetes.io/name") == "postgres":
                assert wanted.items() <= pod_labels.items(), (policy.name, wanted)
                selecting.append(policy.name)
    assert {"postgres-from-api", "api-to-postgres", "postgres-cluster-ingress", "postgres-to-minio"} <= set(selecting)


# ------------------------------------------------------------------------ docker data ports


@pytest.mark.parametrize("publish", [True, False])
def test_data_ports_published_only_when_asked_and_only_on_loopback(publish: bool) -> None:
    d = run_program("dev", overrides={"docker.publishDataPorts": publish})
    expected = {"postgres": [5432], "redis": [6379], "minio": [9000]}
    for service, ports in expected.items():
        published = container(d, service).plain.get("ports") or []
        assert sorted(int(p["external"]) for p in published) == (ports if publish else []), service
        assert all(p["ip"] == "127.0.0.1" and p["internal"] == p["external"] for p in published), service


@pytest.mark.parametrize(("stack", "ip"), [("dev", "127.0.0.1"), ("staging", "0.0.0.0"), ("prod", "0.0.0.0")])
def test_edge_binds_loopback_in_dev_and_every_address_elsewhere(stack: str, ip: str) -> None:
    d = run_program(
        stack,
        overrides={
            "target": "docker",
            "edge.replicas": 1,
            **(
                {"database.instances": 1, "database.synchronousReplicas": 0, "cache.highAvailability": False}
                if stack == "prod"
                else {}
            ),
        },
    )
    ports = container(d, "edge").plain["ports"]
    assert sorted((p["ip"], int(p["internal"]), int(p["external"])) for p in ports) == [(ip, 8080, 80), (ip, 8443, 443)]


# ------------------------------------------------------------------------ acme


def test_acme_settings_reach_cert_manager_and_lego() -> None:
    acme = {
        "tls.acmeEmail": "pki-9@shop.example.org",
        "tls.acmeServer": "https://acme.example.net/v2/directory",
        "tls.clusterIssuer": "zerossl-prod",
        "domain": "shop.example.org",
    }
    k = run_program("prod", overrides=acme)
    cert = k.named("edge-public-certificate").plain["spec"]
    assert cert["issuerRef"] == {"kind": "ClusterIssuer", "name": "zerossl-prod"}
    assert cert["dnsNames"] == ["shop.example.org"] and cert["secretName"] == "edge-public-tls"
    pod = k8s_workload(k, "edge")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "edge-public-tls")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == "/etc/nginx/tls" and mount["readOnly"] is True
    d = run_program(
        "prod",
        overrides={
            **acme,
            "target": "docker",
            "api.replicas": 1,
            "edge.replicas": 1,
            "database.instances": 1,
            "database.synchronousReplicas": 0,
            "cache.highAvailability": False,
        },
    )
    script = " ".join(container(d, "edge-acme-client").plain["entrypoints"])
    for part in (
        "--email pki-9@shop.example.org",
        "--server https://acme.example.net/v2/directory",
        "--domains shop.example.org",
    ):
        assert part in script


# ------------------------------------------------------------------------ images

IMAGES = {
    "images.postgres": "registry.example.net/pg:16.4-odd",
    "images.redis": "registry.example.net/redis:7.2.9-odd",
    "images.minio": "registry.example.net/silo:2025.1-odd",
    "images.minioClient": "registry.example.net/mc:2025.2-odd",
    "images.api": "registry.example.net/api:9.9.1",
    "images.worker": "registry.example.net/worker:9.9.2",
    "images.web": "registry.example.net/web:9.9.3",
    "images.edge": "registry.example.net/nginx:1.29-odd",
    "images.acmeClient": "registry.example.net/lego:4.99",
    "images.postgresCluster": "registry.example.net/cnpg-pg:16.10-odd",
    "images.postgresExporter": "registry.example.net/pg-exporter:0.99-odd",
    "images.pgbackrestExporter": "registry.example.net/pgbr-exporter:0.99-odd",
    "images.redisExporter": "registry.example.net/redis-exporter:1.99-odd",
    "images.nginxExporter": "registry.example.net/nginx-exporter:1.99-odd",
    "images.mtail": "registry.example.net/mtail:3.99-odd",
}
# Docker only (refused elsewhere): PostgreSQL plus pgBackRest, given instead of built.
DOCKER_IMAGES = {"images.postgresPgbackrest": "registry.example.net/pg-pgbackrest:16.4-odd"}
# Which workload runs which image key.
RUNS = {
    "postgres": "images.postgres",
    "redis": "images.redis",
    "minio": "images.minio",
    "minio-bootstrap": "images.minioClient",
    "api": "images.api",
    "api-migrate": "images.api",
    "worker": "images.worker",
    "web": "images.web",
    "edge": "images.edge",
}


def exporter_images(runs: dict[str, str]) -> set[str]:
    """The exporters' pulls: the container of that name, and its config carrier, run it."""
    return {f"{name}-image" for name in runs if name.endswith(("-exporter", "-mtail"))}


def test_each_workload_runs_its_configured_image() -> None:
    k = run_program("staging", overrides={**IMAGES, "app.source": ""})
    for name, key in RUNS.items():
        if name != "postgres":
            assert k8s_container(k, name)["image"] == IMAGES[key], name
    # Kubernetes: the operator runs PostgreSQL from its own image (images.postgres is Docker's).
    assert k8s_cluster(k)["imageName"] == IMAGES["images.postgresCluster"]
    d = run_program(
        "prod",
        overrides={
            **IMAGES,
            **DOCKER_IMAGES,
            "app.source": "",
            "target": "docker",
            "api.replicas": 1,
            "edge.replicas": 1,
            "database.instances": 1,
            "database.synchronousReplicas": 0,
            "cache.highAvailability": False,
        },
    )
    pulled = {r.name: r.plain["name"] for r in d.of_type("docker:index/remoteImage:RemoteImage")}
    # api and worker each run the Redis tunnel, on the edge's image.
    runs = {
        **RUNS,
        # With backups (the default), PostgreSQL with pgBackRest: images.postgres is its base.
        "postgres": "images.postgresPgbackrest",
        "acme-client": "images.acmeClient",
        "api-redis-tls": "images.edge",
        "worker-redis-tls": "images.edge",
        # The exporters in their services' namespaces.
        "postgres-pg-exporter": "images.postgresExporter",
        "postgres-backup-exporter": "images.pgbackrestExporter",
        "redis-exporter": "images.redisExporter",
        "edge-nginx-exporter": "images.nginxExporter",
        "edge-mtail": "images.mtail",
    }
    for name, key in runs.items():
        assert pulled[f"{name}-image"] == {**IMAGES, **DOCKER_IMAGES}[key], name
    # Each container runs the image pulled for its service (each pull has its own id).
    image_ids = {r.name: reveal(r.outputs["imageId"]) for r in d.of_type("docker:index/remoteImage:RemoteImage")}
    for c in d.of_type(CONTAINER):
        if c.name.endswith("volume-owner"):
            continue
        service = next(label["value"] for label in c.plain["labels"] if label["label"] == "aixsss.service")
        pulled_for = "acme-client" if service == "edge-acme-client" else service
        if "-redis-tls" in c.name:
            pulled_for = f"{service}-redis-tls"
        elif re.fullmatch(rf"{service}(-\d+)?-front", c.name):
            pulled_for = f"{service}-redis-tls"  # the front runs the tunnel's image (the edge's nginx)
        elif f"{c.name.removesuffix('-config')}-image" in exporter_images(runs):
            pulled_for = c.name.removesuffix("-config")
        assert c.plain["image"] == image_ids[f"{pulled_for}-image"], c.name
    images = reveal(d.outputs)["images"]
    assert {name: images[name] for name in RUNS} == {name: {**IMAGES, **DOCKER_IMAGES}[runs[name]] for name in RUNS}


# --------------------------------------------------------------------------- an external object store

EXTERNAL_S3 = {"objectStore.mode": "external", "objectStore.endpoint": "https://s3.eu.example.net"}
APP_S3_KEYS = {"secrets.minioAppAccessKey": "AKIAEXTERNAL0001", "secrets.minioAppSecretKey": "s" * 40}
# PostgreSQL archives there too (Barman Cloud; pgBackRest on Docker), with the backups' own user.
BACKUP_S3_KEYS = {"secrets.backupAccessKey": "AKIABACKUPS00002", "secrets.backupSecretKey": "b" * 40}


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_an_external_object_store_replaces_the_bundled_one(target: str) -> None:
    keys = {**APP_S3_KEYS, **BACKUP_S3_KEYS}
    d = run_program("staging", overrides={**EXTERNAL_S3, "target": target}, secret_config=keys)
    outputs = reveal(d.outputs)
    # No store, no bootstrap job, no certificate or root credentials for one.
    assert not [r.name for r in d.registrations if "minio" in r.name], target
    assert "minio" not in outputs["services"] and "minio-bootstrap" not in outputs["services"]
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}.isdisjoint(outputs["secretInventory"])
    assert outputs["objectStore"] == {
        "mode": "external",
        "endpoint": "https://s3.eu.example.net",
        "bucket": "aixsss",
        "usedByApp": False,
    }
    env = docker_env(container(d, "api")) if target == "docker" else k8s_env(d, "api")
    assert env["S3_ENDPOINT"] == "https://s3.eu.example.net" and env["S3_ACCESS_KEY_ID"] == "AKIAEXTERNAL0001"
    # Reached over HTTPS through the egress zone: no flow to a stack service named minio.
    assert outputs["services"]["api"]["talksTo"] == ["postgres", "redis"]
    assert outputs["services"]["worker"]["talksTo"] == ["postgres", "redis"]
    item = outputs["checklist"]["security.minioHttps"]
    assert item == {
        "ok": True,
        "reason": "external S3 endpoint https://s3.eu.example.net (objectStore.mode external), HTTPS",
    }
    if target == "kubernetes":
        # The backups go to the external service too: its public certificate, the backups' keys.
        store = k8s_custom(d, "ObjectStore", "postgres-backups")["spec"]["configuration"]
        assert store["endpointURL"] == "https://s3.eu.example.net" and "endpointCA" not in store
        assert store["destinationPath"] == "s3://aixsss-backups/"
        keys_secret = d.named("postgres-backup-s3", "kubernetes:core/v1:Secret").plain["stringData"]
        assert keys_secret == {"ACCESS_KEY_ID": "AKIABACKUPS00002", "ACCESS_SECRET_KEY": "b" * 40}
        assert not [r for r in d.registrations if r.name == "postgres-backup-ca"]
    else:
        # pgBackRest: the endpoint's host on 443, the public trust store, the supplied keys.
        postgres = container(d, "postgres")
        conf = delivered(d, postgres)["/etc/aixsss/pgbackrest.conf"]["content"].splitlines()
        assert "repo1-s3-endpoint=s3.eu.example.net" in conf and "repo1-storage-port=9000" not in conf
        assert "repo1-storage-ca-file=/etc/ssl/certs/ca-certificates.crt" in conf
        env = docker_env(postgres)
        assert (
            env["PGBACKREST_REPO1_S3_KEY"] == "AKIABACKUPS00002" and env["PGBACKREST_REPO1_S3_KEY_SECRET"] == "b" * 40
        )


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_an_external_store_without_the_backups_keys_is_refused(target: str) -> None:
    from components.config.loading import StackConfigError

    with pytest.raises(StackConfigError) as refused:
        run_program("staging", overrides={**EXTERNAL_S3, "target": target}, secret_config=APP_S3_KEYS)
    assert "aixsss:secrets.backupAccessKey" in str(refused.value)
    assert "aixsss:secrets.backupSecretKey" in str(refused.value)


# --------------------------------------------------------------------------- PostgreSQL backups (Kubernetes)


def test_backup_settings_reach_the_object_store_the_schedule_and_the_archiver() -> None:
    d = kubernetes_staging()
    store = k8s_custom(d, "ObjectStore", "postgres-backups")["spec"]
    assert store["retentionPolicy"] == "9d"
    assert store["configuration"]["destinationPath"] == "s3://bk-3z/"
    assert store["configuration"]["endpointCA"] == {"name": "postgres-backup-ca", "key": "ca.crt"}
    assert store["configuration"]["s3Credentials"] == {
        "accessKeyId": {"name": "postgres-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "postgres-backup-s3", "key": "ACCESS_SECRET_KEY"},
    }
    # The backups' own keys, not the application's.
    keys = d.named("postgres-backup-s3", "kubernetes:core/v1:Secret").plain["stringData"]
    app = k8s_env(d, "api")
    assert keys["ACCESS_KEY_ID"] != app["S3_ACCESS_KEY_ID"] and keys["ACCESS_SECRET_KEY"] != app["S3_SECRET_ACCESS_KEY"]
    schedule = k8s_custom(d, "ScheduledBackup", "postgres-daily")["spec"]
    assert schedule["schedule"] == "0 0 5 * * *"  # seconds first: 05:00:00 UTC
    assert schedule["cluster"] == {"name": "postgres"}
    assert schedule["method"] == "plugin" and schedule["pluginConfiguration"] == {
        "name": "barman-cloud.cloudnative-pg.io"
    }
    cluster = k8s_cluster(d)
    assert cluster["plugins"] == [
        {
            "name": "barman-cloud.cloudnative-pg.io",
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": "postgres-backups", "serverName": "pg-main-4"},
        }
    ]
    # A new cluster: an empty database, not a recovery.
    assert cluster["bootstrap"] == {
        "initdb": {"database": "aixsss", "owner": "aixsss", "secret": {"name": "postgres-app"}}
    }
    assert "externalClusters" not in cluster


RESTORE = {**KUBERNETES_ODD, "backup.restoreFrom": "pg-old-7", "backup.restoreTargetTime": "2026-11-29T08:15:00Z"}


def test_a_restore_recovers_from_the_named_backups_up_to_the_target_time() -> None:
    cluster = k8s_cluster(run_program("staging", overrides=RESTORE))
    assert cluster["bootstrap"] == {
        "recovery": {
            "source": "origin",
            "database": "aixsss",
            "owner": "aixsss",
            "secret": {"name": "postgres-app"},
            "recoveryTarget": {"targetTime": "2026-11-29T08:15:00Z"},
        }
    }
    assert cluster["externalClusters"] == [
        {
            "name": "origin",
            "plugin": {
                "name": "barman-cloud.cloudnative-pg.io",
                "parameters": {"barmanObjectName": "postgres-backups", "serverName": "pg-old-7"},
            },
        }
    ]
    # The restored cluster archives into its own folder, never into the one it restores from.
    assert [p["parameters"]["serverName"] for p in cluster["plugins"]] == ["pg-main-4"]
    latest = k8s_cluster(run_program("staging", overrides={**RESTORE, "backup.restoreTargetTime": ""}))
    assert latest["bootstrap"]["recovery"] == {
        "source": "origin",
        "database": "aixsss",
        "owner": "aixsss",
        "secret": {"name": "postgres-app"},
    }
    assert latest["externalClusters"] == cluster["externalClusters"]


def test_backups_disabled_declare_no_store_schedule_or_archiver() -> None:
    d = run_program("staging", overrides={"backup.enabled": False})
    kinds = {r.plain.get("kind") for r in d.registrations if r.custom}
    assert {"ObjectStore", "ScheduledBackup"}.isdisjoint(kinds) and "Cluster" in kinds
    assert "plugins" not in k8s_cluster(d)
    assert not [r.name for r in d.registrations if r.name.startswith("postgres-backup")]
