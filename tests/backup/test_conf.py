"""The pure renderers: pgbackrest.conf and the archiving lines of postgresql.conf."""

from __future__ import annotations

import dataclasses
import re

from components.conf import pgbackrest, postgres

BASE = pgbackrest.PgBackRestSettings(s3_endpoint="minio", s3_port=9000, s3_bucket="backups", ca_file="/etc/ca.crt")
PG = postgres.PostgresSettings(cert_path="/c", key_path="/k", hba_path="/h", max_connections=10, shared_buffers_mb=8)


def options(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9-]+)=(.*)$", text, re.MULTILINE))


def test_the_repository_is_s3_over_verified_tls_with_time_retention() -> None:
    text = pgbackrest.render(BASE)
    o = options(text)
    expected = {
        "repo1-type": "s3",
        "repo1-s3-uri-style": "path",
        "repo1-storage-verify-tls": "y",
        "repo1-retention-full-type": "time",
        "archive-async": "y",
        "log-level-file": "off",
        "compress-type": "zst",
    }
    assert {k: o[k] for k in expected} == expected
    assert o["repo1-storage-port"] == "9000" and o["repo1-storage-ca-file"] == "/etc/ca.crt"
    assert re.search(r"^\[aixsss\]\npg1-path=/var/lib/postgresql/data/pgdata$", text, re.MULTILINE)
    # The image's superuser, by peer through the socket (the owner of the data cannot log in).
    assert o["pg1-user"] == "postgres"
    # The spool is outside PGDATA, on the data volume (the root filesystem is read-only).
    assert not o["spool-path"].startswith(BASE.pg_path + "/")
    # 443 is pgBackRest's default: no port line.
    assert "repo1-storage-port" not in pgbackrest.render(dataclasses.replace(BASE, s3_port=443))


def test_no_credential_option_is_rendered() -> None:
    text = pgbackrest.render(BASE)
    assert not re.search(r"^(repo1-s3-key|repo1-s3-key-secret|repo1-cipher-pass|pg1-password)=", text, re.MULTILINE)
    assert pgbackrest.ENV_KEY in text and pgbackrest.ENV_KEY_SECRET in text  # the comment says where they come from


def test_archive_lines_reach_postgresql_conf_and_nothing_changes_without_them() -> None:
    lines = pgbackrest.archive_lines(BASE)
    assert "archive_command = 'pgbackrest --stanza=aixsss archive-push %p'" in lines
    assert "restore_command = 'pgbackrest --stanza=aixsss archive-get %f \"%p\"'" in lines
    assert f"archive_timeout = {BASE.archive_timeout_seconds}" in lines
    plain = postgres.render_conf(PG)
    archiving = postgres.render_conf(dataclasses.replace(PG, archive=tuple(lines)))
    assert archiving == plain.removesuffix("\n") + "\n" + "\n".join(lines) + "\n"
    assert plain.endswith("log_disconnections = on\n")


def test_backup_commands() -> None:
    assert pgbackrest.backup_command(BASE, "full") == ["pgbackrest", "--stanza=aixsss", "--type=full", "backup"]
    assert pgbackrest.backup_command(BASE, "diff")[2] == "--type=diff"
