"""The stand-in images on a real daemon: each keeps the contract of the image it replaces.

Every container runs as the program runs it: read-only root, all capabilities dropped,
no-new-privileges, a non-root user, tmpfs at /tmp, configuration on a read-only volume at
/etc/aixsss. Configuration files are the program's own renderings where it has them.

AIXSSS_TEST_DOCKER_HOST names the daemon (unset: skipped, or failed under CI);
The image cache is the tier's (conftest.py image_cache).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import docker
import pytest
from docker.models.containers import Container
from docker.models.networks import Network
from throwaway_pki import issue

from components.api import HEALTH_COMMAND as API_HEALTH
from components.conf import postgres as pgconf
from components.conf import redis as redisconf
from components.conf import tls_tunnel, web_server
from components.object_store import bootstrap_script, bucket_policy
from components.worker import HEALTH_COMMAND as WORKER_HEALTH
from tests.realdocker.images import RECIPES, ensure_images, recipe_key

HOST_ENV = "AIXSSS_TEST_DOCKER_HOST"
IMAGES = {
    "postgres": "postgres:16",
    "redis": "redis:7",
    "edge": "nginxinc/nginx-unprivileged:1.29",
    "minio": "pgsty/silo:RELEASE.2026-09-16T00-00-00Z",
    "mc": "pgsty/mc:RELEASE.2026-09-16T00-00-00Z",
    "lego": "goacme/lego:v4.26.0",
    "api": "ghcr.io/aixsss/api:1.4.0",
    "worker": "ghcr.io/aixsss/worker:1.4.0",
    "web": "ghcr.io/aixsss/web:1.4.0",
}
# The other tags the stacks use, and one a test may use to force a replacement.
EXTRA_REFERENCES = [
    "postgres:16.10",
    "redis:7.4.5",
    "ghcr.io/aixsss/api:1.4.1",
]
CA_PATH = "/etc/aixsss/tls/ca.crt"
SERVER_NAMES = ["postgres", "redis", "minio", "localhost"]


def test_unknown_repository_is_named() -> None:
    with pytest.raises(ValueError, match=r"nosuch/image.*quay\.io/minio/minio"):
        ensure_images("unix:///nonexistent", ["redis:7", "nosuch/image:1", "quay.io/minio/minio:x"], Path("/nowhere"))


@pytest.fixture(scope="module")
def docker_host() -> str:
    host = os.environ.get(HOST_ENV)
    if not host:
        if os.environ.get("CI"):
            pytest.fail(f"{HOST_ENV} must name a Docker daemon under CI")
        pytest.skip(f"{HOST_ENV} is not set")
    return host


@pytest.fixture(scope="module")
def client(docker_host: str, image_cache: Path) -> Iterator[docker.DockerClient]:
    ensure_images(docker_host, [*IMAGES.values(), *EXTRA_REFERENCES], image_cache)
    c = docker.DockerClient(base_url=docker_host)
    try:
        yield c
    finally:
        c.close()


# --- TLS material -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    cert_pem: str
    key_pem: str


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A throwaway CA and one server certificate for every service name."""
    ca = issue("standin test CA")
    server = issue("standin server", ca=ca, names=(*SERVER_NAMES, "127.0.0.1"), server_auth=True)
    return Pki(ca.cert_pem, server.cert_pem, server.key_pem)


# --- containers as the program runs them ------------------------------------------------------


@dataclass(frozen=True)
class File:
    content: str
    mode: int = 0o444
    owner: int = 0


