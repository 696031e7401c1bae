"""The one-time migration of README's "Secrets and rotation" (issue 12), on a real PostgreSQL: a data
directory made the old way (the image's bootstrap superuser was the owner `aixsss`, no `postgres`
role), the README's block run through the socket as the old credentials job logged in, then the
upgrade (the new pg_hba.conf and pg_ident.conf, the new credentials job). The app's data must
survive, belong to the new owner, and the clients' sessions must no longer be a superuser's.

Server: PostgreSQL 15 (Debian's) and 16 (tests/postgres16.py, the version the stacks deploy) with
the dev stack's rendered files (servers.rendered_postgres), its
pg_hba.conf and pg_ident.conf's socket rule as they were before issue 12 until the upgrade.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import LiteralString

import psycopg
import pytest
from rendering import rendered
from servers import (
    LOOPBACK,
    Database,
    PostgresServer,
    client_login,
    container_env,
    container_inputs,
    give_to,
    rendered_postgres,
    run_rendered_job,
    superuser_psql,
)

from offline.engine import ROOT
from offline.render import Rendered

HBA, IDENT = "etc/aixsss/pg_hba.conf", "etc/aixsss/pg_ident.conf"
NEW_SOCKET_RULE = "local      all       postgres  peer map=superuser"
OLD_SOCKET_RULE = "local      all       aixsss  peer map=owner"
# What the credentials job did before issue 12 (as the owner, the bootstrap superuser).
OLD_GRANT = """CREATE ROLE aixsss_g0 LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD '{password}';
GRANT aixsss TO aixsss_g0;
ALTER ROLE aixsss_g0 SET role = 'aixsss';
ALTER ROLE aixsss PASSWORD NULL;"""
# The app's kinds of objects (Prisma: tables, indexes, enums), plus a sequence and a view.
APP_SCHEMA: list[LiteralString] = [
    "CREATE TYPE \"Status\" AS ENUM ('draft', 'done')",
    'CREATE TABLE "Note" (id serial PRIMARY KEY, status "Status" NOT NULL, body text)',
    'CREATE INDEX "Note_status_idx" ON "Note" (status)',
    'CREATE VIEW "DoneNote" AS SELECT id FROM "Note" WHERE status = \'done\'',
    "INSERT INTO \"Note\" (status, body) VALUES ('done', 'kept')",
]
OWNERS = """SELECT c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c
  WHERE c.relnamespace = 'public'::regnamespace
UNION ALL SELECT t.typname || ' ' || pg_get_userbyid(t.typowner) FROM pg_type t
  WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'
ORDER BY 1"""


def readme_migration() -> str:
    """The SQL of the README's block, exactly as an operator pastes it."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<<'SQL'\n(.*?)\n *SQL\n", text, re.S)
    assert found, "README's one-time migration block is missing"
    return "\n".join(line.removeprefix("  ") for line in found.group(1).splitlines()) + "\n"


def connect(db: Database) -> psycopg.Connection:
    return psycopg.connect(host=LOOPBACK, port=db.port, user=db.user, password=db.password, dbname=db.database,
                           sslmode="verify-full", sslrootcert=str(db.ca), connect_timeout=5)  # fmt: skip


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("owner-migration"), "dev", "docker", show_secrets=True)


@pytest.fixture
def old_server(dev: Rendered, tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Database]:
    """The dev stack's server as deployed before issue 12: POSTGRES_USER=aixsss, and pg_hba.conf
    and pg_ident.conf admitting that owner (not `postgres`) through the socket."""
    (config_dir,) = (dev.out / "config").glob("aixsss-*-postgres")
    old = tmp_path / "config"
    shutil.copytree(config_dir, old)
    hba = (old / HBA).read_text()
    assert NEW_SOCKET_RULE in hba
    (old / HBA).write_text(hba.replace(NEW_SOCKET_RULE, OLD_SOCKET_RULE))
    (old / IDENT).write_text("owner  postgres  aixsss\n")
    env = container_env(container_inputs(dev, "postgres")) | {"POSTGRES_USER": "aixsss"}
    with rendered_postgres(old, env, postgres_server) as db:
        yield db


