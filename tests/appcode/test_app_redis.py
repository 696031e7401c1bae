"""The application's own Redis/BullMQ code, through the program's Redis path, to the rendered Redis.

The app cannot speak TLS to Redis (APP.md: its parseRedisUrl passes only host, port and password
to BullMQ), and the program's Redis listens on TLS only. So the program gives the api and the
worker ``REDIS_URL=redis://default:<pw>@127.0.0.1:6379`` and a tunnel beside each (nginx's
stream module, rendered as ``redis-tls.conf`` of ``api-redis-tls`` / ``worker-redis-tls``) that
listens there and opens verified TLS to Redis. Here, on loopback:

- redis-server runs the dev stack's rendered redis.conf (TLS only, ``port 0``, the default user's two password slots;
  servers.rendered_redis, shared with tests/test_servers.py);
- one nginx per tunnel runs its rendered redis-tls.conf, with the CA file delivered beside it;
- the producer is the api's compiled ``jobsProviders`` (its Queue and QueueEvents), the consumer
  a BullMQ Worker on exactly the connection options the worker's compiled parseRedisUrl returns
  (redis_roundtrip.mjs), each given its container's generated env.

Relocation, the only edits to generated text: file paths point at the copies; ports become free
loopback ports (Redis's TLS port, each tunnel's listener and the REDIS_URLs' port with it); the
tunnel's upstream host ``redis`` becomes 127.0.0.1 and Docker's resolver address 127.0.0.1,
while ``proxy_ssl_name redis`` stays as generated, so the certificate's name is still checked.
On nginx older than 1.27.3 (Debian 12 ships 1.22), ``resolve`` on an upstream server does not
exist: it is dropped (the upstream is a literal loopback address, nothing to re-resolve; the
image runs 1.29 and the real-daemon tier runs the tunnel as generated). Debian builds the stream
module as a dynamic module, so its ``load_module`` line is prepended (the image compiles it in).

Controls show each pass can fail: the same app code straight at Redis's TLS port (the program's
path before the tunnel) gets no job through; a tunnel given a CA that did not sign Redis's
certificate, or told to expect another name, refuses to connect.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rendering import config_file, rendered, tool
from servers import (
    LOOPBACK,
    Cache,
    deployed_copy,
    free_port,
    nginx_version,
    port_accepts,
    redis_client_password,
    relocate,
    rendered_redis,
)
from servers import running as running_server
from throwaway_pki import issue

from offline.engine import reveal
from offline.render import Rendered

from .build import node

CONTAINER = "docker:index/container:Container"
ROUNDTRIP = Path(__file__).with_name("redis_roundtrip.mjs")
CA = "/etc/aixsss/tls/ca.crt"
TUNNEL_CONF = "/etc/aixsss/redis-tls.conf"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
# The round trip through working tunnels takes well under a second; a refusal is given this long.
REFUSAL_SECONDS = 6


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("appcode-redis"), "dev", "docker", show_secrets=True)


@pytest.fixture(scope="module")
def cache(dev: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    binary = tool("redis-server", "/usr/bin/redis-server")
    with rendered_redis(
        binary, dev.out / "config/aixsss-dev-redis", tmp_path_factory.mktemp("redis"), redis_client_password(dev)
    ) as server:
        yield server


def app_env(dev: Rendered, service: str) -> dict[str, str]:
    container = dev.deployment.named(service, CONTAINER)
    return dict(e.split("=", 1) for e in reveal(container.inputs["envs"]))


def with_redis_port(env: dict[str, str], host: str, port: int) -> dict[str, str]:
    """``env`` with REDIS_URL's address moved (relocation); the rest as generated."""
    url = env["REDIS_URL"]
    address = re.search(r"@([^@/:]+):(\d+)$", url)
    assert address, f"REDIS_URL has no host:port: {url.split('@')[-1]}"
    return env | {"REDIS_URL": url[: address.start()] + f"@{host}:{port}"}


@dataclass
class Tunnel:
    port: int
    conf: str
    log: Path