class Lab:
    """Containers, volumes and one network of a test, all named standin-<id>-..., all removed."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.prefix = f"standin-{secrets.token_hex(4)}"
        self.network: Network = client.networks.create(f"{self.prefix}-net", driver="bridge")
        self.containers: list[Container] = []
        self.volumes: list[str] = []

    def volume(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        self.client.volumes.create(full)
        self.volumes.append(full)
        return full

    def config(self, name: str, files: dict[str, File], image: str) -> str:
        """A volume holding ``files`` (paths under /etc/aixsss) with their modes and owners."""
        volume = self.volume(f"{name}-conf")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path, f in files.items():
                data = f.content.encode()
                info = tarfile.TarInfo(path.removeprefix("/etc/aixsss/"))
                info.size, info.mode = len(data), f.mode
                tar.addfile(info, io.BytesIO(data))
        # The archive API writes as root; a root helper (as the program's volume-owner job)
        # hands each file to its owner.
        chown = " ".join(f"chown {f.owner}:{f.owner} {p};" for p, f in files.items() if f.owner)
        helper = self.client.containers.create(
            image,
            entrypoint=["/bin/sh", "-c", chown or "true"],
            user="0:0",
            network_mode="none",
            cap_drop=["ALL"],
            cap_add=["CHOWN", "FOWNER"],
            volumes={volume: {"bind": "/etc/aixsss", "mode": "rw"}},
        )
        try:
            helper.put_archive("/etc/aixsss", buffer.getvalue())
            helper.start()
            assert helper.wait(timeout=60)["StatusCode"] == 0
        finally:
            helper.remove(force=True)
        return volume

    def start(
        self,
        name: str,
        image: str,
        *,
        user: str,
        command: list[str] | None = None,
        entrypoint: list[str] | None = None,
        environment: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
        tmpfs: tuple[str, ...] = ("/tmp",),
        namespace_of: Container | None = None,
    ) -> Container:
        """A hardened container on the lab's network, reachable by ``name``; or, with
        ``namespace_of``, in that container's network namespace (as the program runs api and
        worker in their Redis tunnel's)."""
        binds = {v: {"bind": p, "mode": "ro" if p == "/etc/aixsss" else "rw"} for v, p in (volumes or {}).items()}
        container = self.client.containers.create(
            image,
            command=command,
            entrypoint=entrypoint,
            name=f"{self.prefix}-{name}",
            # A joined namespace brings its owner's hostname (the daemon refuses another).
            hostname=None if namespace_of else name,
            user=user,
            environment=environment or {},
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            tmpfs={p: "rw,noexec,nosuid,size=64m" for p in tmpfs},
            volumes=binds,
            network=None if namespace_of else self.network.name,
            network_mode=f"container:{namespace_of.id}" if namespace_of else None,
        )
        self.containers.append(container)
        if not namespace_of:
            # Aliased by its short name, as the program's networks alias each service.
            self.network.disconnect(container)
            self.network.connect(container, aliases=[name])
        container.start()
        return container

    def run(self, name: str, image: str, **kwargs: object) -> tuple[int, str]:
        """Run a hardened one-shot container to completion: (exit code, output)."""
        container = self.start(f"{name}-{secrets.token_hex(2)}", image, **kwargs)  # type: ignore[arg-type]
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode(errors="replace")

    def close(self) -> None:
        for c in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        for v in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(v).remove(force=True)
        self.network.remove()


def exec_ok(container: Container, command: list[str], **kwargs: object) -> str:
    code, output = container.exec_run(command, **kwargs)  # type: ignore[arg-type]
    text = output.decode(errors="replace")
    assert code == 0, f"{command} exited {code}: {text}"
    return text


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready within {timeout}s")


def exec_succeeds(container: Container, command: list[str], **kwargs: object) -> bool:
    container.reload()
    assert container.status == "running", container.logs().decode(errors="replace")[-3000:]
    return container.exec_run(command, **kwargs)[0] == 0  # type: ignore[arg-type]


@pytest.fixture
def lab(client: docker.DockerClient) -> Iterator[Lab]:
    lab = Lab(client)
    try:
        yield lab
    finally:
        lab.close()


# --- the services -----------------------------------------------------------------------------

DB_PASSWORD = "db pass/with:reserved@chars"
REDIS_PASSWORD = secrets.token_urlsafe(24)


def tls_files(pki: Pki, owner: int) -> dict[str, File]:
    return {
        "/etc/aixsss/tls/server.crt": File(pki.cert_pem),
        "/etc/aixsss/tls/server.key": File(pki.key_pem, 0o600, owner),
        CA_PATH: File(pki.ca_pem),
    }


# The clients' role in generation 0 of secrets.rotation (components/database.py).
LOGIN_ROLE = pgconf.login_role("aixsss", 0)


