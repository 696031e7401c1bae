"""Kubernetes' login roles (CloudNativePG managed roles, issue 12) on a real PostgreSQL: the
operator creates ``aixsss_g<N>`` as a member of the owner with a password (simulated here by
the superuser with the statements its role reconciler runs), the role sets its own session
default with postgres.act_as_owner_sql over TLS, and from then on its sessions act as the
owner; the previous generation, owning nothing, is dropped with a plain `DROP ROLE` (what
`ensure: absent` runs). The server is the dev stack's rendered one (servers.rendered_database), on PostgreSQL 15 and 16,
whose pg_hba.conf admits the owner's members as CloudNativePG's does (components/database.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import LiteralString, cast

import psycopg
import pytest
from rendering import rendered
from servers import LOOPBACK, Database, PostgresServer, rendered_database, superuser_psql

from components.conf import postgres
from offline.render import Rendered

OWNER = "aixsss"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("cnpg-logins"), "dev", "docker", show_secrets=True)


@pytest.fixture
def database(stack: Rendered, postgres_server: PostgresServer) -> Iterator[Database]:
    with rendered_database(stack, postgres_server) as db:
        yield db


def connect(db: Database) -> psycopg.Connection:
    return psycopg.connect(
        host=LOOPBACK, port=db.port, user=db.user, password=db.password, dbname=db.database,
        sslmode="verify-full", sslrootcert=str(db.ca), connect_timeout=5, autocommit=True,
    )  # fmt: skip


def managed_role(db: Database, name: str, password: str) -> Database:
    """What CloudNativePG's role reconciler does for `{name, login: true, inRoles: [aixsss],
    passwordSecret}` (internal/management/controller/roles/postgres.go: CREATE ROLE with the
    attributes, then GRANT of each inRoles), as the superuser; returns the role's login."""
    superuser_psql(db, f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD '{password}'")
    superuser_psql(db, f"GRANT {OWNER} TO {name}")
    return replace(db, user=name, password=password)


def act_as(owner: str) -> LiteralString:
    """The job's statement, as the program renders it (a trusted constant, not user input)."""
    return cast(LiteralString, postgres.act_as_owner_sql(owner))


def owners(db: Database) -> list[tuple[str, str]]:
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY 1"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_a_managed_login_role_sets_its_own_default_and_is_dropped_later(database: Database) -> None:
    one = managed_role(database, "aixsss_g1", "generation-one-password")
    with connect(one) as conn:
        # Before: its sessions act as itself (CloudNativePG set no default).
        assert conn.execute("SELECT session_user, current_user").fetchone() == ("aixsss_g1", "aixsss_g1")
        # The Kubernetes job's statement, as the role itself over TLS: no superuser needed.
        conn.execute(act_as(OWNER))
    with connect(one) as conn:
        assert conn.execute("SELECT session_user, current_user").fetchone() == ("aixsss_g1", OWNER)
        conn.execute("CREATE TABLE made_by_generation_one (id int)")
    assert owners(one) == [("made_by_generation_one", OWNER)]
    # The next generation, the same way; it may change what generation 1 made.
    two = managed_role(database, "aixsss_g2", "generation-two-password")
    with connect(two) as conn:
        conn.execute(act_as(OWNER))
    with connect(two) as conn:
        conn.execute("ALTER TABLE made_by_generation_one ADD COLUMN note text")
    # Disabled first, at the rotation after next (`login: false, disablePassword: true, inRoles:
    # []`: the reconciler's ALTER ROLE and REVOKE): its password no longer logs in.
    superuser_psql(database, "ALTER ROLE aixsss_g1 NOLOGIN PASSWORD NULL")
    superuser_psql(database, f"REVOKE {OWNER} FROM aixsss_g1")
    with pytest.raises(psycopg.OperationalError):
        connect(one)
    # ensure: absent one rotation later: it owns nothing, so a plain DROP ROLE (no REASSIGN
    # OWNED) succeeds, its session default going with it.
    superuser_psql(database, "DROP ROLE aixsss_g1")
    with pytest.raises(psycopg.OperationalError):
        connect(one)
    assert superuser_psql(database, "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r"
                          " ON r.oid = s.setrole WHERE r.rolname = 'aixsss_g1'").strip() in ("0",)  # fmt: skip
    assert owners(two) == [("made_by_generation_one", OWNER)]


def test_the_control_without_the_default_the_role_owns_what_it_makes_and_cannot_be_dropped(
    database: Database,
) -> None:
    """Without act_as_owner_sql the login role owns its tables, and the `DROP ROLE` of
    `ensure: absent` is refused: the measure above sees the difference."""
    one = managed_role(database, "aixsss_g1", "generation-one-password")
    with connect(one) as conn:
        conn.execute("CREATE TABLE made_by_generation_one (id int)")
    assert owners(one) == [("made_by_generation_one", "aixsss_g1")]
    refused = superuser_psql(database, "DROP ROLE aixsss_g1", check=False)
    assert "cannot be dropped because some objects depend on it" in refused, refused


def test_the_statement_alone_proves_nothing_a_new_session_must_act_as_the_owner(database: Database) -> None:
    """PostgreSQL accepts the default for a role the login role is not a member of (it checks
    membership only when a session applies it): so the Kubernetes job checks current_user in
    a new session, and a managed role missing `inRoles: [aixsss]`-like mistakes fail it."""
    superuser_psql(database, "CREATE ROLE elsewhere NOLOGIN")
    nine = managed_role(database, "aixsss_g9", "generation-nine-password")
    with connect(nine) as conn:
        conn.execute(act_as("elsewhere"))
    with connect(nine) as conn:
        # Silently not applied: the session acts as the login role itself.
        assert conn.execute("SELECT current_user").fetchone() == ("aixsss_g9",)
