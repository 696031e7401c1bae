"""PostgreSQL backups as declared: a bucket of their own, a user only for it, and (Kubernetes) the
CloudNativePG cluster archiving there with exactly those credentials."""

from __future__ import annotations

import json
from typing import Any

from harness import CONTAINER, delivered, is_secret, reveal, run_program

from components.conf import pgbackrest
from components.platforms.base import FLOW_KEY
from components.service import CA_PATH

SECRET = "kubernetes:core/v1:Secret"
DOCKER = {"target": "docker"}
JOB = "kubernetes:batch/v1:Job"


def _bootstrap(d: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """The bucket bootstrap job's script, env (secret values resolved) and files (Kubernetes)."""
    job = next(r for r in d.of_type(JOB) if r.name == "minio-bootstrap")
    container = job.plain["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for e in container["env"]:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        env[e["name"]] = d.named(ref["name"], SECRET).plain["stringData"][ref["key"]] if ref else e["value"]
    files = d.named("minio-bootstrap-files", "kubernetes:core/v1:ConfigMap").plain["data"]
    return files["etc_aixsss_bootstrap.sh"], env, files


def test_backups_get_their_own_bucket_and_user_the_app_cannot_use() -> None:
    d = run_program("staging")
    script, env, files = _bootstrap(d)
    assert "mc mb --ignore-existing root/aixsss-backups" in script.splitlines()
    assert 'mc admin user add root "$BACKUP_ACCESS_KEY" "$BACKUP_SECRET_KEY"' in script.splitlines()
    backup_policy = json.loads(files["etc_aixsss_backup-policy.json"])
    app_policy = json.loads(files["etc_aixsss_app-policy.json"])
    resources = {r for s in backup_policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::aixsss-backups", "arn:aws:s3:::aixsss-backups/*"}
    assert not any("aixsss-backups" in r for s in app_policy["Statement"] for r in s["Resource"])
    assert env["BACKUP_ACCESS_KEY"] != env["APP_ACCESS_KEY"]
    # The cluster archives with the backups' user, never the app's.
    creds = d.named("postgres-backup-s3", SECRET).plain["stringData"]
    assert creds == {"ACCESS_KEY_ID": env["BACKUP_ACCESS_KEY"], "ACCESS_SECRET_KEY": env["BACKUP_SECRET_KEY"]}
    api_env = reveal(d.named("api-env", SECRET).plain["stringData"])
    assert env["BACKUP_SECRET_KEY"] not in api_env.values()


def test_the_cluster_archives_to_the_backups_bucket_on_the_stacks_store() -> None:
    d = run_program("prod")
    store = next(r for r in d.registrations if r.plain.get("kind") == "ObjectStore").plain["spec"]
    assert store["configuration"]["destinationPath"] == "s3://aixsss-backups/"
    assert store["configuration"]["endpointURL"] == "https://minio.aixsss-prod.svc:9000"
    assert store["configuration"]["endpointCA"] == {"name": "postgres-backup-ca", "key": "ca.crt"}
    assert store["retentionPolicy"] == "14d"
    cluster = next(r for r in d.registrations if r.plain.get("kind") == "Cluster").plain["spec"]
    assert cluster["instances"] == 3 and cluster["postgresql"]["synchronous"] == {"method": "any", "number": 1}
    (plugin,) = cluster["plugins"]
    assert plugin["isWALArchiver"] is True
    assert plugin["parameters"] == {"barmanObjectName": "postgres-backups", "serverName": "postgres"}
    schedule = next(r for r in d.registrations if r.plain.get("kind") == "ScheduledBackup").plain["spec"]
    assert schedule["schedule"] == "0 0 3 * * *" and schedule["method"] == "plugin"
    durability = reveal(d.outputs)["durability"]["database"]
    assert durability["instances"] == 3 and durability["backups"]["retention"] == "14d"


def test_a_restore_bootstraps_from_the_named_backups_to_a_point_in_time() -> None:
    restore = {
        "backup.restoreFrom": "postgres",
        "backup.serverName": "postgres-2",
        "backup.restoreTargetTime": "2026-11-29T08:00:00Z",
    }
    d = run_program("staging", overrides=restore)
    cluster = next(r for r in d.registrations if r.plain.get("kind") == "Cluster").plain["spec"]
    recovery = cluster["bootstrap"]["recovery"]
    assert recovery["source"] == "origin" and recovery["recoveryTarget"] == {"targetTime": "2026-11-29T08:00:00Z"}
    assert "initdb" not in cluster["bootstrap"]
    (origin,) = cluster["externalClusters"]
    assert origin["plugin"]["parameters"] == {"barmanObjectName": "postgres-backups", "serverName": "postgres"}
    # The restored cluster archives into a folder of its own, not into the one it restores from.
    assert cluster["plugins"][0]["parameters"]["serverName"] == "postgres-2"


def _docker_postgres(d: Any) -> tuple[Any, Any, dict[str, str]]:
    """The postgres container, its backup companion, and postgres's environment (secrets revealed)."""
    postgres = d.named("postgres", CONTAINER)
    companion = d.named("postgres-backups", CONTAINER)
    env = dict(e.split("=", 1) for e in reveal(postgres.inputs["envs"]))
    return postgres, companion, env


def test_docker_archives_wal_and_schedules_backups_with_pgbackrest_into_the_backups_bucket() -> None:
    d = run_program("staging", overrides=DOCKER)
    postgres, companion, env = _docker_postgres(d)
    files = {path: u["content"] for path, u in delivered(d, postgres).items()}
    conf = files[pgbackrest.CONFIG_PATH]
    # The bundled store by its name and port, verified against the stack's CA, this server's folder.
    for line in ("repo1-s3-endpoint=minio", "repo1-storage-port=9000", "repo1-s3-bucket=aixsss-backups",
                 f"repo1-storage-ca-file={CA_PATH}", "repo1-path=/postgres", "repo1-retention-full=14"):  # fmt: skip
        assert line in conf.splitlines(), line
    assert "archive_command = 'pgbackrest --stanza=aixsss archive-push %p'" in files["/etc/aixsss/postgresql.conf"]
    assert env[pgbackrest.ENV_CONFIG] == pgbackrest.CONFIG_PATH
    # The backups' user, not the app's, and never in a file.
    _, bootstrap_env = _docker_bootstrap(d)
    assert env[pgbackrest.ENV_KEY] == bootstrap_env["BACKUP_ACCESS_KEY"] != bootstrap_env["APP_ACCESS_KEY"]
    assert env[pgbackrest.ENV_KEY_SECRET] == bootstrap_env["BACKUP_SECRET_KEY"]
    assert bootstrap_env["BACKUP_SECRET_KEY"] not in conf
    assert is_secret(postgres.inputs["envs"])
    # The scheduler: the same image, user, environment, data and socket volumes and files.
    assert companion.inputs["image"] == postgres.inputs["image"] and companion.inputs["user"] == "999:999"
    assert companion.inputs["envs"] == postgres.inputs["envs"]
    assert companion.inputs["entrypoints"] == ["bash", pgbackrest.SCHEDULER_PATH]
    mounts = {v["containerPath"]: v["volumeName"] for v in reveal(postgres.inputs["volumes"])}
    assert {v["containerPath"]: v["volumeName"] for v in reveal(companion.inputs["volumes"])} == mounts
    assert set(mounts) == {"/var/lib/postgresql/data", "/var/run/postgresql", "/etc/aixsss"}
    assert "/var/run/postgresql" not in (postgres.inputs.get("tmpfs") or {})  # the socket is shared
    assert files[pgbackrest.SCHEDULER_PATH].startswith("#!/bin/bash")
    assert companion.inputs["healthcheck"]["tests"] == ["CMD", "test", "-f", pgbackrest.HEALTHY_MARK]
    # The server runs under docker-init: the postmaster as PID 1 adopted archive-push's orphaned
    # asynchronous process and restarted every session when it exited with an error (seen on the
    # real daemon before stanza-create: "server process exited with exit code 103", pgbackrest#2016).
    assert postgres.inputs["init"] is True
    assert not [c.name for c in d.of_type(CONTAINER) if c.inputs.get("init") and c is not postgres]
    # Room for a first `check` that waits out archive-timeout (60 s) and is retried; probed every
    # 10 s, as Debian's Docker 20.10 ignores start_interval.
    assert companion.inputs["healthcheck"]["interval"] == "10s"
    assert companion.inputs["waitTimeout"] >= 2 * (60 + 10) + 60
    assert companion.inputs["wait"] is True and companion.inputs["readOnly"] is True
    # On the backend network without postgres's name (clients never reach it), publishing nothing.
    networks = reveal(companion.inputs["networksAdvanced"])
    assert [n["name"] for n in networks] == ["aixsss-staging-backend"] and not any(n.get("aliases") for n in networks)
    assert not companion.inputs.get("ports")
    # It starts once postgres is healthy and the bucket and its user exist; postgres waits for
    # neither (PostgreSQL keeps WAL segments and retries archiving).
    bootstrap = next(
        c for c in d.of_type(CONTAINER) if c.name.startswith("minio-bootstrap-") and c.inputs.get("attach")
    )
    assert d.depends_on(companion, postgres) and d.depends_on(companion, bootstrap)
    assert not d.depends_on(postgres, bootstrap)
    # A declared flow postgres -> minio (the backups), visible to reviews.
    flows = json.loads(dict((lbl["label"], lbl["value"]) for lbl in reveal(postgres.inputs["labels"]))[FLOW_KEY])
    assert [(f["client"], f["server"], f["tls"]) for f in flows] == [("postgres", "minio", True)]


def test_docker_builds_postgres_with_pgbackrest_on_images_postgres_unless_an_image_is_given() -> None:
    d = run_program("staging", overrides=DOCKER)
    (build,) = [r for r in d.of_type("docker:index/image:Image") if r.name == "postgres-build"]
    assert build.inputs["build"]["args"] == {"POSTGRES_IMAGE": "postgres:16.10"}
    assert build.inputs["build"]["dockerfile"].endswith("images/postgres/Dockerfile")
    assert build.inputs["skipPush"] is True
    tag = build.inputs["imageName"]
    assert tag.startswith("aixsss-staging/aixsss-postgres:pg-")
    # Another base is another tag, so the container is replaced onto it.
    other = run_program("staging", overrides=DOCKER | {"images.postgres": "postgres:16.15"})
    assert other.named("postgres-build", "docker:index/image:Image").inputs["imageName"] != tag
    given = run_program("staging", overrides=DOCKER | {"images.postgresPgbackrest": "r.example.com/pg:16-b"})
    assert not [r for r in given.of_type("docker:index/image:Image") if r.name == "postgres-build"]
    assert (
        given.named("postgres-image", "docker:index/remoteImage:RemoteImage").inputs["name"] == "r.example.com/pg:16-b"
    )


def test_docker_without_backups_has_no_archiving_no_scheduler_and_the_plain_image() -> None:
    d = run_program("staging", overrides=DOCKER | {"backup.enabled": False})
    postgres = d.named("postgres", CONTAINER)
    assert not [c for c in d.of_type(CONTAINER) if c.name == "postgres-backups"]
    assert "archive_command" not in delivered(d, postgres)["/etc/aixsss/postgresql.conf"]["content"]
    assert d.named("postgres-image", "docker:index/remoteImage:RemoteImage").inputs["name"] == "postgres:16.10"
    assert (
        reveal(run_program("staging", overrides=DOCKER | {"backup.enabled": False}).outputs)["durability"]["database"][
            "backups"
        ]
        == "disabled (backup.enabled false)"
    )


def test_docker_outputs_state_the_pgbackrest_schedule_retention_and_rpo() -> None:
    backups = reveal(run_program("dev").outputs)["durability"]["database"]["backups"]
    assert backups["wal"].startswith("continuous archiving (pgBackRest")
    assert backups["destination"] == "s3://aixsss-backups/postgres/ at https://minio:9000"
    assert backups["retention"] == "full backups for 14 days, with the WAL they need"
    assert backups["rpo"].startswith("up to 60 seconds")
    assert "make restore-drill STACK=<stack>" in backups["restore"]


def _docker_bootstrap(d: Any) -> tuple[str, dict[str, str]]:
    bootstrap = next(
        c for c in d.of_type(CONTAINER) if c.name.startswith("minio-bootstrap-") and c.inputs.get("attach")
    )
    env = dict(e.split("=", 1) for e in reveal(bootstrap.inputs["envs"]))
    return delivered(d, bootstrap)["/etc/aixsss/bootstrap.sh"]["content"], env


def test_the_first_backup_waits_for_the_backups_bucket_and_user_and_nothing_else_does() -> None:
    d = run_program("staging")
    bootstrap = next(r for r in d.of_type(JOB) if r.name == "minio-bootstrap")
    scheduled = next(r for r in d.registrations if r.plain.get("kind") == "ScheduledBackup")
    assert d.depends_on(scheduled, bootstrap)  # a failed first Backup is not retried
    # The database (and so migrations and api) does not wait: WAL archiving retries on its own.
    cluster = next(r for r in d.registrations if r.plain.get("kind") == "Cluster")
    assert not d.depends_on(cluster, bootstrap)


def test_the_backup_checklist_item_is_computed_from_what_each_target_declares() -> None:
    def item(stack: str, **overrides: object) -> dict[str, Any]:
        return reveal(run_program(stack, overrides=overrides or None).outputs)["checklist"][
            "backup.archivedAndScheduled"
        ]

    docker = item("dev")
    assert docker["ok"] is True
    assert (
        "archive_command = 'pgbackrest --stanza=aixsss archive-push %p' to s3://aixsss-backups/postgres/"
        in (docker["reason"])
    )
    assert "postgres-backups runs the pgBackRest schedule" in docker["reason"]
    kubernetes = item("staging")
    assert kubernetes["ok"] is True and "Barman Cloud plugin" in kubernetes["reason"]
    assert "ScheduledBackup at cron '0 0 3 * * *'" in kubernetes["reason"]
    off = item("dev", **{"backup.enabled": False})
    assert off == {
        "ok": False,
        "reason": "backup.enabled is false: no WAL archiving and no scheduled backup is declared",
    }