def start_postgres(lab: Lab, pki: Pki) -> Container:
    settings = pgconf.PostgresSettings(
        cert_path="/etc/aixsss/tls/server.crt",
        key_path="/etc/aixsss/tls/server.key",
        hba_path="/etc/aixsss/pg_hba.conf",
        max_connections=40,
        shared_buffers_mb=32,
    )
    files = {
        "/etc/aixsss/postgresql.conf": File(pgconf.render_conf(settings)),
        "/etc/aixsss/pg_hba.conf": File(pgconf.render_hba(settings)),
        "/etc/aixsss/pg_ident.conf": File(pgconf.render_ident(settings)),
        "/etc/aixsss/credentials.sql": File(pgconf.grant_login_sql("aixsss", LOGIN_ROLE)),
        **tls_files(pki, 999),
    }
    conf = lab.config("postgres", files, IMAGES["postgres"])
    data = lab.volume("postgres-data")
    db = lab.start(
        "postgres",
        IMAGES["postgres"],
        user="999:999",
        command=["postgres", "-c", "config_file=/etc/aixsss/postgresql.conf"],
        environment={
            "POSTGRES_DB": "aixsss",
            "POSTGRES_USER": "postgres",  # the bootstrap superuser (components/database.py)
            "POSTGRES_PASSWORD": DB_PASSWORD,
            "PGDATA": "/var/lib/postgresql/data/pgdata",
            "POSTGRES_INITDB_ARGS": "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
        },
        volumes={conf: "/etc/aixsss", data: "/var/lib/postgresql/data"},
        tmpfs=("/tmp", "/var/run/postgresql"),
    )
    # pg_isready answers during initdb's socket-only server too; the TCP listener is the sign
    # that the real server runs.
    wait_for(lambda: "init process complete" in db.logs().decode() and listening(db, 5432), "postgres")
    # The credentials job's script, as its container runs it: through the socket, as the superuser
    # by peer authentication (uid 999 is the image's postgres user), with the verifier in its env.
    verifier = pgconf.scram_verifier(DB_PASSWORD, secrets.token_bytes(16))
    exec_ok(db, ["psql", "--no-psqlrc", "-h", "/var/run/postgresql", "-U", "postgres", "-d", "aixsss",
                 "-f", "/etc/aixsss/credentials.sql"], environment={pgconf.LOGIN_VERIFIER_ENV: verifier})  # fmt: skip
    return db


def listening(container: Container, port: int) -> bool:
    """Whether something in ``container`` listens on TCP ``port`` (read from /proc, no tools)."""
    container.reload()
    assert container.status == "running", container.logs().decode(errors="replace")[-3000:]
    code, out = container.exec_run(["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true"])
    return code == 0 and re.search(rf":{port:04X} [0-9A-F:]+ 0A ", out.decode()) is not None


def database_url(password: str = DB_PASSWORD) -> str:
    return (
        f"postgresql://{LOGIN_ROLE}:{quote(password, safe='')}@postgres:5432/aixsss"
        f"?sslmode=require&sslaccept=strict&sslcert={CA_PATH}&connection_limit=5"
    )


def start_redis(lab: Lab, pki: Pki) -> Container:
    settings = redisconf.RedisSettings(
        passwords=(REDIS_PASSWORD,),
        maxmemory_mb=64,
        cert_path="/etc/aixsss/tls/server.crt",
        key_path="/etc/aixsss/tls/server.key",
        ca_path=CA_PATH,
    )
    files = {"/etc/aixsss/redis.conf": File(redisconf.render(settings), 0o600, 999), **tls_files(pki, 999)}
    conf = lab.config("redis", files, IMAGES["redis"])
    cache = lab.start(
        "redis",
        IMAGES["redis"],
        user="999:999",
        command=["redis-server", "/etc/aixsss/redis.conf"],
        environment={"REDISCLI_AUTH": REDIS_PASSWORD},
        volumes={conf: "/etc/aixsss", lab.volume("redis-data"): "/data"},
    )
    wait_for(lambda: listening(cache, 6379), "redis")
    return cache


