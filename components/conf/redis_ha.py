"""A highly available Redis the application can use as it is: Sentinel-managed replicas behind a
proxy that always points at the current primary.

The application connects to ONE host and port and knows nothing of Sentinel (APP.md), and it
reaches Redis through the TLS tunnel beside api and worker (tls_tunnel.py). So the HA set is
hidden behind HAProxy: the tunnel's upstream is HAProxy's Service, HAProxy forwards TCP to the one
node that answers ``role:master`` to its own health check, and Sentinel decides which node that is.

Pieces (Kubernetes, prod; the wiring is the program's, these are pure renderers):

- three Redis nodes (a StatefulSet): ``components.conf.redis.render`` (TLS only, ACL passwords, AOF,
  noeviction) plus ``render_node`` (TLS replication with the stack CA, ``masterauth``, the write
  guard below). Which node is primary is decided at start by ``render_node_start`` (ask the
  Sentinels; only when none knows a primary is the first node the primary) and afterwards only by
  Sentinel, which rewrites the node's copied config (``CONFIG REWRITE``), so that copy is writable;
- three Sentinels (``render_sentinel`` + ``render_sentinel_start``): TLS only, their own password,
  quorum 2, hostnames instead of pod IPs (``resolve-hostnames``/``announce-hostnames``, Redis >= 6.2);
- HAProxy (``render_haproxy``): TCP pass-through, so the tunnel's verified TLS session ends at the
  primary Redis itself and HAProxy holds no key. Its health check speaks TLS to each node
  (``check-ssl``, the stack CA, ``verify required``, ``verifyhost``), sends ``AUTH``, ``PING``,
  ``INFO replication`` and expects ``role:master``: only the primary is UP. Sessions to a node
  marked DOWN are cut at once (``on-marked-down shutdown-sessions``), so clients reconnect and
  land on the new primary instead of waiting on a dead peer.

Why HAProxy and a role check rather than a Sentinel-aware proxy: the pattern is HAProxy's own
(HAProxy blog, "HAProxy advanced Redis health check", 2014: ``tcp-check send info replication`` /
``expect string role:master``), the maintained redis-ha Helm chart (DandyDeveloper/charts,
``charts/redis-ha/templates/_configs.tpl``) fronts Sentinel-managed Redis with exactly this
backend, and the official ``haproxy`` image is small, maintained and needs no extra code that
talks the Sentinel protocol. HAProxy asks the data nodes themselves, so it routes to a promoted
replica as soon as that replica says ``role:master``, whether or not it can reach a Sentinel.
Its known weak spot is two nodes saying ``role:master`` at once (an old primary restarted with
its old config: falsecz/haredis README). Here that cannot come from a restart: a node asks the
Sentinels at start and joins as a replica when they know a primary (the redis-ha chart's
init script does the same). ``min-replicas-to-write`` is available but off (see NodeSettings).

Certificates: one server certificate for the three nodes (SANs: the name the tunnel checks, e.g.
``redis`` and ``redis.<ns>.svc``, plus ``*.redis-node.<ns>.svc.cluster.local``), one for the
Sentinels. Redis and Sentinel verify peers against the CA only (no host name check); HAProxy's
checks and the tunnel check the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.conf import redis

# Sentinel's name for the monitored set (``sentinel get-master-addr-by-name <name>``).
DEFAULT_MASTER_NAME = "aixsss"
# Passwords go into redis.conf-style lines unquoted; the program generates alphanumerics only.
_SAFE = re.compile(r"^[A-Za-z0-9_.+/=@%:~^-]+$")


def _checked(value: str, what: str) -> str:
    if not _SAFE.fullmatch(value):
        raise ValueError(f"{what} must be non-empty and hold no space, quote, '#' or backslash")
    return value


@dataclass(frozen=True)
class Address:
    host: str  # Kubernetes: a pod's stable name through its headless Service
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- redis nodes


@dataclass(frozen=True)
class NodeSettings:
    """What every node adds to redis.conf (redis.render) to be part of the replicated set."""

    # masterauth: what a replica gives its primary. The program gives the previous generation's
    # rotation slot: during a StatefulSet roll the restarted (new) replicas meet the old primary,
    # and that slot is the one old and new nodes both accept (README: Secrets and rotation).
    password: str
    # A primary refuses writes while fewer than this many replicas acknowledged within the lag
    # (an isolated old primary would stop taking writes a failover throws away). Off by default,
    # measured (tests/test_redis_failover.py): a just-promoted primary has no acknowledged replica
    # for about a second, so with 1 it refused (NOREPLICAS) every enqueue ioredis had queued during
    # the failover (52 of 133 in one run) and the worker's moveToFinished of its in-flight jobs,
    # leaving them to stalled-job recovery. Clients reach a node only through HAProxy, which
    # routes to role:master only, and restarted nodes rejoin as replicas: the residual risk is a
    # primary cut off from the Sentinels but not from HAProxy (see the runbook).
    min_replicas_to_write: int = 0
    min_replicas_max_lag_seconds: int = 10
    replica_priority: int = 100  # 0: never promoted


def render_node(s: NodeSettings) -> str:
    """Lines appended to the node's redis.conf (after ``components.conf.redis.render``).

    Per-node lines (``replica-announce-ip`` with the node's own name, ``replicaof``) are added at
    start by ``render_node_start``: a StatefulSet's pods share one rendered file."""
    return "\n".join(
        [
            "# High availability (components/conf/redis_ha.py)",
            # Replication runs over TLS with the stack CA (tls-ca-cert-file of redis.render).
            "tls-replication yes",
            f"masterauth {_checked(s.password, 'password')}",
            "replica-read-only yes",
            # A replica that lost its primary keeps answering reads; BullMQ writes through the
            # proxy, which never routes to a replica.
            "replica-serve-stale-data yes",
            f"replica-priority {s.replica_priority}",
            f"min-replicas-to-write {s.min_replicas_to_write}",
            f"min-replicas-max-lag {s.min_replicas_max_lag_seconds}",
            # Diskless full syncs: a new replica needs no disk round trip on the primary.
            "repl-diskless-sync yes",
            "",
        ]
    )


@dataclass(frozen=True)
class NodeStartSettings:
    """``render_node_start``: the node's entrypoint (``sh <script>``), run in each pod."""

    first_node: Address  # the primary of a set no Sentinel knows yet (StatefulSet ordinal 0)
    sentinels: tuple[Address, ...]
    sentinel_password: str
    ca_path: str
    conf_template: str  # the rendered redis.conf (+ render_node), read-only
    conf_path: str  # its writable copy (Sentinel rewrites it): on the node's volume
    master_name: str = DEFAULT_MASTER_NAME
    # The node's own address, as the others and Sentinel reach it: an expression the shell
    # expands at start. Kubernetes: "$(hostname).redis-node.<ns>.svc.cluster.local" and 6379.
    self_host: str = '"$(hostname -f)"'
    self_port: str = "6379"
    redis_server: str = "redis-server"
    redis_cli: str = "redis-cli"


def _script_head(self_host: str, self_port: str, first: str | None = None) -> list[str]:
    """A start script's opening: strict shell, and who this node or Sentinel is."""
    return [
        "#!/bin/sh",
        "# Generated by the aixsss Pulumi program (components/conf/redis_ha.py).",
        "set -eu",
        f"self_host={self_host}",
        f"self_port={self_port}",
        *([f"first={first}"] if first else []),
    ]


def _ask_for_primary(loop_var: str, redis_cli: str, ca_path: str, master_name: str) -> list[str]:
    """Inside a loop over Sentinel addresses in ``$loop_var``: the primary it names, as $host
    and $port (empty when it does not answer)."""
    return [
        f'  answer=$({redis_cli} --tls --cacert {ca_path} -h "${{{loop_var}%:*}}" -p "${{{loop_var}##*:}}" \\',
        f"    --no-auth-warning sentinel get-master-addr-by-name {master_name} 2>/dev/null || true)",
        '  host=$(echo "$answer" | sed -n 1p); port=$(echo "$answer" | sed -n 2p)',
    ]


def render_node_start(s: NodeStartSettings) -> str:
    """Start one node: copy the config, add who this node is and whom it replicates, exec Redis.

    A node joins as a replica of the primary the Sentinels name; when none answers (the set's
    first start) the first node starts as primary and the others as its replicas. A restarted old
    primary therefore never comes back as a second primary: Sentinel already promoted another."""
    sentinels = " ".join(f"{a.host}:{a.port}" for a in s.sentinels)
    return "\n".join(
        [
            *_script_head(s.self_host, s.self_port, f"{s.first_node.host}:{s.first_node.port}"),
            f"conf={s.conf_path}",
            f"export REDISCLI_AUTH='{_checked(s.sentinel_password, 'sentinel_password')}'",
            "primary=''",
            f"for sentinel in {sentinels}; do",
            *_ask_for_primary("sentinel", s.redis_cli, s.ca_path, s.master_name),
            '  case "$port" in',
            "    ''|*[!0-9]*) ;;",
            '    *) primary="$host:$port"; break ;;',
            "  esac",
            "done",
            'if [ -z "$primary" ]; then',
            '  primary="$first"',
            '  echo "no Sentinel knows a primary: the first node $first is it"',
            "else",
            '  echo "the Sentinels name the primary $primary"',
            "fi",
            f'cp {s.conf_template} "$conf"',
            'chmod 600 "$conf"',
            'echo "replica-announce-ip $self_host" >> "$conf"',
            'echo "replica-announce-port $self_port" >> "$conf"',
            'if [ "$primary" != "$self_host:$self_port" ]; then',
            '  echo "replicaof ${primary%:*} ${primary##*:}" >> "$conf"',
            "fi",
            "unset REDISCLI_AUTH",
            f'exec {s.redis_server} "$conf"',
            "",
        ]
    )


# --------------------------------------------------------------------------- sentinels


@dataclass(frozen=True)
class SentinelSettings:
    redis_password: str  # sentinel auth-pass: Sentinel authenticates to the nodes
    sentinel_password: str  # Sentinel's own password (sentinel-pass between Sentinels; accepted)
    monitor: Address  # the primary to start monitoring (render_sentinel_start may replace it)
    cert_path: str
    key_path: str
    ca_path: str
    port: int = 26379
    bind: str = "* -::*"
    data_dir: str = "/data"
    master_name: str = DEFAULT_MASTER_NAME
    quorum: int = 2
    # Seconds of silence before a Sentinel thinks the primary is down; the failover then needs
    # `quorum` agreeing Sentinels, a leader election and a promotion (about 1-2 s more).
    down_after_ms: int = 5000
    failover_timeout_ms: int = 60000
    parallel_syncs: int = 1
    # Kubernetes: pod IPs change on every restart; names through a headless Service do not.
    hostnames: bool = True
    # More passwords Sentinel accepts besides sentinel_password: the other rotation slot.
    accepted_sentinel_passwords: tuple[str, ...] = ()


def render_sentinel(s: SentinelSettings) -> str:
    """sentinel.conf. Sentinel rewrites its file (epochs, known replicas and peers): run a copy."""
    name = s.master_name
    lines = [
        "# Generated by the aixsss Pulumi program (components/conf/redis_ha.py).",
        f"bind {s.bind}",
        "protected-mode no",
        *redis.tls_only(s.port, s.cert_path, s.key_path, s.ca_path),
        # TLS to the Redis nodes and, with tls-port, between Sentinels.
        "tls-replication yes",
        f"dir {s.data_dir}",
        # Its clients (nodes at start, peers, the probe) log in as the default user: every slot.
        redis.default_user((_checked(s.sentinel_password, "sentinel_password"), *s.accepted_sentinel_passwords)),
        f"sentinel sentinel-pass {s.sentinel_password}",
    ]
    if s.hostnames:
        lines += ["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]
    lines += [
        f"sentinel monitor {name} {s.monitor.host} {s.monitor.port} {s.quorum}",
        f"sentinel auth-pass {name} {_checked(s.redis_password, 'redis_password')}",
        f"sentinel down-after-milliseconds {name} {s.down_after_ms}",
        f"sentinel failover-timeout {name} {s.failover_timeout_ms}",
        f"sentinel parallel-syncs {name} {s.parallel_syncs}",
        # No scripts may be set at runtime (SENTINEL SET ... notification-script).
        "sentinel deny-scripts-reconfig yes",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class SentinelStartSettings:
    peers: tuple[Address, ...]  # every Sentinel (this one included is fine)
    sentinel_password: str
    ca_path: str
    conf_template: str  # render_sentinel's output, read-only
    conf_path: str  # the writable copy Sentinel rewrites
    master_name: str = DEFAULT_MASTER_NAME
    self_host: str = '"$(hostname -f)"'  # announced to the peers (announce-hostnames)
    self_port: str = "26379"
    redis_server: str = "redis-server"
    redis_cli: str = "redis-cli"


def render_sentinel_start(s: SentinelStartSettings) -> str:
    """Start one Sentinel: monitor the primary its peers know (else the template's), announce
    this Sentinel's stable name, exec ``redis-server <conf> --sentinel``."""
    peers = " ".join(f"{a.host}:{a.port}" for a in s.peers)
    monitor = f"sentinel monitor {s.master_name}"
    return "\n".join(
        [
            *_script_head(s.self_host, s.self_port),
            f"conf={s.conf_path}",
            f"export REDISCLI_AUTH='{_checked(s.sentinel_password, 'sentinel_password')}'",
            f'cp {s.conf_template} "$conf"',
            'chmod 600 "$conf"',
            f"for peer in {peers}; do",
            '  [ "$peer" = "$self_host:$self_port" ] && continue',
            *_ask_for_primary("peer", s.redis_cli, s.ca_path, s.master_name),
            '  case "$port" in',
            "    ''|*[!0-9]*) ;;",
            f'    *) sed -i "s|^{monitor} .* \\([0-9]*\\)$|{monitor} $host $port \\1|" "$conf"',
            '       echo "peer $peer names the primary $host:$port"; break ;;',
            "  esac",
            "done",
            'echo "sentinel announce-ip $self_host" >> "$conf"',
            'echo "sentinel announce-port $self_port" >> "$conf"',
            "unset REDISCLI_AUTH",
            f'exec {s.redis_server} "$conf" --sentinel',
            "",
        ]
    )


# --------------------------------------------------------------------------- haproxy


@dataclass(frozen=True)
class ProxySettings:
    redis_password: str  # for the health check's AUTH
    nodes: tuple[Address, ...]
    ca_path: str
    server_name: str  # the name in the nodes' certificate that the checks verify ("redis")
    port: int = 6379
    bind: str = "*"
    stats_port: int = 8404  # /stats page, /metrics (Prometheus), /healthz
    check_interval_ms: int = 1000
    fall: int = 2  # failed checks before a node is DOWN
    rise: int = 1  # passed checks before a node is UP (a promoted replica: one check)
    connect_timeout_s: int = 2
    # BullMQ holds blocking commands and idle pub/sub connections: as long as the tunnel allows.
    idle_timeout_s: int = 600
    # Kubernetes DNS: node names resolve only once their pods exist; HAProxy starts anyway and
    # follows a restarted pod's new address. None: the node hosts are literal addresses.
    resolvers: str | None = "parse-resolv-conf"


def _resp(*words: str) -> str:
    """A command as a RESP array, hex-encoded for ``tcp-check send-binary``: no quoting or
    escaping of the password can go wrong."""
    raw = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    return raw.encode().hex()


def render_haproxy(s: ProxySettings) -> str:
    """haproxy.cfg: the TCP front of the HA set. Secret: its health check holds the password."""
    _checked(s.redis_password, "redis_password")
    server_opts = [
        "check",
        f"inter {s.check_interval_ms}ms",
        f"fall {s.fall}",
        f"rise {s.rise}",
        # Health checks in TLS; the traffic itself passes through untouched (no `ssl`).
        "check-ssl",
        f"check-sni {s.server_name}",
        "verify required",
        f"ca-file {s.ca_path}",
        f"verifyhost {s.server_name}",
        # A node going DOWN (killed, or demoted by Sentinel) closes its clients' sessions now.
        "on-marked-down shutdown-sessions",
        "on-marked-up shutdown-backup-sessions",
    ]
    if s.resolvers:
        server_opts += ["resolvers dns", "init-addr last,libc,none", "resolve-prefer ipv4"]
    lines = [
        "# Generated by the aixsss Pulumi program (components/conf/redis_ha.py). Secret: holds the",
        "# Redis password (health check AUTH, hex-encoded RESP).",
        "global",
        "  log stdout format raw local0 info",
        "  maxconn 4096",
        "",
    ]
    if s.resolvers:
        lines += [
            "resolvers dns",
            f"  {s.resolvers}",
            "  resolve_retries 3",
            "  timeout resolve 1s",
            "  timeout retry 1s",
            "  hold valid 5s",
            "  hold obsolete 5s",
            "  hold nx 1s",
            "",
        ]
    lines += [
        "defaults",
        "  mode tcp",
        "  log global",
        "  option tcplog",
        "  option log-health-checks",
        "  option clitcpka",
        "  option srvtcpka",
        f"  timeout connect {s.connect_timeout_s}s",
        f"  timeout client {s.idle_timeout_s}s",
        f"  timeout server {s.idle_timeout_s}s",
        "  timeout check 2s",
        "  retries 2",
        "",
        "frontend stats",
        "  mode http",
        f"  bind {s.bind}:{s.stats_port}",
        "  timeout client 10s",
        "  monitor-uri /healthz",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "  stats enable",
        "  stats uri /stats",
        "  stats refresh 5s",
        "",
        "frontend redis",
        f"  bind {s.bind}:{s.port}",
        "  default_backend redis_primary",
        "",
        "# Only the node answering role:master is UP: Sentinel promotes, HAProxy follows.",
        "backend redis_primary",
        "  balance first",
        "  option tcp-check",
        # No explicit `tcp-check connect`: that one would ignore check-ssl and speak plain text;
        # the implicit first connect uses the server's check settings (TLS, CA, name).
        f"  tcp-check send-binary {_resp('AUTH', s.redis_password)}",
        "  tcp-check expect string +OK",
        "  tcp-check send PING\\r\\n",
        "  tcp-check expect string +PONG",
        "  tcp-check send INFO\\ replication\\r\\n",
        "  tcp-check expect string role:master",
        "  tcp-check send QUIT\\r\\n",
        "  tcp-check expect string +OK",
        f"  default-server {' '.join(server_opts)}",
    ]
    lines += [f"  server node{i} {a.host}:{a.port}" for i, a in enumerate(s.nodes)]
    lines.append("")
    return "\n".join(lines)
