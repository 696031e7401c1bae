"""A real pgBackRest repository for the backup tests: an S3 server on loopback behind TLS, and the
rendered pgbackrest.conf and postgresql.conf relocated onto this machine.

- The S3 server is moto's server mode (PyPI ``moto[s3,server]``, pinned in requirements-dev.txt):
  pure Python, no daemon or download, and it serves TLS with a certificate and key we give it
  (``--ssl-cert``/``--ssl-key``). The certificate is issued here by a throwaway CA for
  ``localhost``; pgBackRest verifies it against that CA file (``repo1-storage-ca-file``), as it
  verifies the stack's object store against the stack's CA.
- PostgreSQL is Debian's (``/usr/lib/postgresql/<major>/bin``), pgBackRest Debian's
  ``pgbackrest``, both run as the ``postgres`` user (root may not run postgres), as in
  tests/servers.py. Missing ones skip here and fail under CI (rendering.tool).
- The configuration comes from the renderers the program uses (components.conf.pgbackrest and
  components.conf.postgres, with the Database component's paths) and is relocated by
  servers.relocate: file paths to copies under a temp dir, the store's name and port to the
  loopback server, PostgreSQL's port and socket. Nothing else is edited.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rendering import tool
from servers import (
    LOOPBACK,
    _postgres_accepts,
    as_user,
    free_port,
    give_to,
    port_accepts,
    postgres_bin,
    relocate,
    running,
)
from throwaway_pki import issue

from components import database
from components.conf import pgbackrest, postgres
from components.object_store import API_PORT
from components.service import CA_PATH, TLS_DIR

PG_USER = "postgres"  # the OS user; the database superuser (the image's POSTGRES_USER) has its name
BUCKET = "aixsss-backups"
# Production-shaped settings: the object store's DNS name and API port, the stack's CA path; the
# test moves only these (and file paths) onto loopback.
STORE_HOST = "minio"
SETTINGS = pgbackrest.PgBackRestSettings(s3_endpoint=STORE_HOST, s3_port=API_PORT, s3_bucket=BUCKET, ca_file=CA_PATH,
                                         archive_timeout_seconds=60)  # fmt: skip
# What the postgres image's entrypoint gets (components/database.py).
INITDB_ARGS = "--auth-local=scram-sha-256 --auth-host=scram-sha-256"


# ------------------------------------------------------------------------------ certificates


@dataclass
class Pki:
    ca: Path  # the throwaway CA that signed the S3 server's and PostgreSQL's certificates
    foreign_ca: Path  # a CA that signed nothing here (negative control)
    cert: Path
    key: Path


def make_pki(into: Path) -> Pki:
    into.mkdir(parents=True, exist_ok=True)
    ca = issue("aixsss backup test CA")
    server = issue("localhost", ca=ca)
    paths = Pki(into / "ca.crt", into / "foreign-ca.crt", into / "server.crt", into / "server.key")
    for path, text in ((paths.ca, ca.cert_pem), (paths.foreign_ca, issue("some other CA").cert_pem),
                       (paths.cert, server.cert_pem), (paths.key, server.key_pem)):  # fmt: skip
        path.write_text(text)
    paths.key.chmod(0o600)
    return paths


# ------------------------------------------------------------------------------ S3 over TLS


@dataclass
class Store:
    port: int
    key: str
    key_secret: str
    log: Path


def _store_answers(port: int, ca: Path):
    def probe() -> bool:
        import http.client

        context = ssl.create_default_context(cafile=str(ca))
        try:
            conn = http.client.HTTPSConnection("localhost", port, timeout=2, context=context)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

    return probe


NGINX_CONF = """\
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    server {{
        listen {loopback}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {{
            proxy_pass http://{loopback}:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextlib.contextmanager
def s3_server(pki: Pki, work: Path) -> Iterator[Store]:
    """moto's S3 on plain HTTP at a loopback port, behind nginx terminating TLS with the
    throwaway CA's certificate for ``localhost`` (the name pgBackRest connects to and verifies).

    Why nginx in front: moto's own ``--ssl-cert`` mode (werkzeug) answers ``Connection: close``
    and closes the TLS connection without a close_notify; OpenSSL 3 in pgBackRest reports that
    as "unexpected eof while reading" and every PUT failed. nginx (Debian's, the one the edge
    tests already run) does TLS properly, as the stack's object store does."""
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("moto[s3,server] is not installed (requirements-dev.txt); CI must run this test")
        pytest.skip("moto[s3,server] is not installed (requirements-dev.txt)")
    nginx = tool("nginx", "/usr/sbin/nginx")

    upstream, port = free_port(), free_port()
    moto_command = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(upstream)]
    (work / "nginx-tmp").mkdir()
    (work / "nginx-tmp").chmod(0o777)
    conf = work / "s3-nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, loopback=LOOPBACK, port=port, upstream=upstream, cert=pki.cert,
                                      key=pki.key))  # fmt: skip
    nginx_command = [nginx, "-e", "stderr", "-p", str(work), "-c", str(conf), "-g", "daemon off;"]
    store = Store(port, "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30), work / "s3.log")
    with running(moto_command, ready=port_accepts(upstream), log=store.log), \
            running(nginx_command, ready=_store_answers(port, pki.ca), log=work / "s3-nginx.log"):  # fmt: skip
        client = boto3.client("s3", endpoint_url=f"https://localhost:{port}", verify=str(pki.ca),
                              aws_access_key_id=store.key, aws_secret_access_key=store.key_secret,
                              region_name=SETTINGS.s3_region)  # fmt: skip
        # pgBackRest does not create buckets (its S3 guide): the bucket exists beforehand.
        client.create_bucket(Bucket=BUCKET)
        yield store


# ------------------------------------------------------------------------------ PostgreSQL + pgBackRest


@dataclass
class Cluster:
    """One relocated PostgreSQL installation with its pgBackRest configuration."""

    work: Path
    store: Store
    pki: Pki
    pg_port: int
    password: str
    conf: Path  # relocated postgresql.conf
    backrest_conf: Path  # relocated pgbackrest.conf
    backrest_text: str  # as rendered, before relocation
    socket_dir: Path
    data: Path  # pg1-path
    logs: list[Path] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """What the container's env would carry: the keys, never in a file (the database is
        reached through its socket as the superuser, by peer authentication: no password)."""
        return (
            os.environ
            | {
                "PGBACKREST_CONFIG": str(self.backrest_conf),
                pgbackrest.ENV_KEY: self.store.key,
                pgbackrest.ENV_KEY_SECRET: self.store.key_secret,
            }
            | extra
        )

    def backrest(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        command = as_user(PG_USER, [tool("pgbackrest", "/usr/bin/pgbackrest"), f"--stanza={SETTINGS.stanza}", *args])
        done = subprocess.run(command, capture_output=True, text=True, env=env or self.env(), timeout=timeout)
        if check:
            assert done.returncode == 0, f"pgbackrest {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done

    def stanza_create(self) -> None:
        """``stanza-create``, retried while the archiver's own archive-push (failing until the
        stanza exists, and retried by PostgreSQL) holds the stanza's lock, as on a first start."""
        deadline = time.monotonic() + 30
        while True:
            done = self.backrest("stanza-create", check=False)
            if done.returncode == 0 or "unable to acquire lock" not in done.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert done.returncode == 0, f"stanza-create: {done.returncode}\n{done.stdout}{done.stderr}"

    def initdb(self, user: str, database_name: str) -> None:
        pwfile = self.work / "pwfile"
        pwfile.write_text(self.password)
        give_to(PG_USER, pwfile)
        init = [postgres_bin("initdb"), "-D", str(self.data), "-U", user, f"--pwfile={pwfile}", *INITDB_ARGS.split()]
        done = subprocess.run(as_user(PG_USER, init), capture_output=True, text=True)
        pwfile.unlink()
        assert done.returncode == 0, done.stderr
        from psycopg import sql

        with self.running(), self.connect("postgres") as conn:
            conn.autocommit = True
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database_name)))

    @contextlib.contextmanager
    def running(self, data: Path | None = None) -> Iterator[None]:
        """postgres on ``data`` (default pg1-path) with the relocated config, until the block ends
        (then a fast shutdown, the image's STOPSIGNAL SIGINT)."""
        data = data or self.data
        log = self.work / f"postgres-{len(self.logs)}.log"
        self.logs.append(log)
        command = as_user(PG_USER, [postgres_bin("postgres"), "-D", str(data), "-c", f"config_file={self.conf}"])
        ready = _postgres_accepts(postgres_bin("pg_isready"), [str(self.socket_dir)], self.pg_port)
        with running(command, ready=ready, log=log, env=self.env(), timeout=90, stop=signal.SIGINT) as process:
            yield
        assert process.returncode == 0, log.read_text()[-3000:]

    def connect(self, dbname: str = database.DATABASE):
        import psycopg

        # Peer authentication: the relocated pg_ident.conf maps this test's OS user to the superuser
        # too (pgBackRest's pg1-user, as the image's postgres user).
        return psycopg.connect(host=str(self.socket_dir), port=self.pg_port, user=database.SUPERUSER, dbname=dbname,
                               connect_timeout=10)  # fmt: skip


