"""secrets.rotation on a real Redis (README: Secrets and rotation): two password slots.

The dev stack rendered at secrets.rotation 0, 1 and 2, each from the previous one's state (as
successive `pulumi up`s). Debian's redis-server runs generation 0's rendered redis.conf, then is
restarted on generation 1's and 2's files with its data directory kept, as Docker replaces the
container when its config changes. Clients open a new authenticated TLS connection every few
milliseconds with the password they hold (REDIS_URL's): over a switch none may be refused; a
connection that finds no server (the restart) is counted apart, as the reconnect it is.

The HA path: a replica with generation 1's files (masterauth: the previous generation's slot)
syncs from a primary still on generation 0's, as in a StatefulSet roll; the control, masterauth
set to the current slot, is refused by that primary.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rendering import tool
from servers import LOOPBACK, Cache, deployed_copy, free_port, redis_answers, redis_client_password, relocate, running

from components.conf import redis_ha
from offline.render import Rendered, render

PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.fixture(scope="module")
def generations(tmp_path_factory: pytest.TempPathFactory) -> list[Rendered]:
    """The dev stack at secrets.rotation 0, 1, 2; each rendered from the previous one's state."""
    root = tmp_path_factory.mktemp("redis-rotation")
    done: list[Rendered] = []
    for n in range(3):
        out = root / f"g{n}"
        if done:
            shutil.copytree(root / f"g{n - 1}" / ".state", out / ".state")
        done.append(render("dev", "docker", out, show_secrets=True, settings={"secrets.rotation": str(n)}))
    return done


def slot_values(g: Rendered) -> tuple[str, str]:
    """Slot 0's and slot 1's passwords in this generation's state."""
    d = g.deployment
    return d.named("redisPassword", PASSWORD).outputs["result"]["value"], d.named(
        "redisPasswordSlot1", PASSWORD
    ).outputs["result"]["value"]


@dataclass
class Server:
    """redis-server on one port and one data directory, started on a generation's rendered
    files (relocated: loopback, the port, the data directory; nothing else changes)."""

    binary: str
    work: Path
    port: int = field(default_factory=free_port)

    def conf(self, g: Rendered, name: str, extra: str = "") -> Path:
        files = deployed_copy(g.out / "config/aixsss-dev-redis", self.work / name / "files")
        edits = {"bind * -::*": f"bind {LOOPBACK}", "tls-port 6379": f"tls-port {self.port}",
                 "dir /data": f"dir {self.work / 'data'}"}  # fmt: skip
        path = self.work / name / "redis.conf"
        path.write_text(relocate(files["/etc/aixsss/redis.conf"].read_text(), files, edits) + extra)
        return path

    def ca(self, name: str) -> Path:
        return self.work / name / "files/etc/aixsss/tls/ca.crt"

    @contextlib.contextmanager
    def run(self, conf: Path, password: str) -> Iterator[None]:
        """Until ready: an authenticated TLS PING with ``password`` answers."""
        (self.work / "data").mkdir(exist_ok=True)
        probe = Cache(self.port, password, self.ca(conf.parent.name), self.work / "unused.log")
        with running([self.binary, str(conf)], ready=lambda: redis_answers(probe), log=conf.parent / "redis.log"):
            yield


def connect(port: int, password: str, ca: Path) -> redis.Redis:
    return redis.Redis(host=LOOPBACK, port=port, password=password, ssl=True, ssl_ca_certs=str(ca),
                       ssl_cert_reqs="required", socket_timeout=2, socket_connect_timeout=2,
                       retry=Retry(NoBackoff(), retries=0))  # fmt: skip


@dataclass
class Clients:
    """New connections every few ms with one held password: accepted, refused (WRONGPASS,
    NOAUTH), unreachable (no server: the restart), and the longest stretch without a PING."""

    port: int
    password: str
    ca: Path
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    unreachable: int = 0
    longest_gap: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                with connect(self.port, self.password, self.ca) as c:
                    c.ping()
                self.accepted += 1
                now = time.monotonic()
                self.longest_gap, last = max(self.longest_gap, now - last), now
            except redis.AuthenticationError as error:
                self.refused.append(str(error))
            except redis.ResponseError as error:  # NOAUTH comes back as a plain error reply
                self.refused.append(str(error))
            except redis.ConnectionError:
                self.unreachable += 1
            time.sleep(0.005)

    def __enter__(self) -> Clients:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.accepted < 3 and not self.refused and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def attempts(self) -> int:
        return self.accepted + len(self.refused) + self.unreachable


def refused(port: int, password: str, ca: Path) -> bool:
    try:
        with connect(port, password, ca) as c:
            c.ping()
    except redis.AuthenticationError:
        return True
    return False


class Switch:
    """The server that runs now; ``to`` stops it (SIGTERM, as `docker stop`) and starts the
    next generation's, as Docker replaces a container whose config changed."""

    def __init__(self) -> None:
        self._current: contextlib.AbstractContextManager[None] | None = None

    def to(self, server: contextlib.AbstractContextManager[None] | None) -> None:
        if self._current is not None:
            self._current.__exit__(None, None, None)
            self._current = None
        if server is not None:
            server.__enter__()
            self._current = server