def upgrade_config(db: Database, dev: Rendered) -> None:
    """`pulumi up`'s new pg_hba.conf and pg_ident.conf, then a reload (the server's restart)."""
    (config_dir,) = (dev.out / "config").glob("aixsss-*-postgres")
    files = db.socket_dir.parent / "files"
    for name in (HBA, IDENT):
        shutil.copy(config_dir / name, files / name)
        give_to("postgres", files / name)
    postmaster = int((db.socket_dir.parent / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "postgres" not in superuser_psql(db, "SELECT current_user", check=False):
        assert time.monotonic() < deadline, "the new pg_hba.conf was not loaded"
        time.sleep(0.2)


def test_the_readme_migration_turns_an_old_data_directory_into_the_new_layout(
    dev: Rendered, old_server: Database
) -> None:
    db = replace(old_server, superuser="postgres")  # after the migration (superuser_psql's default)
    client = client_login(dev, db)
    # Before: the old credentials job, the app's migrations; the clients' sessions are a superuser's.
    superuser_psql(db, OLD_GRANT.format(password=client.password), user="aixsss")
    with connect(client) as conn:
        for statement in APP_SCHEMA:
            conn.execute(statement)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    old_roles = "SELECT rolname, rolsuper, oid FROM pg_roles WHERE rolname IN ('aixsss', 'postgres')"
    assert superuser_psql(db, old_roles, user="aixsss") == "aixsss|t|10\n"  # the bootstrap superuser

    # The README's block, through the socket as the old owner.
    script = db.socket_dir.parent / "owner-migration.sql"
    script.write_text(readme_migration())
    give_to("postgres", script)
    superuser_psql(db, f"\\i {script}", user="aixsss")
    # Before the upgrade, the running clients still log in, acting as the new owner.
    with connect(client) as conn:
        assert conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            "aixsss",
            False,
        )

    # The upgrade: the new socket rule, then the new credentials job (as `postgres`, by peer).
    upgrade_config(db, dev)
    run_rendered_job(dev, db, "postgres-credentials")
    owners = superuser_psql(db, OWNERS).split("\n")
    assert [line for line in owners if line] == [
        "DoneNote aixsss",
        "Note aixsss",
        "Note_id_seq aixsss",
        "Note_pkey aixsss",
        "Note_status_idx aixsss",
        "Status aixsss",
    ]
    roles = superuser_psql(db, "SELECT rolname, rolsuper, rolcanlogin, rolpassword IS NULL FROM pg_authid"
                               " WHERE rolname !~ '^pg_' ORDER BY 1")  # fmt: skip
    assert roles.split() == ["aixsss|f|f|t", "aixsss_g0|f|t|f", "postgres|t|t|t"]
    assert superuser_psql(db, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'aixsss'") == "aixsss\n"
    members = superuser_psql(db, "SELECT roleid::regrole || ' ' || member::regrole FROM pg_auth_members ORDER BY 1")
    assert [m for m in members.split("\n") if m.endswith("aixsss_g0")] == ["aixsss aixsss_g0"]
    with connect(client) as conn:
        # The data is there, and the new owner (the app's sessions) may change its schema.
        assert conn.execute('SELECT body FROM "Note"').fetchall() == [("kept",)]
        conn.execute('ALTER TABLE "Note" ADD COLUMN title text')
        conn.execute("ALTER TYPE \"Status\" ADD VALUE 'archived'")
        conn.execute("INSERT INTO \"Note\" (status) VALUES ('draft')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY \"Note\" (body) FROM PROGRAM 'id'")
    # The superuser by peer only; the owner not at all.
    bootstrap = container_env(container_inputs(dev, "postgres"))["POSTGRES_PASSWORD"]
    for user in ("postgres", "aixsss"):
        with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
            connect(replace(db, user=user, password=bootstrap))
    assert "pg_hba.conf rejects connection" in superuser_psql(db, "SELECT 1", user="aixsss", check=False)