# The tunnel sidecar's healthcheck as components/cache.py declares it: Redis's -NOAUTH through it.
TUNNEL_PROBE = [
    "bash",
    "-c",
    "exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\\r\\n' >&3 && "
    "IFS= read -r -t 3 reply <&3 && [[ $reply == -NOAUTH* ]]",
]


def start_tunnel(lab: Lab, pki: Pki, name: str) -> Container:
    """The program's Redis TLS tunnel (components/conf/tls_tunnel.py) in the edge's image, run as
    the program runs it: `nginx -c` with a `stream {}` config and no load_module line."""
    settings = tls_tunnel.TunnelSettings(
        listen_port=6379, server_host="redis", server_port=6379, server_name="redis", ca_path=CA_PATH
    )
    files = {"/etc/aixsss/redis-tls.conf": File(tls_tunnel.render(settings)), CA_PATH: File(pki.ca_pem)}
    conf = lab.config(name, files, IMAGES["edge"])
    tunnel = lab.start(name, IMAGES["edge"], user="101:101", volumes={conf: "/etc/aixsss"},
                       entrypoint=["nginx", "-c", "/etc/aixsss/redis-tls.conf", "-g", "daemon off;"])  # fmt: skip
    wait_for(lambda: exec_succeeds(tunnel, TUNNEL_PROBE), name)
    return tunnel


def app_env(lab: Lab, pki: Pki) -> tuple[str, dict[str, str]]:
    conf = lab.config("app", {CA_PATH: File(pki.ca_pem)}, IMAGES["api"])
    env = {
        "NODE_ENV": "development",
        "DATABASE_URL": database_url(),
        # What the program gives api and worker: plain text to their tunnel on loopback.
        "REDIS_URL": f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379",
        "AI_QUEUE_NAME": "ai-jobs",
        "API_KEY_ENCRYPTION_KEY": secrets.token_hex(32),
        "NODE_EXTRA_CA_CERTS": CA_PATH,
        "WORKER_CONCURRENCY": "2",
    }
    return conf, env


# --- the tests --------------------------------------------------------------------------------


def test_every_reference_is_its_recipes_image(client: docker.DockerClient) -> None:
    for ref in [*IMAGES.values(), *EXTRA_REFERENCES]:
        repo = ref.rsplit(":", 1)[0]
        assert RECIPES[repo]
        assert client.images.get(ref).labels["org.aixsss.standin.key"] == recipe_key(repo)
    assert client.images.get("ghcr.io/aixsss/api:1.4.1").id == client.images.get(IMAGES["api"]).id


def test_postgres_first_start_creates_role_and_database_and_checks_passwords(lab: Lab, pki: Pki) -> None:
    db = start_postgres(lab, pki)
    exec_ok(db, ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "aixsss", "-d", "aixsss"])  # the program's probe
    conf = lab.config("psql", {CA_PATH: File(pki.ca_pem)}, IMAGES["postgres"])

    def psql(password: str, sslmode: str = "verify-full", user: str = LOGIN_ROLE) -> tuple[int, str]:
        dsn = f"host=postgres dbname=aixsss user={user} sslmode={sslmode} sslrootcert={CA_PATH}"
        return lab.run(
            "psql",
            IMAGES["postgres"],
            user="999:999",
            # Acting as the owner, then (SET ROLE NONE) as the login role, whose row of pg_stat_ssl
            # the owner, no superuser since issue 12, may not read.
            entrypoint=["psql", dsn, "-qtA", "-c", "select current_user || ' ' || current_database() || ' ' || rolsuper"
                        " from pg_roles where rolname = current_user", "-c", "set role none",
                        "-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"],
            environment={"PGPASSWORD": password},
            volumes={conf: "/etc/aixsss"},
        )  # fmt: skip

    code, out = psql(DB_PASSWORD)
    # The login role's sessions act as the owner, which is no superuser (issue 12), over TLS.
    assert code == 0 and "aixsss aixsss false\nt" in out, out
    # Neither the owner nor the superuser logs in over the network, whatever the password (the
    # superuser's bootstrap one, DB_PASSWORD here, is gone too).
    for user in ("aixsss", "postgres"):
        code, out = psql(DB_PASSWORD, user=user)
        assert code != 0 and "rejects connection" in out, out
    code, out = psql("wrong")
    assert code != 0 and "password authentication failed" in out, out
    code, out = psql(DB_PASSWORD, sslmode="disable")
    assert code != 0 and "rejects connection" in out, out