def test_a_rotation_refuses_no_client_and_then_only_the_generation_before_last(
    generations: list[Rendered], tmp_path: Path
) -> None:
    binary = tool("redis-server", "/usr/bin/redis-server")
    held = [redis_client_password(g) for g in generations]  # what api and worker hold (REDIS_URL)
    slots = [slot_values(g) for g in generations]
    # Clients hold slot N % 2; each rotation regenerated that slot only and kept the other.
    assert [held[n] == slots[n][n % 2] for n in range(3)] == [True, True, True]
    assert slots[1][0] == slots[0][0] and slots[1][1] != slots[0][1]
    assert slots[2][1] == slots[1][1] and slots[2][0] != slots[1][0]
    server = Server(binary, tmp_path)
    confs = [server.conf(g, f"g{n}") for n, g in enumerate(generations)]
    for conf in confs:  # the files carry hashes only
        assert not any(p in conf.read_text() for s in slots for p in s)
    ca = server.ca("g0")
    switch = Switch()
    try:
        switch.to(server.run(confs[0], held[0]))
        with connect(server.port, held[0], ca) as c:
            c.set("aixsss:rotation", "kept")
        assert refused(server.port, held[1], ca), "generation 1's password is new: generation 0 refuses it"

        # Generation 1: the server first (both slots), the clients still hold generation 0's.
        with Clients(server.port, held[0], ca) as old:
            time.sleep(1)
            started = time.monotonic()
            switch.to(server.run(confs[1], held[1]))
            back = time.monotonic() - started
            with Clients(server.port, held[1], ca) as new:  # the rolled clients
                time.sleep(1)
        print(
            f"generation 0 -> 1: old clients {old.attempts} attempts, {old.accepted} accepted, "
            f"{len(old.refused)} refused, {old.unreachable} found no server (restart {back:.2f}s, "
            f"longest gap {old.longest_gap:.2f}s); new clients {new.accepted} accepted, {len(new.refused)} refused"
        )
        assert old.refused == [] and new.refused == [], (old.refused[:3], new.refused[:3])
        # A loaded machine manages a few dozen TLS logins a second: a few on each side suffice.
        assert old.accepted >= 3 and new.accepted >= 3
        # Every try in the switch either logged in or found no server: a reconnect, not a refusal.
        assert old.attempts == old.accepted + old.unreachable

        # Generation 2: generation 1's clients are never refused; then generation 0's are.
        with Clients(server.port, held[1], ca) as running_clients:
            time.sleep(1)
            switch.to(server.run(confs[2], held[2]))
            time.sleep(1)
        print(
            f"generation 1 -> 2: clients {running_clients.attempts} attempts, {running_clients.accepted} accepted, "
            f"{len(running_clients.refused)} refused, {running_clients.unreachable} found no server"
        )
        assert running_clients.refused == [] and running_clients.accepted >= 3
        assert refused(server.port, held[0], ca), "the generation before last: its slot was overwritten"
        for password in held[1:]:
            with connect(server.port, password, ca) as c:
                assert c.get("aixsss:rotation") == b"kept"  # the data survived both restarts (AOF)
    finally:
        switch.to(None)


def test_the_measure_sees_a_lockout_when_the_server_accepts_only_the_new_slot(
    generations: list[Rendered], tmp_path: Path
) -> None:
    """The control: generation 1's file with only the clients' new password (requirepass's one
    password, what rotation was before the slots) refuses the clients still holding generation 0's."""
    binary = tool("redis-server", "/usr/bin/redis-server")
    held = [redis_client_password(g) for g in generations[:2]]
    server = Server(binary, tmp_path)
    zero = server.conf(generations[0], "g0")
    one = server.conf(generations[1], "g1")
    (user,) = [line for line in one.read_text().splitlines() if line.startswith("user default ")]
    only_new = f"user default on resetpass #{hashlib.sha256(held[1].encode()).hexdigest()} ~* &* +@all"
    assert only_new != user
    one.write_text(one.read_text().replace(user, only_new))
    switch = Switch()
    try:
        switch.to(server.run(zero, held[0]))
        with Clients(server.port, held[0], server.ca("g0")) as old:
            time.sleep(0.3)
            switch.to(server.run(one, held[1]))
            time.sleep(0.3)
    finally:
        switch.to(None)
    assert old.refused and all("invalid username-password" in r for r in old.refused), old.refused[:3]


def replication_link(port: int, password: str, ca: Path, *, within: float) -> str:
    """The replica's master_link_status once up, or its last value after ``within`` seconds."""
    deadline, status = time.monotonic() + within, ""
    while time.monotonic() < deadline:
        with connect(port, password, ca) as c:
            status = str(c.info("replication").get("master_link_status"))
        if status == "up":
            break
        time.sleep(0.2)
    return status


def test_a_rolled_replica_syncs_from_the_old_primary_with_the_previous_slot(
    generations: list[Rendered], tmp_path: Path
) -> None:
    """A StatefulSet roll restarts the replicas first: generation 1's replica replicates the
    primary still on generation 0's files. masterauth is the previous generation's slot (the
    program's choice, tests/test_redis_ha_wiring.py), which both accept; the current slot, the
    control, is generation 1's new password, which the old primary refuses."""
    binary = tool("redis-server", "/usr/bin/redis-server")
    zero, one = generations[0], generations[1]
    previous = {0: slot_values(zero)[1], 1: slot_values(one)[0]}  # slot (N + 1) % 2
    primary = Server(binary, tmp_path / "primary")
    conf = primary.conf(zero, "g0", redis_ha.render_node(redis_ha.NodeSettings(password=previous[0])))
    with primary.run(conf, redis_client_password(zero)):
        for name, masterauth in (("previous", previous[1]), ("current", redis_client_password(one))):
            replica = Server(binary, tmp_path / name)
            extra = redis_ha.render_node(redis_ha.NodeSettings(password=masterauth))
            conf = replica.conf(one, "g1", extra + f"replicaof {LOOPBACK} {primary.port}\n")
            with replica.run(conf, redis_client_password(one)):
                status = replication_link(replica.port, redis_client_password(one), replica.ca("g1"), within=8)
            assert status == ("up" if name == "previous" else "down"), (name, status)
            log = (conf.parent / "redis.log").read_text()
            assert ("WRONGPASS" in log) == (name == "current"), log[-2000:]
