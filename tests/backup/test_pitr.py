"""Backups that have been restored: PostgreSQL archiving to pgBackRest in a TLS S3 store, a
point-in-time restore between two batches of rows, then a restore of the latest state from a
differential backup plus archived WAL after the data directory is gone. Row counts exact.

Real processes on loopback (conftest.py): Debian's PostgreSQL and pgBackRest, moto's S3 over
TLS with a throwaway CA; the configuration is what components.conf.pgbackrest and
components.conf.postgres render, relocated.
"""

from __future__ import annotations

import datetime
import json
import shutil
import time

import psycopg
from servers import give_to

from components.conf import pgbackrest

from .conftest import PG_USER, SETTINGS, Cluster

N, M, K, D, E = 1000, 500, 250, 300, 100  # rows per batch
# scripts/restore-drill.sh restores with these options (tests/backup/test_restore_drill.py checks).
DRILL_RESTORE = ("--type=immediate", "--target-action=promote", "--archive-mode=off",
                 "--recovery-option=restore_command=/bin/false")  # fmt: skip


def insert(cluster: Cluster, batch: str, rows: int) -> None:
    """``rows`` rows of ``batch`` in one transaction, committed when this returns."""
    with cluster.connect() as conn:
        conn.execute(
            "INSERT INTO work (batch, payload) SELECT %s, md5(g::text) FROM generate_series(1, %s) g", (batch, rows)
        )


def counts(cluster: Cluster) -> dict[str, int]:
    with cluster.connect() as conn:
        return dict(conn.execute("SELECT batch, count(*) FROM work GROUP BY batch").fetchall())


def switch_and_wait_archived(cluster: Cluster) -> str:
    """Close the current WAL segment and wait until it is in the repository: pgBackRest's
    ``check`` switches once more and waits for that segment (archive-timeout), and the async
    archive-push reports a segment done to PostgreSQL only once it is in the store, in order."""
    with cluster.connect() as conn:
        conn.autocommit = True
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
    cluster.backrest("check")
    with cluster.connect() as conn:
        archived, failed = conn.execute("SELECT last_archived_wal, failed_count FROM pg_stat_archiver").fetchone()  # type: ignore[misc]
    assert archived is not None and archived >= segment, (archived, segment, failed)
    return segment


