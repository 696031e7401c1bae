"""The backup scheduler the Docker target runs beside PostgreSQL (pgbackrest.scheduler_script), run
for real: Debian's PostgreSQL and pgBackRest, moto's S3 behind TLS on loopback (conftest.py).

Started on a fresh database it creates the stanza, proves WAL reaches the repository, reports
healthy and takes the first full backup; started again it takes none and waits for the
configured hour; with a wrong key it never reports healthy. SIGTERM stops it at once. The script
is the rendered one; only its paths and port are relocated, like every generated file here.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import give_to, postgres_bin, relocate

from components.conf import pgbackrest

from .conftest import PG_USER, SETTINGS, Cluster
from .test_pitr import info

HOUR_UTC = (datetime.datetime.now(datetime.UTC).hour + 5) % 24  # hours away: no scheduled run in the test


class Scheduler:
    def __init__(self, process: subprocess.Popen[str], log: Path, mark: Path) -> None:
        self.process, self.log, self.mark = process, log, mark

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.process.poll() is None, f"the scheduler exited {self.process.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s:\n{self.text()}"
            time.sleep(0.2)


@contextmanager
def scheduler(cluster: Cluster, name: str, **env: str) -> Iterator[Scheduler]:
    """The rendered script, relocated (socket, port, health mark), as the postgres user."""
    mark = cluster.work / f"{name}.healthy"
    script = cluster.work / f"{name}.sh"
    script.write_text(
        relocate(
            pgbackrest.scheduler_script(SETTINGS, HOUR_UTC),
            {},
            {
                f"-h {SETTINGS.pg_socket_path} -p {SETTINGS.pg_port}": f"-h {cluster.socket_dir} -p {cluster.pg_port}",
                f"healthy={pgbackrest.HEALTHY_MARK}": f"healthy={mark}",
            },
        )
    )
    give_to(PG_USER, script)
    log = cluster.work / f"{name}.log"
    # The image has pg_isready and pgbackrest on PATH; here pg_isready is under the server's bin.
    path = f"{Path(postgres_bin('pg_isready')).parent}:{os.environ['PATH']}"
    with log.open("w") as out:
        # setpriv execs bash itself (runuser would stay the parent and answer SIGTERM on its own),
        # so the signal reaches the script as `docker stop` delivers it to PID 1.
        command = ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "bash", str(script)]
        process = subprocess.Popen(command if os.geteuid() == 0 else command[4:], stdout=out,
                                   stderr=subprocess.STDOUT, env=cluster.env(PATH=path, **env), text=True)  # fmt: skip
    try:
        yield Scheduler(process, log, mark)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def stop(s: Scheduler) -> float:
    """SIGTERM, as `docker stop` sends it; returns how long the scheduler took to exit."""
    started = time.monotonic()
    # bash's trap runs at once: the sleep is waited for with `wait`, which a signal interrupts.
    s.process.send_signal(signal.SIGTERM)
    assert s.process.wait(timeout=10) == 0, s.text()
    return time.monotonic() - started


def test_the_scheduler_checks_archiving_reports_healthy_and_takes_the_first_full_backup(cluster: Cluster) -> None:
    with cluster.running():
        with scheduler(cluster, "first") as s:
            s.wait_for("WAL archiving checked")
            assert s.mark.exists()
            s.wait_for("full backup done", timeout=180)
            s.wait_for("next backup at")
            # The next run is at the configured hour, today or tomorrow, in the future.
            when = re.search(r"next backup at (\S+)", s.text())
            assert when is not None
            at = datetime.datetime.fromisoformat(when.group(1).replace("Z", "+00:00"))
            now = datetime.datetime.now(datetime.UTC)
            assert (at.hour, at.minute, at.second) == (HOUR_UTC, 0, 0) and now < at <= now + datetime.timedelta(days=1)
            assert stop(s) < 3
        backups = info(cluster)["backup"]
        assert [b["type"] for b in backups] == ["full"]
        # Started again (a replaced container): the repository has a backup, so none is taken.
        with scheduler(cluster, "again") as s:
            s.wait_for("next backup at")
            assert "backup now" not in s.text() and s.mark.exists()
            stop(s)
        assert len(info(cluster)["backup"]) == 1


def test_with_a_repository_it_cannot_trust_the_scheduler_never_reports_healthy(cluster: Cluster) -> None:
    # The store's certificate checked against a CA that did not sign it (pgBackRest reads every
    # option from the environment too). moto accepts any key, so a wrong key proves nothing here.
    untrusted = {"PGBACKREST_REPO1_STORAGE_CA_FILE": str(cluster.pki.foreign_ca)}
    with cluster.running(), scheduler(cluster, "untrusted", **untrusted) as s:
        # The first attempt may also meet PostgreSQL's own archive-push holding the stanza's lock.
        s.wait_for("unable to verify certificate presented by")
        s.wait_for("the repository is not usable")
        assert not s.mark.exists()
        stop(s)
