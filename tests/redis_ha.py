"""Helpers for tests/test_redis_failover.py: a real HA Redis set on loopback, rendered by
components/conf/redis_ha.py, and the application's own BullMQ code enqueueing through it.

Everything runs on 127.0.0.1: three redis-server nodes (the dev stack's rendered redis.conf,
relocated, plus ``render_node``; started by ``render_node_start``), three Sentinels
(``render_sentinel`` started by ``render_sentinel_start``), one HAProxy (``render_haproxy``) and,
in front, the rendered TLS tunnels of api and worker (nginx stream; tests/appcode's helper).
The node certificate is the dev stack's Redis certificate (names ``redis``, ``localhost``,
``127.0.0.1``, signed by the stack CA), used by all three nodes and the Sentinels, as one
certificate would be in Kubernetes.

Relocation, the only edits: hosts become 127.0.0.1, ports free loopback ports, file paths the
copies in the test's directory. Timings (Sentinel's down-after, HAProxy's check interval) are the
renderers' defaults, as deployed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from servers import LOOPBACK, Cache, deployed_copy, free_port, port_accepts, redis_answers, relocate, running

from components.conf import redis_ha

CA = "/etc/aixsss/tls/ca.crt"
CERT = "/etc/aixsss/tls/server.crt"
KEY = "/etc/aixsss/tls/server.key"
SENTINEL_PASSWORD = "sentinel-test-password-only"  # a throwaway: the stack has no Sentinel yet


def client(port: int, password: str, ca: Path, *, timeout: float = 2) -> redis.Redis:
    """One-shot TLS client (no retries: the tests poll themselves)."""
    return redis.Redis(host=LOOPBACK, port=port, password=password, decode_responses=True, ssl=True,
                       ssl_ca_certs=str(ca), ssl_cert_reqs="required", socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), retries=0))  # fmt: skip


def info_replication(port: int, password: str, ca: Path) -> dict[str, str]:
    with client(port, password, ca) as c:
        info = c.info("replication")
    # redis-py parses "slave0:ip=…,state=online" into a dict: back to INFO's own text.
    return {str(k): ",".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else str(v)
            for k, v in info.items()}  # type: ignore[union-attr]  # fmt: skip


def replicas_online(port: int, password: str, ca: Path) -> int:
    info = info_replication(port, password, ca)
    return sum("state=online" in v for k, v in info.items() if k.startswith("slave"))


@dataclass
class Node:
    index: int
    port: int
    log: Path
    script: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class HaSet:
    work: Path
    password: str
    ca: Path
    nodes: list[Node]
    sentinel_ports: list[int]
    proxy_port: int
    stats_port: int
    redis_server: str
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # ------------------------------------------------------------------ views
    def sentinel(self, port: int) -> redis.Redis:
        return client(port, SENTINEL_PASSWORD, self.ca)

    def primary_by_sentinel(self, port: int) -> int | None:
        """The primary's port as one Sentinel names it (None if it cannot be asked)."""
        try:
            with self.sentinel(port) as s:
                answer = s.execute_command("SENTINEL", "get-master-addr-by-name", redis_ha.DEFAULT_MASTER_NAME)
        except redis.RedisError:
            return None
        return int(answer[1]) if answer else None

    def sentinel_view(self, port: int) -> dict[str, str]:
        with self.sentinel(port) as s:
            flat: Any = s.execute_command("SENTINEL", "master", redis_ha.DEFAULT_MASTER_NAME)
        if isinstance(flat, dict):
            return {str(k): str(v) for k, v in flat.items()}
        return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}

    def proxy_status(self) -> dict[str, str]:
        """HAProxy's own view (stats CSV): server name -> UP / DOWN / ..."""
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.stats_port}/stats;csv", timeout=2) as r:
            rows = csv.DictReader(io.StringIO(r.read().decode().lstrip("# ")))
            return {row["svname"]: row["status"] for row in rows if row["pxname"] == "redis_primary"
                    and row["svname"] not in ("FRONTEND", "BACKEND")}  # fmt: skip

    def node_by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    # ------------------------------------------------------------------ processes
    def start_node(self, node: Node) -> None:
        cache = Cache(node.port, self.password, self.ca, node.log)
        node.process = self.stack.enter_context(
            running(["sh", str(node.script)], ready=lambda: redis_answers(cache), log=node.log, timeout=30)
        )

    def kill(self, node: Node) -> float:
        """kill -9 (the pod's process dies with no goodbye); returns the wall-clock time."""
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGKILL)
        killed = time.time()
        node.process.wait(timeout=5)
        return killed