def wait_promoted(cluster: Cluster, timeout: float = 60) -> None:
    """Recovery accepts read-only connections before it ends (hot standby): wait for promotion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with cluster.connect() as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    raise TimeoutError(cluster.logs[-1].read_text()[-3000:])


def fresh_data_dir(cluster: Cluster) -> None:
    cluster.data.mkdir(mode=0o700)
    give_to(PG_USER, cluster.data)


def info(cluster: Cluster) -> dict:
    return json.loads(cluster.backrest("--output=json", "info").stdout)[0]


def test_point_in_time_then_latest_restore(cluster: Cluster) -> None:
    started = time.monotonic()
    with cluster.running():
        cluster.stanza_create()
        cluster.backrest("check")
        with cluster.connect() as conn:
            conn.execute("CREATE TABLE work (id bigserial PRIMARY KEY, batch text NOT NULL, payload text NOT NULL)")
        insert(cluster, "n", N)

        full = cluster.backrest("--type=full", "backup")
        # The rendered retention and compression reach the command (its "command begin" line
        # lists the options in force).
        begin = next(line for line in full.stdout.splitlines() if "backup command begin" in line)
        for option in (f"--repo1-retention-full={SETTINGS.retention_full_days}", "--repo1-retention-full-type=time",
                       "--compress-type=zst", "--repo1-storage-verify-tls", "--start-fast"):  # fmt: skip
            assert option in begin, begin

        insert(cluster, "m", M)
        switch_and_wait_archived(cluster)
        # pgBackRest picks the newest backup whose stop time, in whole seconds, is before the
        # target: the target is at least a second past it.
        stop = info(cluster)["backup"][-1]["timestamp"]["stop"]
        while True:
            with cluster.connect() as conn:
                target: datetime.datetime = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            if int(target.timestamp()) > stop:
                break
            time.sleep(0.2)
        # Commit timestamps on either side of the target are at least this far apart.
        time.sleep(0.5)
        insert(cluster, "k", K)
        switch_and_wait_archived(cluster)
        assert counts(cluster) == {"n": N, "m": M, "k": K}
    # PostgreSQL's archive_command ran pgBackRest's asynchronous archive-push.
    pushes = [line for line in cluster.logs[-1].read_text().splitlines() if "archive-push command begin" in line]
    assert pushes and all("--archive-async" in line for line in pushes)

    # Point in time: the data directory is set aside; a fresh one gets the full backup plus
    # the WAL up to the target, then is promoted.
    cluster.data.rename(cluster.work / "pgdata-before-pitr")
    fresh_data_dir(cluster)
    cluster.backrest("--type=time", f"--target={target.isoformat(sep=' ')}", "--target-action=promote", "restore")
    with cluster.running():
        wait_promoted(cluster)
        assert counts(cluster) == {"n": N, "m": M}, "the restore is not the state at the target time"

        # Life goes on after the restore (a new timeline): more rows, a differential backup
        # on top of the full one, more rows that only the archived WAL holds.
        insert(cluster, "d", D)
        diff = cluster.backrest("--type=diff", "backup")
        assert "backup command end: completed successfully" in diff.stdout
        insert(cluster, "e", E)
        switch_and_wait_archived(cluster)
        committed = counts(cluster)
    assert committed == {"n": N, "m": M, "d": D, "e": E}

    # The data directory is gone; the latest state comes back from the repository alone.
    shutil.rmtree(cluster.data)
    shutil.rmtree(cluster.work / "pgdata-before-pitr")
    fresh_data_dir(cluster)
    cluster.backrest("restore")
    with cluster.running():
        wait_promoted(cluster)
        assert counts(cluster) == committed

    # The restore drill's way (scripts/restore-drill.sh): the newest backup alone into a scratch
    # directory, consistent from the WAL the backup holds (archive-copy), recovered with no
    # repository at all and never archiving into it: the state at the differential backup.
    scratch = cluster.work / "pgdata-drill"
    scratch.mkdir(mode=0o700)
    give_to(PG_USER, scratch)
    cluster.backrest(f"--pg1-path={scratch}", *DRILL_RESTORE, "restore")
    requests_before = cluster.store.log.read_text().count('"')
    with cluster.running(scratch):
        wait_promoted(cluster)
        assert counts(cluster) == {"n": N, "m": M, "d": D}
        with cluster.connect() as conn:
            assert conn.execute("SHOW archive_mode").fetchone() == ("off",)
    assert cluster.store.log.read_text().count('"') == requests_before, "the drill's recovery reached the store"

    backups = info(cluster)["backup"]
    assert [b["type"] for b in backups] == ["full", "diff"]
    assert backups[1]["reference"] == [backups[0]["label"]]
    assert info(cluster)["status"]["message"] == "ok"
    assert time.monotonic() - started < 150


def test_the_keys_come_from_the_environment_only(cluster: Cluster) -> None:
    for text in (cluster.backrest_text, cluster.backrest_conf.read_text()):
        assert cluster.store.key not in text and cluster.store.key_secret not in text
        assert "s3-key" not in text.replace(pgbackrest.ENV_KEY, "")
    # Without them in the environment pgBackRest cannot reach the repository at all.
    env = {k: v for k, v in cluster.env().items() if not k.startswith("PGBACKREST_REPO1_S3_KEY")}
    done = cluster.backrest("info", check=False, env=env)
    assert done.returncode != 0 and "repo1-s3-key" in done.stdout + done.stderr


def test_a_store_certificate_from_another_ca_is_refused(cluster: Cluster) -> None:
    """repo1-storage-verify-tls with the CA file: the store must present a certificate from
    that CA (environment options override the file; only the CA changes here)."""
    assert info(cluster)["status"]["code"] == 0
    env = cluster.env(PGBACKREST_REPO1_STORAGE_CA_FILE=str(cluster.pki.foreign_ca))
    # `info` reports an unreachable repository in its status (and exits 0); a short I/O timeout
    # ends its retries sooner.
    text = cluster.backrest("--io-timeout=2", "info", env=env).stdout
    assert "status: error" in text and "unable to verify certificate presented by 'localhost:" in text, text
