"""Real servers on loopback for the generated configuration: start, wait, always stop."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from components.conf.nginx import UPSTREAM_SERVER
from components.load_balancer import ROUTES_DIR

LOOPBACK = "127.0.0.1"


# Ports free_port handed out in this process: the kernel may offer a port again as soon as the
# probing socket is closed, and two servers of one test given the same port collide (seen: the
# nginx exporter reading mtail's page as stub_status).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_accepts(port: int) -> Callable[[], bool]:
    """Ready when a TCP connection to ``port`` succeeds: enough for a server whose clients only
    ever use that port and that serves from the moment it listens (nginx)."""

    def probe() -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False

    return probe


def _wait_until_ready(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        # Ready and still ours: a server that lost its port to another process answers `ready`
        # through that process, then exits with a bind error.
        if ready() and process.poll() is None:
            return
        time.sleep(0.1)
    raise TimeoutError(f"server not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def as_user(user: str | None, command: list[str]) -> list[str]:
    """Root cannot run some servers (Postgres): run them as their own system user."""
    if user and os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *command]
    return command


def give_to(user: str | None, *paths: Path) -> None:
    if user and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for path in paths:
            for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
                os.chown(p, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in its own process group, wait until ``ready()``, stop the group on exit.

    ``ready`` must probe what the tests' clients use (the same socket, port and protocol): a
    listening TCP port says nothing about a Unix socket created later, or about a server still
    starting up behind it. The timeout is generous because CI machines are loaded; a ready
    server ends the wait at once.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        _wait_until_ready(ready, process, log, timeout)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops the SYNs of a burst of new upstream connections, which
    # then retry a second later: too slow for the rate-limit tests, which time what arrives.
    request_queue_size = 128


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[int]:
    """``handler`` answering on loopback ``port`` (a free one by default) from a thread, until
    the block ends; yields the port. The stub upstreams of the nginx tests."""
    server = _Server((LOOPBACK, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def nginx_running(
    binary: str, work: Path, conf: str, port: int, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """nginx running ``conf`` (written to ``work``, after `nginx -t` accepted it) until the block
    ends; ready when loopback ``port`` accepts. Yields its master process."""
    conf_path = work / "nginx.conf"
    conf_path.write_text(conf)
    command = [binary, "-e", "stderr", "-p", str(work), "-c", str(conf_path), "-g", "daemon off;"]
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    with running(command, ready=port_accepts(port), log=work / "nginx.log", env=env) as master:
        yield master


def nginx_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
    return tuple(int(x) for x in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())  # type: ignore[union-attr]


def deployed_copy(workload_dir: Path, into: Path) -> dict[str, Path]:
    """Copy a workload's rendered files into ``into``; map each deployed path to its copy."""
    paths = {}
    for source in workload_dir.rglob("*"):
        if source.is_file():
            deployed = "/" + str(source.relative_to(workload_dir))
            target = into / source.relative_to(workload_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            paths[deployed] = target
    return paths


def exporter_edits(text: str, stub_status: str | None = None, status_log: str | None = None) -> dict[str, str]:
    """relocate() edits for the edge's listeners for its exporters (monitoring.enabled): the
    stub_status listener and the status log's syslog destination, each moved to ``stub_status``
    / ``status_log`` or a free loopback port. Fixed ports would collide between the nginx
    instances the tests run at once."""
    from components.conf import exporters

    edits = {}
    listen = f"listen {exporters.STUB_STATUS_LISTEN};"
    if listen in text:
        edits[listen] = f"listen {stub_status or f'{LOOPBACK}:{free_port()}'};"
    syslog = f"syslog:server={exporters.STATUS_LOG_SERVER},"
    if syslog in text:
        edits[syslog] = f"syslog:server={status_log or f'{LOOPBACK}:{free_port()}'},"
    return edits


def edge_cache_edit() -> dict[str, str]:
    """relocate() edit for the edge's asset cache directory: one that nginx's workers (nobody,
    when the tests run as root) can reach, which pytest's private (0700) temp root is not; removed
    when the tests end."""
    from components.load_balancer import CACHE_DIR

    scratch = Path(tempfile.mkdtemp(prefix="aixsss-edge-cache-"))
    scratch.chmod(0o755)
    atexit.register(shutil.rmtree, scratch, True)
    return {f" {CACHE_DIR} ": f" {scratch}/cache "}


@dataclass(frozen=True)
class EdgePorts:
    """Where a relocated edge listens (http, https) and what it forwards to (api, web)."""

    http: int
    https: int
    api: int
    web: int


def edge_conf(
    edge_dir: Path,
    binary: str,
    work: Path,
    ports: EdgePorts,
    *,
    stub_status: str | None = None,
    status_log: str | None = None,
    extra: dict[str, str] | None = None,
    routes: Path | None = None,
) -> str:
    """A Docker stack's rendered edge nginx.conf (its workload's config directory ``edge_dir``)
    relocated into ``work`` and onto loopback for nginx ``binary``: its files, listeners,
    upstreams and resolver, its exporters' listeners (exporter_edits), its asset cache
    (edge_cache_edit), plus ``extra`` edits (each must be in the rendered text). The upstreams
    are the stubs on ``ports``, or with ``routes`` whatever the route files there name."""
    paths = deployed_copy(edge_dir, work / "files")
    text = paths["/etc/aixsss/nginx.conf"].read_text()
    edits = {
        **exporter_edits(text, stub_status, status_log),
        "listen 8080;": f"listen {LOOPBACK}:{ports.http};",
        "listen 8443 ssl;": f"listen {LOOPBACK}:{ports.https} ssl;",
        # Docker's edge takes its instances from the routes the platform writes (spec.Routes;
        # tests/test_routes_servers.py runs that): here each upstream is the stub on its port.
        f"include {ROUTES_DIR}/live/api/*.conf;": UPSTREAM_SERVER.format(address=f"{LOOPBACK}:{ports.api}"),
        f"include {ROUTES_DIR}/live/web/*.conf;": UPSTREAM_SERVER.format(address=f"{LOOPBACK}:{ports.web}"),
        # The stubs listen on loopback here; Docker's DNS server exists only inside containers.
        "resolver 127.0.0.11 ": f"resolver {LOOPBACK} ",
        " /tmp/": f" {work}/",
        **edge_cache_edit(),
    }
    version = nginx_version(binary)
    if version < (1, 25, 1):
        # Debian 12's nginx predates `http2 on;` (1.25.1, what the image runs): the same
        # switch in the older spelling. Nothing else differs.
        edits["    http2 on;\n"] = ""
        edits["listen 8443 ssl;"] = f"listen {LOOPBACK}:{ports.https} ssl http2;"
    if version < (1, 27, 3):
        # Nor has it `resolve` on upstream servers (1.27.3; the image runs 1.29). The upstreams
        # are literal loopback addresses here, so there is nothing to re-resolve; the real-daemon
        # tier (tests/realdocker) proves re-resolution with an nginx that has it.
        for upstream, port in (("api", ports.api), ("web", ports.web)):
            line = UPSTREAM_SERVER.format(address=f"{LOOPBACK}:{port}").replace(" resolve", "")
            edits[f"include {ROUTES_DIR}/live/{upstream}/*.conf;"] = line
    if routes is not None:
        for upstream in ("api", "web"):
            edits[f"include {ROUTES_DIR}/live/{upstream}/*.conf;"] = f"include {routes}/live/{upstream}/*.conf;"
    return relocate(text, paths, edits | (extra or {}))


def relocate(text: str, paths: dict[str, Path], extra: dict[str, str] | None = None) -> str:
    """The deployed text with each deployed file path pointed at its copy, plus ``extra`` edits.

    These are the only changes a test makes to a generated file: where files live on this
    machine and which loopback port a server binds; everything else runs as generated.
    """
    mapping = {deployed: str(copy) for deployed, copy in paths.items()} | (extra or {})
    for old in extra or {}:
        assert old in text, f"expected {old!r} in the generated file"
    # One pass: a replacement is never itself rewritten by a later one.
    pattern = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
    return re.sub(pattern, lambda m: mapping[m.group(0)], text)


# ----------------------------------------------------------------- rendered data servers
# Shared by tests/test_servers.py and tests/appcode (the application's own code against them).


@dataclass
class Cache:
    port: int
    password: str
    ca: Path
    log: Path


def redis_answers(cache: Cache) -> bool:
    """Ready when an authenticated TLS PING trusting the rendered CA gets its answer (a listening
    port alone may still be loading the AOF and answer LOADING). One try, no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host=LOOPBACK, port=cache.port, password=cache.password, socket_timeout=5,
                         socket_connect_timeout=5, ssl=True, ssl_ca_certs=str(cache.ca), ssl_cert_reqs="required",
                         retry=Retry(NoBackoff(), retries=0))  # fmt: skip
    try:
        with client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def rendered_redis(binary: str, config_dir: Path, work: Path, password: str) -> Iterator[Cache]:
    """redis-server running the rendered redis.conf of ``config_dir`` (a workload's rendered
    files), relocated into ``work``: it binds 127.0.0.1 on a free TLS port; nothing else changes.
    ``password``: the clients' (redis_client_password); the file holds only hashes."""
    paths = deployed_copy(config_dir, work / "files")
    port = free_port()
    (work / "data").mkdir()
    edits = {"bind * -::*": f"bind {LOOPBACK}", "tls-port 6379": f"tls-port {port}", "dir /data": f"dir {work}/data"}
    conf = relocate(paths["/etc/aixsss/redis.conf"].read_text(), paths, edits)
    (work / "redis.conf").write_text(conf)
    cache = Cache(port, password, paths["/etc/aixsss/tls/ca.crt"], work / "redis.log")
    with running([binary, str(work / "redis.conf")], ready=lambda: redis_answers(cache), log=cache.log):
        yield cache


@dataclass
class Database:
    port: int
    user: str
    database: str
    password: str
    ca: Path
    socket_dir: Path
    superuser: str = "postgres"  # the image's POSTGRES_USER: peer through the socket only


def superuser_psql(db: Database, query: str, *, user: str | None = None, check: bool = True) -> str:
    """``query`` through the server's socket as the server's OS user, which pg_ident.conf maps to
    the superuser (as the credentials jobs, pgBackRest and `docker exec ... psql` log in); ``user``:
    another role to ask for (refused: only the superuser logs in there). Unaligned, tuples only."""
    command = [postgres_bin("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(db.socket_dir),
               "-p", str(db.port), "-U", user or db.superuser, "-d", db.database, "-c", query]  # fmt: skip
    done = subprocess.run(as_user("postgres", command), capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"{query}: {done.stdout}{done.stderr}"
    return done.stdout if done.returncode == 0 else done.stderr


def run_psql_job(db: Database, job_dir: Path, entrypoints: list[str], env: Mapping[str, str]) -> str:
    """A credentials job as the Docker platform runs it (database._credentials_job): its psql
    command line with its script, as the server's OS user through the server's socket, with its
    environment; relocated to the test server's socket and port. Returns psql's output."""
    root = Path(tempfile.mkdtemp(prefix="aixsss-job-", dir=db.socket_dir.parent))
    paths = deployed_copy(job_dir, root)
    edits = {"/var/run/postgresql": str(db.socket_dir), "5432": str(db.port), **{k: str(v) for k, v in paths.items()}}
    command = [postgres_bin("psql"), *(edits.get(arg, arg) for arg in entrypoints[1:])]
    give_to("postgres", root)
    done = subprocess.run(as_user("postgres", command), env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def postgres_bin(name: str) -> str:
    from rendering import tool

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return tool(name, *found[-1:])


@dataclass(frozen=True)
class PostgresServer:
    """Where ``initdb`` and ``postgres`` come from: Debian's newest (``bin_dir`` None; 15 on
    Debian 12) or another build's ``bin`` (postgres16.py). Clients (psql, pg_isready) are always
    Debian's."""

    bin_dir: Path | None = None

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir else postgres_bin(name)

    @property
    def major(self) -> str:
        """The major version the server binary itself reports (``postgres --version``)."""
        reported = subprocess.run([self.binary("postgres"), "--version"], capture_output=True, text=True, check=True)
        found = re.search(r"\(PostgreSQL\) (\d+)", reported.stdout)
        assert found, reported.stdout
        return found.group(1)


DEBIAN_POSTGRES = PostgresServer()


def _postgres_accepts(pg_isready: str, hosts: list[str], port: int) -> Callable[[], bool]:
    """Ready when pg_isready exits 0 (accepting connections) for every host, at ``port``:
    a socket directory is the same Unix socket the fixture connects through, 127.0.0.1 the
    same TCP listener the tests use. Exit 1 means still starting up, 2 no answer yet."""

    def probe() -> bool:
        for host in hosts:
            done = subprocess.run([pg_isready, "-q", "-h", host, "-p", str(port), "-t", "5"], check=False)
            if done.returncode != 0:
                return False
        return True

    return probe


@contextlib.contextmanager
def rendered_postgres(
    config_dir: Path, env: Mapping[str, str], server: PostgresServer = DEBIAN_POSTGRES
) -> Iterator[Database]:
    """PostgreSQL running the rendered postgresql.conf and pg_hba.conf of ``config_dir``, as the
    postgres image starts it with the container's ``env`` (POSTGRES_USER, _PASSWORD, _DB,
    _INITDB_ARGS): initdb into a temp dir, the configured database created over the local
    socket. Relocated: listens on 127.0.0.1 at a free port, its socket in the temp dir.
    ``server``: whose initdb and postgres (PostgresServer)."""
    from psycopg import sql

    initdb, postgres = server.binary("initdb"), server.binary("postgres")
    user = "postgres"
    # Not under pytest's private (0700) temp root: the postgres user must reach these files.
    work = Path(tempfile.mkdtemp(prefix="aixsss-postgres-"))
    try:
        paths = deployed_copy(config_dir, work / "files")
        port = free_port()
        (work / "run").mkdir()
        edits = {
            "listen_addresses = '*'": f"listen_addresses = '{LOOPBACK}'",
            "port = 5432": f"port = {port}",
            "unix_socket_directories = '/var/run/postgresql'": f"unix_socket_directories = '{work}/run'",
        }
        conf = relocate(paths["/etc/aixsss/postgresql.conf"].read_text(), paths, edits)
        (work / "postgresql.conf").write_text(conf)
        (work / "pwfile").write_text(env["POSTGRES_PASSWORD"])
        work.chmod(0o755)
        give_to(user, work)
        # What the postgres image's entrypoint does with POSTGRES_USER/PASSWORD/INITDB_ARGS.
        init = [initdb, "-D", str(work / "data"), "-U", env["POSTGRES_USER"], f"--pwfile={work}/pwfile"]
        init += env["POSTGRES_INITDB_ARGS"].split()
        done = subprocess.run(as_user(user, init), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        command = as_user(user, [postgres, "-D", str(work / "data"), "-c", f"config_file={work}/postgresql.conf"])
        # Clients use both the Unix socket (below) and TCP on loopback (the tests). Postgres opens
        # its TCP port before it creates the socket file, and refuses connections on either while
        # it is still starting up: wait until each of the two answers "accepting connections".
        ready = _postgres_accepts(postgres_bin("pg_isready"), [str(work / "run"), LOOPBACK], port)
        # SIGINT: Postgres's fast shutdown (the data directory is thrown away anyway); the default
        # SIGTERM is its smart shutdown, which took 3 s of every run here.
        with running(command, ready=ready, log=work / "postgres.log", stop=signal.SIGINT):
            # The image creates POSTGRES_DB over the local socket, as its OS user: pg_hba.conf
            # admits the superuser (POSTGRES_USER) there by peer authentication only (pg_ident.conf).
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(env["POSTGRES_DB"])).as_string(None)
            local = [postgres_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", str(work / "run"), "-p", str(port),
                     "-U", env["POSTGRES_USER"], "-d", "postgres", "-c", create]  # fmt: skip
            done = subprocess.run(as_user(user, local), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            yield Database(port, env["POSTGRES_USER"], env["POSTGRES_DB"], env["POSTGRES_PASSWORD"],
                           paths["/etc/aixsss/tls/ca.crt"], work / "run", env["POSTGRES_USER"])  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def container_inputs(result: Any, pattern: str) -> dict[str, Any]:
    """The revealed inputs of the one rendered container whose name matches ``pattern``."""
    from harness import CONTAINER, reveal

    found = [c for c in result.deployment.of_type(CONTAINER) if re.fullmatch(pattern, c.name)]
    assert len(found) == 1, [c.name for c in found]
    return {"name": found[0].name, **reveal(found[0].inputs)}


def container_env(inputs: Mapping[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in inputs.get("envs") or [])


def run_rendered_job(result: Any, db: Database, job: str) -> str:
    """The rendered stack's run-once PostgreSQL job ``job`` (postgres-credentials,
    postgres-retire-logins) against ``db``, as the Docker platform runs it."""
    inputs = container_inputs(result, rf"{re.escape(job)}-[0-9a-f]{{12}}")
    (config_dir,) = (result.out / "config").glob(f"aixsss-*-{job}")
    return run_psql_job(db, config_dir, inputs["entrypoints"], container_env(inputs))


def redis_client_password(result: Any) -> str:
    """The Redis password the rendered stack's clients hold: the one in api's REDIS_URL."""
    from urllib.parse import unquote, urlsplit

    url = urlsplit(container_env(container_inputs(result, r"api(-1)?"))["REDIS_URL"])
    assert url.password
    return unquote(url.password)


def client_login(result: Any, db: Database) -> Database:
    """``db`` as the stack's clients log in: the role and password of the api's DATABASE_URL."""
    from urllib.parse import unquote, urlsplit

    url = urlsplit(container_env(container_inputs(result, r"api(-1)?"))["DATABASE_URL"])
    assert url.username and url.password
    return dataclasses.replace(db, user=unquote(url.username), password=unquote(url.password))


@contextlib.contextmanager
def rendered_database(result: Any, server: PostgresServer = DEBIAN_POSTGRES) -> Iterator[Database]:
    """The rendered Docker stack's PostgreSQL as a deploy leaves it: the server as its image
    starts it, then the credentials job; yielded as its clients log in (client_login)."""
    inputs = container_inputs(result, "postgres")
    (config_dir,) = (result.out / "config").glob("aixsss-*-postgres")
    with rendered_postgres(config_dir, container_env(inputs), server) as db:
        run_rendered_job(result, db, "postgres-credentials")
        yield client_login(result, db)