def start_set(
    work: Path, redis_config_dir: Path, password: str, redis_server: str, redis_cli: str, haproxy: str
) -> HaSet:
    """The three nodes, three Sentinels and HAProxy, each waited for as its clients use it;
    ``password`` is the clients' (the rendered file holds only hashes), also masterauth here.
    The caller closes ``ha.stack`` (every process is stopped)."""
    files = deployed_copy(redis_config_dir, work / "files")
    ca = files[CA]
    node_ports = [free_port() for _ in range(3)]
    sentinel_ports = [free_port() for _ in range(3)]
    proxy_port, stats_port = free_port(), free_port()
    nodes_addr = tuple(redis_ha.Address(LOOPBACK, p) for p in node_ports)
    sentinels_addr = tuple(redis_ha.Address(LOOPBACK, p) for p in sentinel_ports)
    base = files["/etc/aixsss/redis.conf"].read_text()

    nodes = []
    for i, port in enumerate(node_ports):
        d = work / f"node{i}"
        (d / "data").mkdir(parents=True)
        edits = {"bind * -::*": f"bind {LOOPBACK}", "tls-port 6379": f"tls-port {port}", "dir /data": f"dir {d}/data"}
        conf = relocate(base, files, edits) + redis_ha.render_node(redis_ha.NodeSettings(password=password))
        (d / "redis.conf.template").write_text(conf)
        script = redis_ha.render_node_start(
            redis_ha.NodeStartSettings(
                first_node=nodes_addr[0], sentinels=sentinels_addr, sentinel_password=SENTINEL_PASSWORD,
                ca_path=str(ca), conf_template=str(d / "redis.conf.template"), conf_path=str(d / "redis.conf"),
                self_host=LOOPBACK, self_port=str(port), redis_server=redis_server, redis_cli=redis_cli,
            )
        )  # fmt: skip
        (d / "start.sh").write_text(script)
        nodes.append(Node(i, port, d / "redis.log", d / "start.sh"))

    ha = HaSet(work, password, ca, nodes, sentinel_ports, proxy_port, stats_port, redis_server)
    try:
        for node in nodes:
            ha.start_node(node)
        for i, port in enumerate(sentinel_ports):
            d = work / f"sentinel{i}"
            d.mkdir()
            conf = redis_ha.render_sentinel(
                redis_ha.SentinelSettings(
                    redis_password=password, sentinel_password=SENTINEL_PASSWORD, monitor=nodes_addr[0],
                    cert_path=str(files[CERT]), key_path=str(files[KEY]), ca_path=str(ca), port=port,
                    bind=LOOPBACK, data_dir=str(d),
                )
            )  # fmt: skip
            (d / "sentinel.conf.template").write_text(conf)
            script = redis_ha.render_sentinel_start(
                redis_ha.SentinelStartSettings(
                    peers=sentinels_addr, sentinel_password=SENTINEL_PASSWORD, ca_path=str(ca),
                    conf_template=str(d / "sentinel.conf.template"), conf_path=str(d / "sentinel.conf"),
                    self_host=LOOPBACK, self_port=str(port), redis_server=redis_server, redis_cli=redis_cli,
                )
            )  # fmt: skip
            (d / "start.sh").write_text(script)
            ready = _sentinel_answers(port, ca)
            ha.stack.enter_context(running(["sh", str(d / "start.sh")], ready=ready, log=d / "sentinel.log"))
        cfg = redis_ha.render_haproxy(
            redis_ha.ProxySettings(
                redis_password=password, nodes=nodes_addr, ca_path=str(ca), server_name="redis",
                port=proxy_port, bind=LOOPBACK, stats_port=stats_port,
            )
        )  # fmt: skip
        (work / "haproxy.cfg").write_text(cfg)
        checked = subprocess.run([haproxy, "-c", "-f", str(work / "haproxy.cfg")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        command = [haproxy, "-db", "-f", str(work / "haproxy.cfg")]
        ha.stack.enter_context(running(command, ready=port_accepts(stats_port), log=work / "haproxy.log"))
        wait_for(lambda: ha.proxy_status() == {"node0": "UP", "node1": "DOWN", "node2": "DOWN"}, 15,
                 lambda: f"HAProxy: {ha.proxy_status()}")  # fmt: skip
        # Replication up, and every Sentinel knows both replicas and both peers: a failover can
        # only be authorised by a majority of the Sentinels that know each other (hello, every 2 s).
        # (A full sync waits repl-diskless-sync-delay, 5 s, for more replicas to join.)
        wait_for(lambda: replicas_online(node_ports[0], password, ca) == 2, 30)
        for port in sentinel_ports:
            wait_for(
                lambda p=port: _sentinel_complete(ha, p), 30, lambda p=port: f"Sentinel {p}: {ha.sentinel_view(p)}"
            )
    except BaseException:
        ha.stack.close()
        raise
    return ha


def _sentinel_answers(port: int, ca: Path) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with client(port, SENTINEL_PASSWORD, ca) as s:
                return bool(s.ping())
        except redis.RedisError:
            return False

    return probe


def _sentinel_complete(ha: HaSet, port: int) -> bool:
    view = ha.sentinel_view(port)
    return view.get("num-slaves") == "2" and view.get("num-other-sentinels") == "2" and view.get("flags") == "master"


def wait_for(condition: Callable[[], object], timeout: float, describe: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s" + (f": {describe()}" if describe else ""))


# --------------------------------------------------------------------------- the app's code

# The app's producer and a consumer with the app's worker options, through the tunnels. Written
# to the test's directory and run with the venv's node. stdin: one JSON line {api, worker env},
# then "stop" when enqueueing should end. stdout: JSON lines (events), the last one "summary".
DRIVER = r"""
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';

const [app, everyMs, processMs, drainMs] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const lines = createInterface({ input: process.stdin });
const it = lines[Symbol.asyncIterator]();
const env = JSON.parse((await it.next()).value);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const errors = {};
const noteErrors = (name) => (c) => c.on('error', (e) => {
  const k = `${name}:${e.code ?? e.message}`;
  errors[k] = (errors[k] ?? 0) + 1;
});

// Producer: the api's own providers (apps/api/src/jobs/queue.providers.ts, compiled): its Queue on
// the connection its parseRedisUrl derives from REDIS_URL (host, port, password: nothing else).
const config = { get: (key) => env.api[key] };
const { jobsProviders } = await import(pathToFileURL(join(app, 'apps/api/dist/jobs/queue.providers.js')).href);
const queue = jobsProviders[0].useFactory(config);
noteErrors('queue')(queue);

// Consumer: BullMQ's Worker on exactly the options the worker passes (apps/worker/src/worker.ts:
// parseRedisUrl's connection, concurrency, lockDuration 120000, stalledInterval 60000,
// maxStalledCount 2), the processor standing in for a provider call of processMs.
const workerJs = readFileSync(join(app, 'apps/worker/dist/worker.js'), 'utf8');
const source = workerJs.match(/^function parseRedisUrl\(url\) \{\n[\s\S]*?\n\}\n/m);
if (!source) throw new Error('no parseRedisUrl in apps/worker/dist/worker.js');
const parseRedisUrl = new Function(`${source[0]}\nreturn parseRedisUrl;`)();
const options = workerJs.match(/lockDuration: ([\d_]+),\s*stalledInterval: ([\d_]+),\s*maxStalledCount: (\d+)/);
if (!options) throw new Error('no lockDuration/stalledInterval/maxStalledCount in apps/worker/dist/worker.js');
const [lockDuration, stalledInterval, maxStalledCount] = options.slice(1).map((v) => Number(v.replaceAll('_', '')));
const fromWorker = createRequire(join(app, 'apps/worker/package.json'));
const { Worker } = await import(pathToFileURL(fromWorker.resolve('bullmq')).href);
const started = {};
const worker = new Worker(env.worker.AI_QUEUE_NAME, async (job) => {
  started[job.id] = (started[job.id] ?? 0) + 1;
  await new Promise((r) => setTimeout(r, processMs));
  return { seq: job.data.seq };
}, { connection: parseRedisUrl(env.worker.REDIS_URL), concurrency: Number(env.worker.WORKER_CONCURRENCY ?? 4),
     lockDuration, stalledInterval, maxStalledCount });
noteErrors('worker')(worker);
const completed = new Set();
const failed = {};
worker.on('completed', (job) => completed.add(job.id));
worker.on('failed', (job, e) => { failed[job?.id] = String(e?.message ?? e); });

// Enqueue every everyMs, never waiting for the previous add (each is one API request); the job
// options are the api's (jobs.service.ts: its own jobId, attempts 2, exponential backoff), except
// that finished jobs are kept so the test can count them.
let seq = 0;
const pending = new Set();
const tick = setInterval(() => {
  const n = seq++;
  const t0 = Date.now();
  const p = queue.add('failover-probe', { seq: n }, {
    jobId: `probe-${n}`, attempts: 2, backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: false, removeOnFail: false,
  }).then(() => emit({ event: 'ack', seq: n, t0, t1: Date.now() }),
          (e) => emit({ event: 'fail', seq: n, t0, t1: Date.now(), error: String(e?.message ?? e) }));
  pending.add(p);
  p.finally(() => pending.delete(p));
}, everyMs);
await worker.waitUntilReady();
emit({ event: 'ready', lockDuration, stalledInterval, maxStalledCount });

await it.next(); // "stop"
clearInterval(tick);
await Promise.race([Promise.allSettled([...pending]), new Promise((r) => setTimeout(r, drainMs))]);
const deadline = Date.now() + drainMs;
while (Date.now() < deadline && completed.size < seq) await new Promise((r) => setTimeout(r, 200));
emit({ event: 'summary', issued: seq, pendingAdds: pending.size, completed: [...completed], started, failed,
       errors, lockDuration, stalledInterval, maxStalledCount });
process.exit(0);
"""


@dataclass
class Driver:
    process: subprocess.Popen[str]
    events: queue.Queue[dict[str, Any]]
    log: list[dict[str, Any]]

    def next(self, timeout: float) -> dict[str, Any]:
        event = self.events.get(timeout=timeout)
        self.log.append(event)
        return event

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.log.append(self.events.get_nowait())


@contextlib.contextmanager
def app_driver(node: str, built_app: Path, work: Path, env: dict[str, dict[str, str]], *, every_ms: int,
               process_ms: int, drain_ms: int) -> Iterator[Driver]:  # fmt: skip
    script = work / "failover_driver.mjs"
    script.write_text(DRIVER)
    stderr = (work / "driver.err").open("w")
    process = subprocess.Popen([node, str(script), str(built_app), str(every_ms), str(process_ms), str(drain_ms)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
    events: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                events.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    assert process.stdin is not None
    process.stdin.write(json.dumps(env) + "\n")
    process.stdin.flush()
    try:
        yield Driver(process, events, [])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        stderr.close()
