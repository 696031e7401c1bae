"""The application's SQL migrations apply, over verified TLS, as the program's database user, to a
PostgreSQL running the program's rendered configuration.

Server: the dev stack's rendered postgresql.conf, pg_hba.conf and TLS files, started as the
postgres image starts them (servers.rendered_postgres, shared with tests/test_servers.py; only
file paths, the port and the socket directory are relocated). Debian's PostgreSQL here is 15;
the image is postgres:16.

Client: ``psql`` with the credentials, host and database of the migration job's own
``DATABASE_URL`` (the ``api-migrate`` container, which runs ``prisma migrate deploy``), and the
CA file that URL names (``sslcert=``, Prisma's trusted root), from the files the program
delivers to that job. ``sslmode=verify-full`` with ``host=<URL host> hostaddr=127.0.0.1``:
the server's certificate is checked against the name the job uses, while the connection goes
to loopback. The migrations (``apps/api/prisma/migrations/*/migration.sql``) run in order, as
``prisma migrate deploy`` runs them (each file as one script; Prisma's bookkeeping table
``_prisma_migrations`` is Prisma's, not the app's schema, and is not created here).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from rendering import rendered
from servers import LOOPBACK, Database, PostgresServer, deployed_copy, postgres_bin, rendered_database

from offline.engine import reveal
from offline.render import Rendered

CONTAINER = "docker:index/container:Container"
MIGRATIONS = "apps/api/prisma/migrations"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("appcode-migrations"), "dev", "docker", show_secrets=True)


def _env(result: Rendered, container: str) -> dict[str, str]:
    found = [
        c
        for c in result.deployment.of_type(CONTAINER)
        if re.fullmatch(rf"{re.escape(container)}(-[0-9a-f]+)?", c.name) and not c.name.endswith("-config")
    ]
    assert len(found) == 1, [c.name for c in found]
    return dict(e.split("=", 1) for e in reveal(found[0].inputs["envs"]))


@pytest.fixture(scope="module")
def database(dev: Rendered, postgres_server: PostgresServer) -> Iterator[Database]:
    with rendered_database(dev, postgres_server) as db:
        yield db


def migration_target(dev: Rendered, tmp_path: Path, db: Database) -> tuple[list[str], dict[str, str]]:
    """psql's conninfo and env for the migration job's DATABASE_URL, relocated to the test's port."""
    url = urlsplit(_env(dev, "api-migrate")["DATABASE_URL"])
    query = parse_qs(url.query)
    # Prisma's dialect: sslmode=require with sslaccept=strict and sslcert=<trusted root> means
    # "verify the server against this CA" (APP.md); psql spells it verify-full + sslrootcert.
    assert query["sslmode"] == ["require"] and query["sslaccept"] == ["strict"], url.query
    files = deployed_copy(dev.out / "config/aixsss-dev-api-migrate", tmp_path / "api-migrate")
    ca = files[query["sslcert"][0]]  # the CA file the job's URL names, as delivered to the job
    assert url.hostname and url.username and url.password and url.port == 5432
    conninfo = [
        f"host={url.hostname}",  # the name the certificate must carry
        f"hostaddr={LOOPBACK}",  # relocated: where the test's server listens
        f"port={db.port}",  # relocated: the test server's free port
        f"dbname={url.path.lstrip('/')}",
        f"user={unquote(url.username)}",
        "sslmode=verify-full",
        f"sslrootcert={ca}",
        "connect_timeout=10",
    ]
    env = dict(os.environ, PGPASSWORD=unquote(url.password), PGAPPNAME="aixsss-appcode-migrations")
    return conninfo, env


def psql(conninfo: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [postgres_bin("psql"), " ".join(conninfo), "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def schema_names(built_app: Path) -> tuple[set[str], set[str]]:
    """Tables and enum types the app's schema.prisma declares (models map to tables by name;
    the schema uses no @@map/@map on models or enums, which the assertion below checks)."""
    schema = (built_app / "apps/api/prisma/schema.prisma").read_text()
    assert "@@map" not in schema, "schema.prisma maps a model to another table name: read the mapping"
    return set(re.findall(r"^model (\w+) \{", schema, re.M)), set(re.findall(r"^enum (\w+) \{", schema, re.M))


def test_migrations_apply_over_verified_tls_as_the_programs_user(
    built_app: Path, dev: Rendered, database: Database, tmp_path: Path
) -> None:
    conninfo, env = migration_target(dev, tmp_path, database)
    migrations = sorted((built_app / MIGRATIONS).glob("*/migration.sql"))
    assert len(migrations) >= 17, migrations  # 17 at the snapshot APP.md describes
    for migration in migrations:
        done = psql(conninfo, env, "-q", "-f", str(migration))
        assert done.returncode == 0, f"{migration.parent.name} failed:\n{done.stderr[-3000:]}"

    # The migrations need no superuser (they create no extension): the owner they act as is none.
    query = "SELECT session_user, current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    # pg_stat_ssl's row of the session is its login role's, which the owner may not read: as that role.
    tls = "SET ROLE NONE; SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    session = psql(conninfo, env, "-q", "-c", query, "-c", tls)
    assert session.returncode == 0, session.stderr
    user = urlsplit(_env(dev, "api-migrate")["DATABASE_URL"]).username
    # Logged in as the generation's login role, acting as the owner: the tables are the owner's.
    assert session.stdout.split() == [f"{user}|aixsss|f", "t"] and user == "aixsss_g0"

    tables, enums = schema_names(built_app)
    listed = psql(conninfo, env, "-c", "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert listed.returncode == 0, listed.stderr
    rows = dict(line.split("|") for line in listed.stdout.split())
    assert set(rows) == tables, f"missing {tables - set(rows)}, unexpected {set(rows) - tables}"
    # Owned by the owner, not the generation's role: every later generation (a member) may use
    # and migrate them after a rotation.
    assert set(rows.values()) == {"aixsss"}
    types = psql(conninfo, env, "-c", "SELECT typname FROM pg_type WHERE typtype = 'e'")
    assert set(types.stdout.split()) == enums


def test_a_connection_without_tls_is_refused(dev: Rendered, database: Database, tmp_path: Path) -> None:
    conninfo, env = migration_target(dev, tmp_path, database)
    plain = [c if not c.startswith("sslmode=") else "sslmode=disable" for c in conninfo]
    done = psql(plain, env, "-c", "SELECT 1")
    assert done.returncode != 0
    assert "no encryption" in done.stderr, done.stderr
    # The same connection with TLS is accepted: the refusal is about encryption only.
    assert psql(conninfo, env, "-c", "SELECT 1").stdout.split() == ["1"]


def test_control_a_certificate_name_the_server_lacks_is_refused(
    dev: Rendered, database: Database, tmp_path: Path
) -> None:
    # verify-full really checks the name: the same CA, another host name, no connection.
    conninfo, env = migration_target(dev, tmp_path, database)
    renamed = [c if not c.startswith("host=") else "host=not-postgres" for c in conninfo]
    done = psql(renamed, env, "-c", "SELECT 1")
    assert done.returncode != 0
    assert "does not match host name" in done.stderr, done.stderr