def render_cluster(work: Path, store: Store, pki: Pki) -> Cluster:
    """Render postgresql.conf, pg_hba.conf and pgbackrest.conf as the program does, then relocate."""
    files = work / "files"
    tls = files / TLS_DIR.lstrip("/")
    tls.mkdir(parents=True)
    shutil.copy(pki.ca, tls / "ca.crt")
    shutil.copy(pki.cert, tls / "server.crt")
    shutil.copy(pki.key, tls / "server.key")
    pg_settings = postgres.PostgresSettings(
        cert_path=f"{TLS_DIR}/server.crt",
        key_path=f"{TLS_DIR}/server.key",
        hba_path="/etc/aixsss/pg_hba.conf",
        max_connections=20,
        shared_buffers_mb=32,
        archive=tuple(pgbackrest.archive_lines(SETTINGS)),
    )
    (files / "etc/aixsss/pg_hba.conf").write_text(postgres.render_hba(pg_settings))
    # The image's postgres user is the superuser through the socket; the test process (root, not
    # that user) reads and writes the database the same way, so the relocated map admits it as well.
    ident = postgres.render_ident(pg_settings)
    ident += f"{postgres.SUPERUSER_MAP}  {getpass.getuser()}  {pg_settings.superuser}\n"
    (files / "etc/aixsss/pg_ident.conf").write_text(ident)
    paths = {
        str(CA_PATH): tls / "ca.crt",
        f"{TLS_DIR}/server.crt": tls / "server.crt",
        f"{TLS_DIR}/server.key": tls / "server.key",
        pg_settings.hba_path: files / "etc/aixsss/pg_hba.conf",
        pg_settings.ident_path: files / "etc/aixsss/pg_ident.conf",
    }
    pg_port = free_port()
    socket_dir, data, spool, lock = work / "run", work / "pgdata", work / "spool", work / "lock"
    for d in (socket_dir, spool, lock):
        d.mkdir()
    conf_text = relocate(postgres.render_conf(pg_settings), paths, {
        "listen_addresses = '*'": f"listen_addresses = '{LOOPBACK}'",
        "port = 5432": f"port = {pg_port}",
        f"unix_socket_directories = '{pg_settings.unix_socket_dir}'": f"unix_socket_directories = '{socket_dir}'",
    })  # fmt: skip
    backrest_text = pgbackrest.render(SETTINGS)
    relocated = relocate(backrest_text, paths, {
        f"repo1-s3-endpoint={STORE_HOST}\n": "repo1-s3-endpoint=localhost\n",
        f"repo1-storage-port={API_PORT}\n": f"repo1-storage-port={store.port}\n",
        f"pg1-path={SETTINGS.pg_path}\n": f"pg1-path={data}\n",
        f"pg1-socket-path={SETTINGS.pg_socket_path}\n": f"pg1-socket-path={socket_dir}\n",
        f"pg1-port={SETTINGS.pg_port}\n": f"pg1-port={pg_port}\n",
        f"spool-path={SETTINGS.spool_path}\n": f"spool-path={spool}\n",
        f"lock-path={SETTINGS.lock_path}\n": f"lock-path={lock}\n",
    })  # fmt: skip
    (work / "postgresql.conf").write_text(conf_text)
    (work / "pgbackrest.conf").write_text(relocated)
    (tls / "server.key").chmod(0o600)
    work.chmod(0o755)
    give_to(PG_USER, work)
    return Cluster(work, store, pki, pg_port, secrets.token_urlsafe(18), work / "postgresql.conf",
                   work / "pgbackrest.conf", backrest_text, socket_dir, data)  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh database (the image's initdb + POSTGRES_DB) with its stanza created and checked,
    the repository in a TLS S3 store on loopback. Not under pytest's private (0700) temp root:
    the postgres user must reach these files."""
    tool("pgbackrest", "/usr/bin/pgbackrest")
    postgres_bin("postgres")
    work = Path(tempfile.mkdtemp(prefix="aixsss-backup-"))
    work.chmod(0o755)
    try:
        pki = make_pki(work / "pki")
        with s3_server(pki, work) as store:
            c = render_cluster(work / "pg", store, pki)
            c.initdb(database.SUPERUSER, database.DATABASE)
            yield c
    finally:
        shutil.rmtree(work, ignore_errors=True)