def test_redis_tls_ping_and_password(lab: Lab, pki: Pki) -> None:
    cache = start_redis(lab, pki)
    probe = f"redis-cli --tls --cacert {CA_PATH} -h 127.0.0.1 -p 6379 ping | grep -q PONG"
    exec_ok(cache, ["sh", "-c", probe])  # the program's probe, REDISCLI_AUTH from the environment
    wrong = cache.exec_run(["redis-cli", "--tls", "--cacert", CA_PATH, "-h", "redis", "--pass", "wrong", "ping"])
    assert "PONG" not in wrong.output.decode() and "WRONGPASS" in wrong.output.decode()
    plain = cache.exec_run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"])
    assert "PONG" not in plain.output.decode()
    assert exec_ok(cache, ["id", "-u"]).strip() == "999"


def test_s3_standin_bootstrap_and_bucket_scoped_user(lab: Lab, pki: Pki) -> None:
    root, root_secret = "rootuser", secrets.token_urlsafe(24)
    app, app_secret = "appuser", secrets.token_urlsafe(24)
    bucket = "aixsss"
    certs = {
        "/etc/aixsss/minio-certs/public.crt": File(pki.cert_pem),
        "/etc/aixsss/minio-certs/CAs/ca.crt": File(pki.ca_pem),
        "/etc/aixsss/minio-certs/private.key": File(pki.key_pem, 0o600, 1000),
    }
    server = lab.start(
        "minio",
        IMAGES["minio"],
        user="1000:1000",
        command=["server", "/data", "--address", ":9000", "--console-address", ":9001", "--certs-dir",
                 "/etc/aixsss/minio-certs"],
        environment={"MINIO_ROOT_USER": root, "MINIO_ROOT_PASSWORD": root_secret,
                     "MC_HOST_local": "https://localhost:9000", "MINIO_BROWSER_REDIRECT": "off"},
        volumes={lab.config("minio", certs, IMAGES["minio"]): "/etc/aixsss", lab.volume("minio-data"): "/data"},
    )  # fmt: skip
    wait_for(lambda: exec_succeeds(server, ["mc", "ready", "local", "--insecure"]), "minio")  # the healthcheck

    files = {
        "/etc/aixsss/bootstrap.sh": File(bootstrap_script(bucket, "https://minio:9000")),
        "/etc/aixsss/app-policy.json": File(json.dumps(bucket_policy(bucket))),
        CA_PATH: File(pki.ca_pem),
    }
    conf = lab.config("bootstrap", files, IMAGES["mc"])
    secrets_env = {"MINIO_ROOT_USER": root, "MINIO_ROOT_PASSWORD": root_secret,
                   "APP_ACCESS_KEY": app, "APP_SECRET_KEY": app_secret}  # fmt: skip

    def mc(*script: str, **env: str) -> tuple[int, str]:
        """Shell lines run in the pgsty/mc image as the program runs its bootstrap job."""
        return lab.run(
            "mc",
            IMAGES["mc"],
            user="1000:1000",
            entrypoint=["/bin/sh", "-c", " && ".join(script)],
            environment={"MC_CONFIG_DIR": "/tmp/mc", "SSL_CERT_FILE": CA_PATH, **secrets_env, **env},
            volumes={conf: "/etc/aixsss"},
        )

    # The program's bootstrap job, twice: every step must tolerate a second run.
    for _ in range(2):
        code, out = mc("/bin/sh /etc/aixsss/bootstrap.sh")
        assert code == 0, out
    as_app = f"https://{app}:{app_secret}@minio:9000"
    as_root = f"https://{root}:{root_secret}@minio:9000"
    code, out = mc("mc mb local/other", MC_HOST_local=as_root)
    assert code == 0, out
    code, out = mc(
        "echo hello > /tmp/f", f"mc cp /tmp/f app/{bucket}/dir/k", f"mc cat app/{bucket}/dir/k", f"mc ls app/{bucket}",
        MC_HOST_app=as_app,
    )  # fmt: skip
    assert code == 0 and "hello" in out and "dir/k" in out, out
    for refused in ("mc cp /etc/aixsss/bootstrap.sh app/other/k", "mc cat app/other/k", "mc mb app/third", "mc ls app"):
        code, out = mc(refused, MC_HOST_app=as_app)
        assert code != 0 and "AccessDenied" in out, (refused, out)
    code, out = mc(f"mc ls app/{bucket}", MC_HOST_app=f"https://{app}:not-the-secret@minio:9000")
    assert code != 0 and "SignatureDoesNotMatch" in out, out
    code, out = mc("mc ls bad", MC_HOST_bad=f"https://{root}:not-the-secret@minio:9000")
    assert code != 0 and "SignatureDoesNotMatch" in out, out


