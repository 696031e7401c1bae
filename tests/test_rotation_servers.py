"""secrets.rotation on a real PostgreSQL, step by step as a Docker deploy runs it (README:
Secrets and rotation): the server and its credentials job of generation 0; then generation 1's
credentials job, the clients' roll, and generation 1's retire job. A client that opens a new
connection every few milliseconds with the credentials the running clients hold must never be
refused; the old credentials must be refused at the end.

Server: Debian's PostgreSQL running the dev stack's rendered files (servers.rendered_database);
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
from servers import LOOPBACK, Database, client_login, rendered_database, run_rendered_job

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
def database(generations: list[Rendered]) -> Iterator[Database]:
    with rendered_database(generations[0]) as db:
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


def test_rotation_never_refuses_the_running_clients_and_retires_the_old_login(
    generations: list[Rendered], database: Database, tmp_path: Path
) -> None:
    zero, one = database, login(generations[1], database)
    assert (zero.user, one.user) == ("aixsss_g0", "aixsss_g1") and zero.password != one.password
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
        lingering = connect(zero)  # a session the old clients still hold
        time.sleep(0.5)
        # 2. The clients roll: replaced containers start with generation 1's credentials.
        clients.held = one
        time.sleep(0.5)
        # 3. Once api and worker run the new generation, the old login goes.
        run_rendered_job(generations[1], database, "postgres-retire-logins")
        time.sleep(0.5)
    window = time.monotonic() - started
    print(f"rotation: {clients.by_role} new connections in {window:.1f}s, {len(clients.refused)} refused")
    assert clients.by_role["aixsss_g0"] >= 5 and clients.by_role["aixsss_g1"] >= 5, clients.by_role
    assert clients.refused == []
    # Dropped: no longer a member of the owner, so pg_hba.conf has no line that admits it.
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba.conf rejects connection .* user \"aixsss_g0\""):
        connect(zero)
    with pytest.raises(psycopg.OperationalError):
        lingering.execute("SELECT 1")  # its session was ended
    with connect(one) as conn:
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname ~ '^aixsss_g' ORDER BY 1").fetchall()
        assert roles == [("aixsss_g1",)]


def test_the_measure_sees_a_lockout_when_the_old_login_goes_before_the_clients_roll(
    generations: list[Rendered], database: Database
) -> None:
    """The control: the same client, with generation 2's retire job run before the roll (what a
    rotation in place, ALTER ROLE on the clients' own role, amounts to) is refused."""
    run_rendered_job(generations[1], database, "postgres-credentials")
    one, two = login(generations[1], database), login(generations[2], database)
    with Client(held=one) as clients:
        run_rendered_job(generations[2], database, "postgres-credentials")
        run_rendered_job(generations[2], database, "postgres-retire-logins")
        time.sleep(0.3)
        clients.held = two
        time.sleep(0.1)
    assert clients.refused and all(r.startswith("aixsss_g1:") for r in clients.refused), clients.refused[:3]
    with connect(two) as conn:
        assert conn.execute("SELECT session_user").fetchone() == ("aixsss_g2",)