def tunnel_workload(dev: Rendered, service: str) -> Path:
    conf = config_file(dev, f"aixsss-dev-{service}-redis-tls", "redis-tls.conf")
    return conf.parents[len(Path(TUNNEL_CONF).parts) - 2]  # the workload's directory, above /etc/aixsss


@contextlib.contextmanager
def tunnel(
    dev: Rendered, service: str, cache: Cache, work: Path, *, ca: Path | None = None, name: str | None = None
) -> Iterator[Tunnel]:
    """nginx running ``service``'s rendered redis-tls.conf, relocated (see the module docstring).

    Controls only: ``ca`` replaces the CA file delivered beside the conf, ``name`` the
    certificate name the conf expects (``proxy_ssl_name``)."""
    binary = tool("nginx", "/usr/sbin/nginx")
    paths = deployed_copy(tunnel_workload(dev, service), work / "files")
    if ca is not None:
        shutil.copyfile(ca, paths[CA])
    port = free_port()
    upstream = f"server {LOOPBACK}:{cache.port} resolve;"
    edits = {
        "listen 127.0.0.1:6379;": f"listen {LOOPBACK}:{port};",  # a free loopback port
        "server redis:6379 resolve;": upstream,  # the test's Redis: loopback, its TLS port
        "resolver 127.0.0.11 ": f"resolver {LOOPBACK} ",  # Docker's DNS exists only in containers
        " /tmp/": f" {work}/",  # the pid file
    }
    if nginx_version(binary) < (1, 27, 3):
        edits["server redis:6379 resolve;"] = upstream.replace(" resolve;", ";")
    if name is not None:
        edits["proxy_ssl_name redis;"] = f"proxy_ssl_name {name};"
    conf = relocate(paths[TUNNEL_CONF].read_text(), paths, edits)
    version = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
    if "--with-stream=dynamic" in version:
        assert STREAM_MODULE.is_file(), f"{binary} has stream as a module: install libnginx-mod-stream"
        conf = f"load_module {STREAM_MODULE};\n" + conf
    (work / "redis-tls.conf").write_text(conf)
    command = [binary, "-e", "stderr", "-p", str(work), "-c", str(work / "redis-tls.conf"), "-g", "daemon off;"]
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    log = work / "nginx.log"
    with running_server(command, ready=port_accepts(port), log=log):
        yield Tunnel(port, conf, log)


