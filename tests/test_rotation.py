"""secrets.rotation under the mocks (PostgreSQL on Docker; Redis on both targets, at the end):
what a rotation changes and in which order the resources run (the real servers' side:
tests/test_rotation_servers.py, tests/test_redis_rotation_servers.py).

One host: clients log in as the generation's login role (aixsss_g<N>), which a run-once
credentials job creates through the server's socket before the migrations; the roles of
earlier generations are retired only once api and worker run with the new one. The server's
container does not change with a rotation.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pytest
from harness import Deployment, Registration, carrier_of, delivered, reveal, run_program

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"


def env_of(c: Registration) -> dict[str, str]:
    return dict(e.split("=", 1) for e in reveal(c.inputs["envs"]))


def job(d: Deployment, name: str) -> Registration:
    (found,) = [c for c in d.of_type(CONTAINER) if re.fullmatch(rf"{name}-[0-9a-f]{{12}}", c.name)]
    return found


def docker(overrides: dict[str, object] | None = None, prior: Deployment | None = None) -> Deployment:
    return run_program("dev", overrides={"target": "docker", **(overrides or {})}, prior=prior)


def test_the_credentials_job_runs_between_the_server_and_its_clients_and_the_retirement_after_them() -> None:
    # From the second rotation on: before it nothing is older than the previous generation,
    # which stays while its clients drain (test_deploy_order).
    d = docker({"secrets.rotation": 2})
    postgres, grant, retire = (
        d.named("postgres", CONTAINER),
        job(d, "postgres-credentials"),
        job(d, "postgres-retire-logins"),
    )
    migrate, api, worker = job(d, "api-migrate"), d.named("api", CONTAINER), d.named("worker", CONTAINER)
    assert d.depends_on(grant, postgres) and d.depends_on(migrate, grant) and d.depends_on(api, grant)
    assert d.depends_on(retire, api) and d.depends_on(retire, worker) and d.depends_on(retire, grant)
    # Nothing waits for the retirement: it is a rotation's last step.
    assert not any(d.depends_on(c, retire) for c in d.of_type(CONTAINER) if c is not retire)
    # Through the server's socket volume (the same Volume resource), as the superuser (peer; the
    # owner cannot log in), without a network.
    (run,) = [v for v in d.of_type(VOLUME) if v.plain["name"] == "aixsss-dev-postgres-run"]
    for container in (postgres, grant, retire):
        mounts = {m["containerPath"]: m["volumeName"] for m in container.plain["volumes"]}
        assert mounts["/var/run/postgresql"] == run.plain["name"], container.name
    for container in (grant, retire):
        assert container.plain["networkMode"] == "none" and container.plain["user"] == "999:999"
        assert container.plain["entrypoints"][:1] == ["psql"] and "-U" in container.plain["entrypoints"]
        assert container.plain["entrypoints"][container.plain["entrypoints"].index("-U") + 1] == "postgres"


def test_without_backups_a_rotation_keeps_the_server_container() -> None:
    before = docker({"backup.enabled": False})
    after = docker({"backup.enabled": False, "secrets.rotation": 1}, prior=before)
    # The same object: of the stack's passwords, only the bootstrap one is in its env.
    assert reveal(before.named("postgres", CONTAINER).inputs) == reveal(after.named("postgres", CONTAINER).inputs)


def test_with_backups_a_rotation_changes_only_the_servers_backup_keys() -> None:
    """pgBackRest reads the repository's S3 keys from the environment only (or its config file),
    and archive-push runs in the server's container: rotating them replaces that container, a
    restart of PostgreSQL (README: Secrets and rotation)."""
    before = docker()
    after = docker({"secrets.rotation": 1}, prior=before)
    env = [env_of(d.named("postgres", CONTAINER)) for d in (before, after)]
    assert {k for k in env[0] if env[0][k] != env[1].get(k)} == {
        "PGBACKREST_REPO1_S3_KEY",
        "PGBACKREST_REPO1_S3_KEY_SECRET",
    }


def test_a_rotation_gives_the_clients_a_new_login_role_and_reruns_the_jobs() -> None:
    before = docker({"secrets.rotation": 2})
    after = docker({"secrets.rotation": 3}, prior=before)
    urls = [urlsplit(env_of(d.named("api", CONTAINER))["DATABASE_URL"]) for d in (before, after)]
    assert [u.username for u in urls] == ["aixsss_g2", "aixsss_g3"] and urls[0].password != urls[1].password
    # Each job is a new release for the new generation, so each runs again.
    for name in ("postgres-credentials", "postgres-retire-logins"):
        assert job(before, name).name != job(after, name).name, name
    # The verifier the job gets is the secret env's; the password itself never reaches it.
    grant = env_of(job(after, "postgres-credentials"))
    assert set(grant) == {"LOGIN_VERIFIER"} and grant["LOGIN_VERIFIER"].startswith("SCRAM-SHA-256$4096:")
    assert urls[1].password and urls[1].password not in grant["LOGIN_VERIFIER"]


def test_an_unchanged_stack_reruns_no_credentials_job() -> None:
    before = docker({"secrets.rotation": 2})
    again = docker({"secrets.rotation": 2}, prior=before)
    for name in ("postgres-credentials", "postgres-retire-logins"):
        assert reveal(job(before, name).inputs) == reveal(job(again, name).inputs), name


# --------------------------------------------------------------------------- redis: two slots
# A rotation regenerates one of two password slots; the clients hold the current one and every
# Redis server accepts both (components/secrets.py, components/conf/redis.py). The real server's
# side: tests/test_redis_rotation_servers.py.

PASSWORD = "random:index/randomPassword:RandomPassword"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"


def redis_slots(d: Deployment, name: str = "redisPassword") -> tuple[str, str]:
    return tuple(reveal(d.named(n, PASSWORD).outputs["result"]) for n in (name, f"{name}Slot1"))  # type: ignore[return-value]


def accepted_hashes(conf: str) -> list[str]:
    """The SHA-256 hashes redis.conf's default user accepts (and no requirepass)."""
    assert not [line for line in conf.splitlines() if line.startswith("requirepass")]
    (user,) = [line for line in conf.splitlines() if line.startswith("user default ")]
    return [w[1:] for w in user.split() if w.startswith("#")]


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_redis_rotation_changes_one_slot_the_clients_take_it_and_the_server_accepts_both() -> None:
    runs = [docker()]
    for n in (1, 2, 3):
        runs.append(docker({"secrets.rotation": n}, prior=runs[-1]))
    slots = [redis_slots(d) for d in runs]
    for n in (1, 2, 3):
        # Exactly one slot is new, the one of the generation's parity; the other is kept.
        assert slots[n][n % 2] != slots[n - 1][n % 2] and slots[n][(n + 1) % 2] == slots[n - 1][(n + 1) % 2]
    for n, d in enumerate(runs):
        current = slots[n][n % 2]
        for client in ("api", "worker"):
            assert urlsplit(env_of(d.named(client, CONTAINER))["REDIS_URL"]).password == current, (n, client)
        assert env_of(d.named("redis", CONTAINER))["REDISCLI_AUTH"] == current  # its CLI and probe
        conf = delivered(d, d.named("redis", CONTAINER))["/etc/aixsss/redis.conf"]["content"]
        assert sorted(accepted_hashes(conf)) == sorted(sha(s) for s in slots[n]), n
        assert not any(s in conf for s in slots[n])  # hashes only