def test_api_migrations_health_and_worker_queue(lab: Lab, pki: Pki) -> None:
    start_postgres(lab, pki)
    start_redis(lab, pki)
    conf, env = app_env(lab, pki)
    migrate = ["prisma", "migrate", "deploy", "--schema", "/app/prisma/schema.prisma"]  # the program's job
    for expected in ("All migrations have been successfully applied", "No pending migrations"):
        code, out = lab.run("api-migrate", IMAGES["api"], user="1000:1000", command=migrate,
                            environment={"NODE_ENV": "development", "DATABASE_URL": env["DATABASE_URL"]},
                            volumes={conf: "/etc/aixsss"})  # fmt: skip
        assert code == 0 and expected in out, out
    code, out = lab.run("api-migrate", IMAGES["api"], user="1000:1000", command=migrate,
                        environment={"DATABASE_URL": database_url("wrong")}, volumes={conf: "/etc/aixsss"})  # fmt: skip
    assert code != 0 and "password authentication failed" in out, out
    code, out = lab.run("api-migrate", IMAGES["api"], user="1000:1000", command=[*migrate[:3], "--schema", "/nope"],
                        environment={"DATABASE_URL": env["DATABASE_URL"]}, volumes={conf: "/etc/aixsss"})  # fmt: skip
    assert code != 0 and "/nope" in out, out

    # api and worker each in their own tunnel's namespace, as the program runs them.
    api_tunnel = start_tunnel(lab, pki, "api")
    api = lab.start("api-app", IMAGES["api"], user="1000:1000", volumes={conf: "/etc/aixsss"}, namespace_of=api_tunnel,
                    environment={**env, "PORT": "3001", "JWT_SECRET": secrets.token_hex(32)})  # fmt: skip
    wait_for(lambda: exec_succeeds(api, API_HEALTH), "api")  # the program's healthcheck
    # stderr apart: Node 18 warns on stderr that fetch is experimental.
    body = exec_ok(api, ["node", "-e", "fetch('http://api:3001/api/health').then(r=>r.text()).then(console.log)"],
                   stderr=False)  # fmt: skip
    health = json.loads(body)
    assert health["ok"] is True and health["hostname"] == "api"  # the tunnel's hostname: one namespace

    worker_tunnel = start_tunnel(lab, pki, "worker")
    worker = lab.start("worker-app", IMAGES["worker"], user="1000:1000", environment=env,
                       volumes={conf: "/etc/aixsss"}, namespace_of=worker_tunnel)  # fmt: skip
    wait_for(lambda: exec_succeeds(worker, WORKER_HEALTH), "worker")  # the program's healthcheck
    post = "fetch('http://api:3001/api/stand-in/jobs',{method:'POST'}).then(r=>r.json()).then(j=>console.log(j.id))"
    job = exec_ok(api, ["node", "-e", post], stderr=False).strip()
    wait_for(lambda: f"job {job} completed" in worker.logs().decode(), "the job")
    # Idle, the worker closes and exits 0 on SIGTERM (through tini) at once, not after its grace.
    started = time.monotonic()
    worker.stop(timeout=60)
    assert worker.wait(timeout=30)["StatusCode"] == 0, worker.logs().decode()
    assert time.monotonic() - started < 10, worker.logs().decode()


