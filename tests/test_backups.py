"""PostgreSQL backups as declared: a bucket of their own, a user only for it, and (Kubernetes) the
CloudNativePG cluster archiving there with exactly those credentials."""

from __future__ import annotations

import json
from typing import Any

from harness import reveal, run_program

SECRET = "kubernetes:core/v1:Secret"
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


def test_docker_outputs_say_backups_are_not_wired_yet() -> None:
    durability = reveal(run_program("dev").outputs)["durability"]["database"]
    assert durability["instances"] == 1 and durability["backups"].startswith("none yet on Docker")


def test_the_first_backup_waits_for_the_backups_bucket_and_user_and_nothing_else_does() -> None:
    d = run_program("staging")
    bootstrap = next(r for r in d.of_type(JOB) if r.name == "minio-bootstrap")
    scheduled = next(r for r in d.registrations if r.plain.get("kind") == "ScheduledBackup")
    assert d.depends_on(scheduled, bootstrap)  # a failed first Backup is not retried
    # The database (and so migrations and api) does not wait: WAL archiving retries on its own.
    cluster = next(r for r in d.registrations if r.plain.get("kind") == "Cluster")
    assert not d.depends_on(cluster, bootstrap)
    # Docker runs no backups yet: postgres waits for nothing there.
    docker = run_program("dev")
    postgres = docker.named("postgres", "docker:index/container:Container")
    minio = next(r for r in docker.of_type("docker:index/container:Container") if r.name.startswith("minio-bootstrap-"))
    assert not docker.depends_on(postgres, minio)
