"""secrets.rotation on a real PostgreSQL, step by step as a Docker deploy runs it (README:
Secrets and rotation): the server and its credentials job of generation 0; then generation 1's
credentials job and the clients' roll (no retire job: generation 0's clients still drain); then
generation 2's credentials job, roll and retire job. A client that opens a new connection every
few milliseconds with the credentials the running clients hold must never be refused; generation
0's credentials must be refused at the end, generation 1's still accepted.

Server: PostgreSQL 15 (Debian's) and 16 (tests/postgres16.py, the version the stacks deploy), each
running the dev stack's rendered files (servers.rendered_database);
jobs: the rendered psql command lines and scripts (servers.run_rendered_job).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    rendered_database,
    run_rendered_job,
    superuser_psql,
)

from offline.render import Rendered, render


@pytest.fixture(scope="module")
def generations(tmp_path_factory: pytest.TempPathFactory) -> list[Rendered]:
    """The dev stack at secrets.rotation 0, 1 and 2."""
    root = tmp_path_factory.mktemp("rotation")
    zero = rendered(root, "dev", "docker", show_secrets=True)
    later = [
        render("dev", "docker", root / f"g{n}", show_secrets=True, settings={"secrets.rotation": str(n)})
        for n in (1, 2)
    ]
    return [zero, *later]


@pytest.fixture
def database(generations: list[Rendered], postgres_server: PostgresServer) -> Iterator[Database]:
    with rendered_database(generations[0], postgres_server) as db:
        yield db


def connect(db: Database) -> psycopg.Connection:
    return psycopg.connect(
        host=LOOPBACK, port=db.port, user=db.user, password=db.password, dbname=db.database,
        sslmode="verify-full", sslrootcert=str(db.ca), connect_timeout=5,
    )  # fmt: skip


def login(generation: Rendered, db: Database) -> Database:
    """Generation's client credentials against the running server (its address and CA)."""
    client = client_login(generation, db)
    return replace(db, user=client.user, password=client.password)


@dataclass
class Client:
    """The running clients: a new connection (as a pool opens one) every few milliseconds with
    the credentials they hold now; ``held`` changes when they are replaced (the roll)."""

    held: Database
    attempts: int = 0
    by_role: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            held = self.held
            try:
                with connect(held) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError as error:
                self.refused.append(f"{held.user}: {str(error).strip()[:200]}")
            self.attempts += 1
            self.by_role[held.user] = self.by_role.get(held.user, 0) + 1
            time.sleep(0.005)

    def __enter__(self) -> Client:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        while self.attempts < 3:
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_rotation_never_refuses_the_running_clients_and_retires_the_login_before_the_previous(
    generations: list[Rendered], database: Database, tmp_path: Path
) -> None:
    zero, one, two = database, login(generations[1], database), login(generations[2], database)
    assert (zero.user, one.user, two.user) == ("aixsss_g0", "aixsss_g1", "aixsss_g2")
    # The first rotation retires nothing: generation 0's clients are still draining meanwhile.
    with pytest.raises(AssertionError):
        run_rendered_job(generations[1], database, "postgres-retire-logins")
    with connect(zero) as conn:
        conn.execute("CREATE TABLE made_by_generation_zero (id int)")
    started = time.monotonic()
    with Client(held=zero) as clients:
        # 1. The new generation's role, before any client uses it; the old one still logs in.
        run_rendered_job(generations[1], database, "postgres-credentials")
        with connect(one) as conn:
            assert conn.execute("SELECT session_user, current_user").fetchone() == ("aixsss_g1", "aixsss")
            # What generation 0 created is the owner's, so generation 1 may change it.
            conn.execute("ALTER TABLE made_by_generation_zero ADD COLUMN note text")
        lingering = connect(zero)  # a session generation 0's clients still hold
        time.sleep(0.5)
        # 2. The clients roll: new containers start with generation 1's credentials beside the
        # old ones, which finish their work with generation 0's.
        clients.held = one
        time.sleep(0.5)
        # 3. The next rotation: generation 2's role, the roll, then its retire job, while a
        # generation-1 client is still draining.
        run_rendered_job(generations[2], database, "postgres-credentials")
        draining = connect(one)
        clients.held = two
        time.sleep(0.5)
        run_rendered_job(generations[2], database, "postgres-retire-logins")
        time.sleep(0.5)
    window = time.monotonic() - started
    print(f"rotation: {clients.by_role} new connections in {window:.1f}s, {len(clients.refused)} refused")
    assert all(clients.by_role[g] >= 5 for g in ("aixsss_g0", "aixsss_g1", "aixsss_g2")), clients.by_role
    assert clients.refused == []
    # Generation 0 is dropped: no longer a member of the owner, so pg_hba.conf admits it nowhere.
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba.conf rejects connection .* user \"aixsss_g0\""):
        connect(zero)
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")  # its session was ended
    # Generation 1, the previous one, still works: its session and a new login.
    assert draining.execute("SELECT session_user").fetchone() == ("aixsss_g1",)
    with connect(one) as conn:
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname ~ '^aixsss_g' ORDER BY 1").fetchall()
        assert roles == [("aixsss_g1",), ("aixsss_g2",)]
    draining.close()


