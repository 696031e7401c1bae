"""secrets.rotation on Docker, under the mocks: what a rotation changes and in which order the
resources run (the real server's side: tests/test_rotation_servers.py).

One host: clients log in as the generation's login role (aixsss_g<N>), which a run-once
credentials job creates through the server's socket before the migrations; the roles of
earlier generations are retired only once api and worker run with the new one. The server's
container does not change with a rotation.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from harness import Deployment, Registration, reveal, run_program

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
    d = docker()
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
    before = docker()
    after = docker({"secrets.rotation": 1}, prior=before)
    urls = [urlsplit(env_of(d.named("api", CONTAINER))["DATABASE_URL"]) for d in (before, after)]
    assert [u.username for u in urls] == ["aixsss_g0", "aixsss_g1"] and urls[0].password != urls[1].password
    # Each job is a new release for the new generation, so each runs again.
    for name in ("postgres-credentials", "postgres-retire-logins"):
        assert job(before, name).name != job(after, name).name, name
    # The verifier the job gets is the secret env's; the password itself never reaches it.
    grant = env_of(job(after, "postgres-credentials"))
    assert set(grant) == {"LOGIN_VERIFIER"} and grant["LOGIN_VERIFIER"].startswith("SCRAM-SHA-256$4096:")
    assert urls[1].password and urls[1].password not in grant["LOGIN_VERIFIER"]


def test_an_unchanged_stack_reruns_no_credentials_job() -> None:
    before = docker()
    again = docker(prior=before)
    for name in ("postgres-credentials", "postgres-retire-logins"):
        assert reveal(job(before, name).inputs) == reveal(job(again, name).inputs), name