def roundtrip(built_app: Path, api: dict[str, str], worker: dict[str, str], timeout: float) -> dict[str, object]:
    """The app's producer and consumer, one job: redis_roundtrip.mjs's report."""
    done = subprocess.run(
        [node(), str(ROUNDTRIP), str(built_app), str(int(timeout * 1000))],
        input=json.dumps({"api": api, "worker": worker}),
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def foreign_ca(directory: Path) -> Path:
    """A CA certificate that did not sign anything of the stack's."""
    path = directory / "foreign-ca.crt"
    path.write_text(issue("not the stack's CA").cert_pem)
    return path


def test_generated_redis_url_points_at_the_tunnel_beside_each_service(dev: Rendered) -> None:
    # Read from two deployed artefacts: the app's env and its tunnel's config.
    for service in ("api", "worker"):
        url = app_env(dev, service)["REDIS_URL"]
        assert url.startswith("redis://") and url.endswith("@127.0.0.1:6379"), url.split("@")[-1]
        conf = (tunnel_workload(dev, service) / TUNNEL_CONF.lstrip("/")).read_text()
        assert "    listen 127.0.0.1:6379;\n" in conf
        for directive in ("proxy_ssl on;", "proxy_ssl_verify on;", f"proxy_ssl_trusted_certificate {CA};"):
            assert f"    {directive}\n" in conf, directive
        assert (tunnel_workload(dev, service) / CA.lstrip("/")).is_file(), f"no CA delivered beside {service}'s tunnel"


def test_app_job_goes_through_the_tunnels_and_comes_back(
    built_app: Path, dev: Rendered, cache: Cache, tmp_path: Path
) -> None:
    with (
        tunnel(dev, "api", cache, tmp_path / "api-tunnel") as api_tunnel,
        tunnel(dev, "worker", cache, tmp_path / "worker-tunnel") as worker_tunnel,
    ):
        api = with_redis_port(app_env(dev, "api"), LOOPBACK, api_tunnel.port)
        worker = with_redis_port(app_env(dev, "worker"), LOOPBACK, worker_tunnel.port)
        report = roundtrip(built_app, api, worker, timeout=30)
    assert report["ok"], report
    assert report["result"] == {"echoed": report["nonce"], "by": "app-worker-connection"}
    # The worker's own parseRedisUrl gave BullMQ the tunnel's address and the password.
    assert report["worker_connection"] == {"host": LOOPBACK, "port": worker_tunnel.port, "password": True}
    # Both tunnels verified Redis's certificate (nginx logs a failure at the conf's warn level).
    for t in (api_tunnel, worker_tunnel):
        assert "proxy_ssl_name redis;" in t.conf and "proxy_ssl_verify on;" in t.conf
        assert "SSL" not in t.log.read_text(), t.log.read_text()


def test_control_the_app_straight_at_tls_only_redis_gets_nothing_through(
    built_app: Path, dev: Rendered, cache: Cache
) -> None:
    # The program's path before the tunnel: the app at Redis's own (TLS-only) port, in plain text.
    before = cache.log.read_text().count("wrong version number")
    api = with_redis_port(app_env(dev, "api"), LOOPBACK, cache.port)
    worker = with_redis_port(app_env(dev, "worker"), LOOPBACK, cache.port)
    report = roundtrip(built_app, api, worker, timeout=REFUSAL_SECONDS)
    assert not report["ok"], report
    assert report["errors"] == ["ECONNRESET"], report  # refused, not merely slow
    # Redis read the app's plain-text RESP as a broken TLS handshake.
    assert cache.log.read_text().count("wrong version number") > before, cache.log.read_text()[-2000:]


def test_control_a_tunnel_trusting_another_ca_refuses(
    built_app: Path, dev: Rendered, cache: Cache, tmp_path: Path
) -> None:
    other = foreign_ca(tmp_path)
    with (
        tunnel(dev, "api", cache, tmp_path / "api-tunnel", ca=other) as api_tunnel,
        tunnel(dev, "worker", cache, tmp_path / "worker-tunnel", ca=other) as worker_tunnel,
    ):
        api = with_redis_port(app_env(dev, "api"), LOOPBACK, api_tunnel.port)
        worker = with_redis_port(app_env(dev, "worker"), LOOPBACK, worker_tunnel.port)
        report = roundtrip(built_app, api, worker, timeout=REFUSAL_SECONDS)
        log = api_tunnel.log.read_text()
    assert not report["ok"], report
    assert "upstream SSL certificate verify error" in log, log


def test_control_a_tunnel_expecting_another_name_refuses(
    built_app: Path, dev: Rendered, cache: Cache, tmp_path: Path
) -> None:
    # Redis's certificate names redis, localhost and 127.0.0.1; the tunnel is told to expect
    # postgres (a name of the same CA's other server): the name check, not the CA, refuses.
    with (
        tunnel(dev, "api", cache, tmp_path / "api-tunnel", name="postgres") as api_tunnel,
        tunnel(dev, "worker", cache, tmp_path / "worker-tunnel", name="postgres") as worker_tunnel,
    ):
        api = with_redis_port(app_env(dev, "api"), LOOPBACK, api_tunnel.port)
        worker = with_redis_port(app_env(dev, "worker"), LOOPBACK, worker_tunnel.port)
        report = roundtrip(built_app, api, worker, timeout=REFUSAL_SECONDS)
        log = api_tunnel.log.read_text()
    assert not report["ok"], report
    assert 'upstream SSL certificate does not match "postgres"' in log, log
