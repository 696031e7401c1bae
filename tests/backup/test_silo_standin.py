"""The Silo stand-in of the real-daemon tier (tests/realdocker/standins/silo) is a repository real
pgBackRest can use: the S3 requests pgBackRest's driver sends (its docstring lists them) are
answered as S3 answers them, so the tier can archive the Docker target's WAL into it.

Real processes on loopback: the stand-in server itself (`silo server`, Python with botocore) with
a throwaway CA's certificate, the program's bucket bootstrap script run twice by /bin/sh with the
stand-in `mc` (its policy file paths relocated, nothing else), Debian's PostgreSQL and pgBackRest
configured as in tests/backup/conftest.py (the program's renderers, relocated) and running as the
backups' user the bootstrap created: stanza, archiving, a full backup, a restore into an empty
data directory with exact row counts, a second full backup, expiry of the first and `verify`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import LOOPBACK, free_port, relocate, running

from components import database
from components.config import ObjectStoreSettings
from components.object_store import LIFECYCLE_RULE_ID, backup_policy, bootstrap_script, bucket_policy

from .conftest import BUCKET, SETTINGS, Cluster, Store, make_pki, render_cluster
from .test_pitr import counts, fresh_data_dir, info, insert, switch_and_wait_archived, wait_promoted

STANDINS = Path(__file__).resolve().parents[1] / "realdocker" / "standins" / "silo"
APP_BUCKET = "aixsss"
DAYS = 9  # objectStore.noncurrentVersionDays, not the default
# Rows of 88 base64 characters from 64 random bytes: the table's file and the WAL segments it
# fills stay above pgBackRest's 5 MiB S3 part size after zstd, so they go up in several parts.
BIG_ROWS, SMALL_ROWS = 100_000, 500
BIG_INSERT = (
    "INSERT INTO work (batch, payload) SELECT 'big', encode(sha512((random() || g::text)::bytea), 'base64') "
    "FROM generate_series(1, %s) g"
)


@dataclass
class Silo:
    cluster: Cluster  # pgBackRest as the backups' user
    port: int
    ca: Path
    users: dict[str, tuple[str, str]]  # root, app, backup -> (access key, secret)
    log: Path  # the server's request log
    bootstrap_runs: list[subprocess.CompletedProcess[str]]

    def client(self, user: str):
        import boto3
        from botocore.config import Config

        key, secret = self.users[user]
        # Checksums only where S3 requires them: newer botocore otherwise sends PutObject bodies
        # aws-chunked, which the stand-in does not take (its docstring).
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")  # fmt: skip
        return boto3.client("s3", endpoint_url=f"https://localhost:{self.port}", verify=str(self.ca),
                            aws_access_key_id=key, aws_secret_access_key=secret, region_name=SETTINGS.s3_region,
                            config=config)  # fmt: skip


def _health(port: int, ca: Path):
    def probe() -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        try:
            with urllib.request.urlopen(f"https://localhost:{port}/minio/health/live", context=context, timeout=2):
                return True
        except OSError:
            return False

    return probe


@contextlib.contextmanager
def silo_server(work: Path, ca: Path, cert: Path, key: Path, users: dict[str, tuple[str, str]]) -> Iterator[int]:
    try:
        import botocore  # noqa: F401  (the stand-ins are Python with botocore)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("botocore is not installed (requirements-dev.txt); CI must run this test")
        pytest.skip("botocore is not installed (requirements-dev.txt)")
    certs = work / "certs"
    certs.mkdir()
    (work / "data").mkdir()  # the image's VOLUME /data
    shutil.copy(cert, certs / "public.crt")
    shutil.copy(key, certs / "private.key")
    port = free_port()
    command = [sys.executable, str(STANDINS / "silo"), "server", str(work / "data"), "--address", f"{LOOPBACK}:{port}",
               "--console-address", f"{LOOPBACK}:{free_port()}", "--certs-dir", str(certs)]  # fmt: skip
    root, root_secret = users["root"]
    env = os.environ | {"MINIO_ROOT_USER": root, "MINIO_ROOT_PASSWORD": root_secret}
    with running(command, ready=_health(port, ca), log=work / "silo.log", env=env):
        yield port


def run_bootstrap(work: Path, port: int, ca: Path, users: dict[str, tuple[str, str]]) -> subprocess.CompletedProcess:
    """The program's bootstrap script as its job runs it (/bin/sh, MC_CONFIG_DIR, SSL_CERT_FILE,
    the keys in the environment), with the stand-in mc on PATH and the policy files relocated."""
    etc, bin_dir = work / "etc", work / "bin"
    for d in (etc, bin_dir):
        d.mkdir(exist_ok=True)
    (etc / "app-policy.json").write_text(json.dumps(bucket_policy(APP_BUCKET)))
    (etc / "backup-policy.json").write_text(json.dumps(backup_policy(BUCKET)))
    mc = bin_dir / "mc"
    mc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDINS / "mc"}" "$@"\n')
    mc.chmod(0o755)
    script = bootstrap_script(APP_BUCKET, f"https://localhost:{port}", BUCKET,
                              ObjectStoreSettings(noncurrent_version_days=DAYS))  # fmt: skip
    paths = {"/etc/aixsss/app-policy.json": etc / "app-policy.json",
             "/etc/aixsss/backup-policy.json": etc / "backup-policy.json"}  # fmt: skip
    (work / "bootstrap.sh").write_text(relocate(script, paths))
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MC_CONFIG_DIR": str(work / "mc"),
        "SSL_CERT_FILE": str(ca),
        "MINIO_ROOT_USER": users["root"][0],
        "MINIO_ROOT_PASSWORD": users["root"][1],
        "APP_ACCESS_KEY": users["app"][0],
        "APP_SECRET_KEY": users["app"][1],
        "BACKUP_ACCESS_KEY": users["backup"][0],
        "BACKUP_SECRET_KEY": users["backup"][1],
    }
    # Sixteen mc calls, each a Python start importing botocore: 120 s ran out on a machine loaded
    # by other jobs. The bound only keeps a hung script from hanging the run.
    return subprocess.run(["/bin/sh", str(work / "bootstrap.sh")], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def silo() -> Iterator[Silo]:
    from rendering import tool
    from servers import postgres_bin

    tool("pgbackrest", "/usr/bin/pgbackrest")
    postgres_bin("postgres")
    work = Path(tempfile.mkdtemp(prefix="aixsss-silo-"))
    work.chmod(0o755)
    users = {
        name: ("AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)) for name in ("root", "app", "backup")
    }
    try:
        pki = make_pki(work / "pki")
        with silo_server(work, pki.ca, pki.cert, pki.key, users) as port:
            runs = [run_bootstrap(work, port, pki.ca, users) for _ in range(2)]
            store = Store(port, *users["backup"], work / "silo.log")
            cluster = render_cluster(work / "pg", store, pki)
            cluster.initdb(database.SUPERUSER, database.DATABASE)
            yield Silo(cluster, port, pki.ca, users, work / "silo.log", runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "AccessDenied"
    return False


def test_the_bootstrap_versions_both_buckets_once_and_keeps_the_users_apart(silo: Silo) -> None:
    for run in silo.bootstrap_runs:  # the job, and the same job once more (a re-run release)
        assert run.returncode == 0, run.stdout + run.stderr
    assert "versioning is enabled" in silo.bootstrap_runs[1].stdout
    root, app, backup = silo.client("root"), silo.client("app"), silo.client("backup")
    for bucket in (APP_BUCKET, BUCKET):
        assert root.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        # One rule after two runs: the import replaced the configuration.
        assert root.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == [
            {
                "ID": LIFECYCLE_RULE_ID,
                "Status": "Enabled",
                "Expiration": {"ExpiredObjectDeleteMarker": True},
                "NoncurrentVersionExpiration": {"NoncurrentDays": DAYS},
            }
        ]
    app.put_object(Bucket=APP_BUCKET, Key="media/a.png", Body=b"png")
    assert app.get_object(Bucket=APP_BUCKET, Key="media/a.png")["Body"].read() == b"png"
    assert denied(lambda: app.list_objects_v2(Bucket=BUCKET))
    assert denied(lambda: app.put_object(Bucket=BUCKET, Key="x", Body=b"x"))
    assert denied(lambda: backup.list_objects_v2(Bucket=APP_BUCKET))
    # Neither may switch versioning off or shorten how long versions are kept.
    for client, bucket in ((app, APP_BUCKET), (backup, BUCKET)):
        assert denied(lambda c=client, b=bucket: c.put_bucket_versioning(
            Bucket=b, VersioningConfiguration={"Status": "Suspended"}))  # fmt: skip
        assert denied(lambda c=client, b=bucket: c.delete_bucket_lifecycle(Bucket=b))


def test_pgbackrest_archives_backs_up_restores_and_expires_in_the_standin(silo: Silo) -> None:
    c = silo.cluster
    with c.running():
        c.stanza_create()
        c.backrest("check")
        with c.connect() as conn:
            conn.execute("CREATE TABLE work (id bigserial PRIMARY KEY, batch text NOT NULL, payload text NOT NULL)")
            conn.execute(BIG_INSERT, (BIG_ROWS,))
        first = c.backrest("--type=full", "backup")
        assert "backup command end: completed successfully" in first.stdout
        insert(c, "m", SMALL_ROWS)
        switch_and_wait_archived(c)
        committed = counts(c)
    assert committed == {"big": BIG_ROWS, "m": SMALL_ROWS}
    requests = silo.log.read_text()
    # Files over the part size went up as multipart uploads, the others with one PUT.
    assert re.search(r'"POST /aixsss-backups/pgbackrest/\S+\?uploads= HTTP/1.1" 200', requests), requests[-2000:]
    assert re.search(r'"PUT /aixsss-backups/pgbackrest/\S+\?partNumber=2&uploadId=\w+ HTTP/1.1" 200', requests)
    assert re.search(r'"POST /aixsss-backups/pgbackrest/\S+\?uploadId=\w+ HTTP/1.1" 200', requests)
    assert re.search(r'"PUT /aixsss-backups/pgbackrest/\S+ HTTP/1.1" 200', requests)

    # The data directory is gone; the backup and the archived WAL bring it back.
    shutil.rmtree(c.data)
    fresh_data_dir(c)
    c.backrest("restore")
    with c.running():
        wait_promoted(c)
        assert counts(c) == committed
        second = c.backrest("--type=full", "backup")
    labels = [b["label"] for b in info(c)["backup"]]
    assert len(labels) == 2 and "completed successfully" in second.stdout

    # Expiring the first backup removes its files with DeleteObjects and its WAL; what is left
    # reads back whole (verify checks every file's checksum).
    c.backrest("--repo1-retention-full-type=count", "--repo1-retention-full=1", "expire")
    assert [b["label"] for b in info(c)["backup"]] == labels[1:]
    assert re.search(r'"POST /aixsss-backups/\?delete= HTTP/1.1" 200', silo.log.read_text())
    verify = c.backrest("verify")
    assert "verify command end: completed successfully" in verify.stdout, verify.stdout
    assert info(c)["status"]["message"] == "ok"


def test_listing_pages_and_ranges_as_s3_does(silo: Silo) -> None:
    backup = silo.client("backup")
    keys = [*sorted(f"listing/{d}/{n:02d}" for d in ("a", "b") for n in range(5)), "listing/top"]
    for key in keys:
        backup.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    every = [o["Key"] for o in backup.list_objects_v2(Bucket=BUCKET, Prefix="listing/")["Contents"]]
    pages = list(backup.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="listing/", MaxKeys=3))
    assert every == keys == [o["Key"] for page in pages for o in page["Contents"]]
    assert len(pages) == 4 and pages[0]["IsTruncated"] and not pages[-1]["IsTruncated"]
    top = backup.list_objects_v2(Bucket=BUCKET, Prefix="listing/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["listing/a/", "listing/b/"]
    assert [o["Key"] for o in top["Contents"]] == ["listing/top"]
    # A page boundary inside a common prefix: it is not repeated on the next page.
    first = backup.list_objects_v2(Bucket=BUCKET, Prefix="listing/", Delimiter="/", MaxKeys=1)
    rest = backup.list_objects_v2(Bucket=BUCKET, Prefix="listing/", Delimiter="/",
                                  ContinuationToken=first["NextContinuationToken"])  # fmt: skip
    assert [p["Prefix"] for p in first["CommonPrefixes"] + rest["CommonPrefixes"]] == ["listing/a/", "listing/b/"]
    part = backup.get_object(Bucket=BUCKET, Key="listing/top", Range="bytes=2-5")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206 and part["Body"].read() == b"stin"
    assert part["ContentRange"] == "bytes 2-5/11"
    head = backup.head_object(Bucket=BUCKET, Key="listing/top")
    assert head["ContentLength"] == len("listing/top") and head["LastModified"]
    # DeleteObject answers 204 whether or not the key exists; the key is gone from listings.
    for _ in range(2):
        assert backup.delete_object(Bucket=BUCKET, Key="listing/top")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "listing/top" not in [o["Key"] for o in backup.list_objects_v2(Bucket=BUCKET, Prefix="listing/")["Contents"]]