def test_the_measure_sees_a_lockout_when_a_login_goes_before_its_clients_roll(
    generations: list[Rendered], database: Database
) -> None:
    """The control: the same client still on generation 0 when generation 2's retire job runs
    (two rotations in one, its clients never rolled) is refused."""
    run_rendered_job(generations[1], database, "postgres-credentials")
    two = login(generations[2], database)
    with Client(held=database) as clients:
        run_rendered_job(generations[2], database, "postgres-credentials")
        run_rendered_job(generations[2], database, "postgres-retire-logins")
        time.sleep(0.3)
        clients.held = two
        time.sleep(0.1)
    assert clients.refused and all(r.startswith("aixsss_g0:") for r in clients.refused), clients.refused[:3]
    with connect(two) as conn:
        assert conn.execute("SELECT session_user").fetchone() == ("aixsss_g2",)


# What the credentials job leaves: who is a superuser, who may log in, who owns the app's data.
STATE = """SELECT string_agg(format('%s super=%s login=%s createdb=%s createrole=%s', rolname, rolsuper,
    rolcanlogin, rolcreatedb, rolcreaterole), ' ' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'
UNION ALL SELECT 'database ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()
UNION ALL SELECT 'public ' || pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"""


def test_the_clients_act_as_an_owner_that_is_no_superuser_and_cannot_log_in(
    generations: list[Rendered], database: Database
) -> None:
    """Issue 12: the image's bootstrap superuser is `postgres`, reachable by peer through the
    socket only; the owner the clients act as is a plain role that cannot log in, owning the
    app's database and schema. A SQL injection in the app runs as that owner."""
    state = superuser_psql(database, STATE)
    assert state.splitlines() == [
        "aixsss super=f login=f createdb=f createrole=f"
        " aixsss_g0 super=f login=t createdb=f createrole=f"
        " postgres super=t login=t createdb=t createrole=t",
        "database aixsss",
        "public aixsss",
    ]
    # The job is idempotent: run again, it leaves the same state.
    run_rendered_job(generations[0], database, "postgres-credentials")
    assert superuser_psql(database, STATE) == state
    with connect(database) as conn:
        assert conn.execute("SELECT session_user, current_user").fetchone() == ("aixsss_g0", "aixsss")
        supers = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname IN (session_user, current_user)")
        assert supers.fetchall() == [(False,), (False,)]
        # What migrations do, the owner may: its database, its schema.
        conn.execute("CREATE SCHEMA IF NOT EXISTS public")
        conn.execute("CREATE TABLE loot (line text)")
        # What an injection would try: a program run by the server, the server's files, the superuser.
        for attempt in (
            "COPY loot FROM PROGRAM 'id'",
            "COPY loot FROM '/etc/passwd'",
            "SELECT pg_read_file('postgresql.auto.conf')",
            "SET ROLE postgres",
            "ALTER ROLE aixsss SUPERUSER",
        ):
            # SQLSTATE 42501; PostgreSQL 16 says "permission denied to ...", 15 (Debian 12's, here)
            # "must be superuser or have privileges of ..." for COPY.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be superuser"):
                conn.execute(attempt)
            conn.rollback()
    bootstrap = container_env(container_inputs(generations[0], "postgres"))["POSTGRES_PASSWORD"]
    # Over TLS, neither the owner nor the superuser, even with the image's bootstrap password.
    for user, password in (("aixsss", database.password), ("postgres", bootstrap), ("postgres", database.password)):
        with pytest.raises(psycopg.OperationalError, match=rf'pg_hba.conf rejects connection .* user "{user}"'):
            connect(replace(database, user=user, password=password))
    # Through the socket, as the server's OS user: the superuser only, never the owner.
    refused = superuser_psql(database, "SELECT 1", user="aixsss", check=False)
    assert 'pg_hba.conf rejects connection for host "[local]", user "aixsss"' in refused
    assert superuser_psql(database, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user") == (
        "postgres|t\n"
    )