def test_edge_nginx_version_resolve_and_default_page(lab: Lab) -> None:
    edge = lab.start("edge", IMAGES["edge"], user="101:101")
    version = exec_ok(edge, ["nginx", "-v"], stderr=True)
    major, minor, patch = map(int, re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
    assert (major, minor, patch) >= (1, 27, 3), version
    wait_for(lambda: exec_succeeds(edge, ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/"]), "edge")
    resolving = "\n".join([
        "pid /tmp/nginx.pid;", "events {}", "http {", "  resolver 127.0.0.11 valid=10s;",
        "  client_body_temp_path /tmp/c; proxy_temp_path /tmp/p; fastcgi_temp_path /tmp/f;",
        "  uwsgi_temp_path /tmp/u; scgi_temp_path /tmp/s;",
        "  upstream api { zone api 64k; server api.invalid:3001 resolve; }",
        "  server { listen 8081; location / { proxy_pass http://api; } }", "}", "",
    ])  # fmt: skip
    conf = lab.config("edge", {"/etc/aixsss/nginx.conf": File(resolving)}, IMAGES["edge"])
    code, out = lab.run("edge-test", IMAGES["edge"], user="101:101", entrypoint=["nginx", "-t", "-c",
                        "/etc/aixsss/nginx.conf"], volumes={conf: "/etc/aixsss"})  # fmt: skip
    assert code == 0 and "test is successful" in out, out
    # `stream {}` with `resolve` in an upstream, under `nginx -c` and no load_module line: the
    # program's Redis tunnel config, as the official image's statically built stream module takes it.
    settings = tls_tunnel.TunnelSettings(
        listen_port=6379,
        server_host="redis.invalid",
        server_port=6379,
        server_name="redis",
        ca_path="/etc/ssl/certs/ca-certificates.crt",
    )
    conf = lab.config("tunnel", {"/etc/aixsss/redis-tls.conf": File(tls_tunnel.render(settings))}, IMAGES["edge"])
    code, out = lab.run("tunnel-test", IMAGES["edge"], user="101:101", entrypoint=["nginx", "-t", "-c",
                        "/etc/aixsss/redis-tls.conf", "-g", "daemon off;"], volumes={conf: "/etc/aixsss"})  # fmt: skip
    assert code == 0 and "test is successful" in out, out


def test_web_serves_the_build_with_the_programs_config(lab: Lab) -> None:
    conf = lab.config("web", {"/etc/aixsss/web.conf": File(web_server.render(web_server.WebServerSettings()))},
                      IMAGES["web"])  # fmt: skip
    web = lab.start("web", IMAGES["web"], user="101:101", volumes={conf: "/etc/aixsss"},
                    command=["nginx", "-c", "/etc/aixsss/web.conf", "-g", "daemon off;"])  # fmt: skip
    probe = ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/"]  # the program's probe
    wait_for(lambda: exec_succeeds(web, probe), "web")
    index = exec_ok(web, ["curl", "-fsS", "http://127.0.0.1:8080/"])
    assert 'id="root"' in index
    assert exec_ok(web, ["curl", "-fsS", "http://127.0.0.1:8080/some/deep/link"]) == index
    asset = re.search(r'src="(/assets/[^"]+)"', index)
    assert asset, index
    headers = exec_ok(web, ["curl", "-fsS", "-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip",
                            f"http://127.0.0.1:8080{asset.group(1)}"]).lower()  # fmt: skip
    assert "content-encoding: gzip" in headers and "immutable" in headers, headers
    code = exec_ok(web, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8080/assets/x.js"])
    assert code == "404"


def test_lego_has_its_shell_tools(lab: Lab) -> None:
    code, out = lab.run("lego", IMAGES["lego"], user="65532:65532", entrypoint=["/bin/sh", "-c",
                        "for t in sh cp test sleep lego; do command -v $t; done && lego --version"],
                        environment={"HOME": "/tmp"})  # fmt: skip
    assert code == 0 and "lego version" in out, out