def test_an_existing_stack_keeps_its_redis_password_at_an_even_rotation() -> None:
    """Slot 0 is the single password's resource with the same keeper at an even generation."""
    d = docker({"secrets.rotation": 2})
    assert d.named("redisPassword", PASSWORD).plain["keepers"] == {"rotation": "2"}
    assert d.named("redisPasswordSlot1", PASSWORD).plain["keepers"] == {"rotation": "1"}
    # The clients' slot at an even generation is slot 0.
    assert urlsplit(env_of(d.named("api", CONTAINER))["REDIS_URL"]).password == redis_slots(d)[0]


def test_on_docker_the_redis_server_is_replaced_before_its_clients() -> None:
    before = docker()
    after = docker({"secrets.rotation": 1}, prior=before)
    redis, carrier = after.named("redis", CONTAINER), carrier_of(after, after.named("redis", CONTAINER))
    # The new file (and the CLI's password) change the server's container: Docker replaces it.
    assert reveal(redis.inputs) != reveal(before.named("redis", CONTAINER).inputs)
    for client in ("api", "worker"):
        assert after.depends_on(after.named(client, CONTAINER), redis), client
        assert after.depends_on(after.named(client, CONTAINER), carrier), client


def k8s_secret(d: Deployment, name: str) -> dict[str, str]:
    (found,) = [r for r in d.of_type(SECRET) if r.plain["metadata"]["name"] == name]
    return found.plain["stringData"]


def workload_named(d: Deployment, typ: str, name: str) -> Registration:
    (found,) = [r for r in d.of_type(typ) if r.plain["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_on_kubernetes_the_redis_servers_roll_before_their_clients(stack: str) -> None:
    """pulumi-kubernetes waits for a StatefulSet's rollout before its dependants: the nodes
    (both slots) are all replaced before api and worker roll with the new slot. HA (prod): the
    Sentinels and HAProxy, which log in with the current slot, roll after the nodes too."""
    before = run_program(stack, overrides={"target": "kubernetes"})
    after = run_program(stack, overrides={"target": "kubernetes", "secrets.rotation": 1}, prior=before)
    ha = stack == "prod"
    servers = workload_named(after, STATEFUL_SET, "redis-node" if ha else "redis")
    clients = [workload_named(after, DEPLOYMENT, n) for n in ("api", "worker")]
    for client in clients:
        assert after.depends_on(client, servers), client.name
    slots, old = redis_slots(after), redis_slots(before)
    assert slots[0] == old[0] and slots[1] != old[1]
    files = k8s_secret(after, f"{servers.plain['metadata']['name']}-secret-files")
    assert sorted(accepted_hashes(files["etc_aixsss_redis.conf"])) == sorted(sha(s) for s in slots)
    for name in ("api", "worker"):
        assert urlsplit(k8s_secret(after, f"{name}-env")["REDIS_URL"]).password == slots[1]
    if ha:
        sentinels = workload_named(after, STATEFUL_SET, "redis-sentinel")
        proxy = workload_named(after, DEPLOYMENT, "redis")
        assert after.depends_on(sentinels, servers) and after.depends_on(proxy, servers)
        # Replicas give the previous generation's slot (old and new nodes accept it in the roll);
        # Sentinel and HAProxy the current one, which every node accepts once the nodes rolled.
        assert f"masterauth {slots[0]}" in files["etc_aixsss_redis.conf"].splitlines()
        sentinel_conf = k8s_secret(after, "redis-sentinel-secret-files")["etc_aixsss_sentinel.conf"]
        assert f"sentinel auth-pass aixsss {slots[1]}" in sentinel_conf.splitlines()
        haproxy = k8s_secret(after, "redis-secret-files")["etc_aixsss_haproxy.cfg"]
        assert slots[1].encode().hex() in haproxy and slots[0].encode().hex() not in haproxy
        # The Sentinels' own password: one slot rotated, both accepted, and the nodes (which
        # roll first, while the old Sentinels run) ask with the slot the old ones accept.
        sentinel_slots = redis_slots(after, "redisSentinelPassword")
        assert sentinel_slots[0] == redis_slots(before, "redisSentinelPassword")[0]
        assert sentinel_slots[1] != redis_slots(before, "redisSentinelPassword")[1]
        assert sorted(accepted_hashes(sentinel_conf)) == sorted(sha(s) for s in sentinel_slots)
        start = files["etc_aixsss_redis-node-start.sh"]
        assert f"REDISCLI_AUTH='{sentinel_slots[0]}'" in start and sentinel_slots[1] not in start
