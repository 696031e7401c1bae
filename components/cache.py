"""Redis 7 for BullMQ: password, TLS only, AOF, maxmemory with noeviction.

One Redis (a StatefulSet or a container), or, with cache.highAvailability (Kubernetes), three
Redis nodes and three Sentinels behind HAProxy (components/conf/redis_ha.py), whose Service takes
the one Redis's name and port: the clients' tunnels dial ``redis:6379`` either way."""

from __future__ import annotations

import pulumi

from components.conf import redis, redis_ha, tls_tunnel
from components.conf.urls import url_quote
from components.config import StackConfig
from components.monitoring import exporters_declared, redis_exporter
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import (
    CONFIG_DIR,
    ConfigFile,
    Exporter,
    Port,
    Probe,
    RedisHa,
    Security,
    ServiceSpec,
    Sidecar,
    Volume,
    secret_env,
)

NAME = "redis"
PORT = 6379
UID = 999  # the image's redis user
CONF_PATH = "/etc/aixsss/redis.conf"
# The tunnel beside each client (components/conf/tls_tunnel.py): the app's plain-text Redis client
# connects to it on loopback; it speaks verified TLS to Redis.
TUNNEL = "redis-tls"
TUNNEL_CONF = "/etc/aixsss/redis-tls.conf"
TUNNEL_PORT = 6379
TUNNEL_UID = 101  # nginx-unprivileged, the edge's image

# cache.highAvailability (Kubernetes): the members' names (StatefulSets and their headless
# Services), their counts, and HAProxy, which takes NAME and PORT.
NODE = "redis-node"
NODES = 3
SENTINEL = "redis-sentinel"
SENTINELS = 3  # quorum 2 (redis_ha.SentinelSettings)
SENTINEL_PORT = 26379
SENTINEL_STORAGE_GB = 1  # its rewritten sentinel.conf
PROXY_UID = 99  # the haproxy image's user
PROXY_REPLICAS = 2
PROXY_STATS_PORT = 8404  # /healthz, /stats, /metrics (redis_ha.ProxySettings)
HAPROXY_CONF = f"{CONFIG_DIR}/haproxy.cfg"
NODE_START = f"{CONFIG_DIR}/redis-node-start.sh"
SENTINEL_CONF = f"{CONFIG_DIR}/sentinel.conf"
SENTINEL_START = f"{CONFIG_DIR}/redis-sentinel-start.sh"
# The writable copies Redis and Sentinel rewrite (CONFIG REWRITE, Sentinel's state): on the volume.
NODE_CONF_COPY = "/data/redis.conf"
SENTINEL_CONF_COPY = "/data/sentinel.conf"


def member(platform: Platform, service: str, index: int) -> str:
    """A StatefulSet member's stable name through its headless Service."""
    return f"{service}-{index}.{platform.resolvable_name(service)}"


def sentinel_addresses(platform: Platform) -> tuple[redis_ha.Address, ...]:
    """Every Sentinel, as the nodes ask them and as each Sentinel knows its peers."""
    return tuple(redis_ha.Address(member(platform, SENTINEL, i), SENTINEL_PORT) for i in range(SENTINELS))


def certificate_names(config: StackConfig, platform: Platform) -> list[str]:
    """The Redis server certificate's names: the ones the tunnel verifies (the first) and, with
    the HA set, every node's own name (one certificate serves the three nodes)."""
    names = platform.dns_names(NAME)
    if config.cache.high_availability:
        names += [member(platform, NODE, i) for i in range(NODES)]
    return names


def sentinel_certificate_names(platform: Platform) -> list[str]:
    return platform.dns_names(SENTINEL) + [member(platform, SENTINEL, i) for i in range(SENTINELS)]


def redis_settings(config: StackConfig, passwords: tuple[str, ...]) -> redis.RedisSettings:
    return redis.RedisSettings(
        passwords=passwords,
        maxmemory_mb=config.cache.maxmemory_mb,
        cert_path=f"{TLS_DIR}/server.crt",
        key_path=f"{TLS_DIR}/server.key",
        ca_path=CA_PATH,
        port=PORT,
    )


class Cache(Service):
    tls = (
        "required (plain-text port disabled); api and worker reach it through a TLS tunnel beside them "
        "(nginx stream, certificate verified against the stack CA), in plain text only on their own loopback"
    )
    auth = "ACL default user, two passwords (rotation slots)"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        certificate: Certificate,
        opts: pulumi.ResourceOptions | None = None,
        *,
        sentinel_password: pulumi.Output[str] | None = None,
        sentinel_certificate: Certificate | None = None,
        accepted: tuple[pulumi.Output[str], ...] = (),
        replication_password: pulumi.Output[str] | None = None,
        sentinel_accepted: tuple[pulumi.Output[str], ...] = (),
        sentinel_previous_password: pulumi.Output[str] | None = None,
    ) -> None:
        """``password`` is the clients' (the current rotation slot); the servers accept it and
        every one of ``accepted`` (both slots). ``replication_password`` is the HA nodes'
        masterauth: the slot every node accepts during a StatefulSet roll (README: Secrets and
        rotation), which is the previous generation's; by default ``password``. The Sentinels'
        password likewise: they accept ``sentinel_accepted`` too, and the nodes and Sentinels ask
        them at start with ``sentinel_previous_password``, which old and new Sentinels accept."""
        super().__init__("Cache", NAME, opts)
        ha = config.cache.high_availability
        # The file holds the passwords' hashes (and, HA, masterauth itself), so it is a secret in
        # every form it takes. The HA nodes' adds replication over TLS (redis_ha.render_node).
        self.redis_conf: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(password, replication_password or password, *accepted)
        ).apply(
            lambda pws: (
                redis.render(redis_settings(config, (pws[0], *pws[2:])))
                + (redis_ha.render_node(redis_ha.NodeSettings(password=pws[1])) if ha else "")
            )
        )
        publish = config.docker.publish_data_ports
        redis_spec = ServiceSpec(
            name=NAME,
            image=config.images.redis,
            resources=config.cache,
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=Probe(
                command=["sh", "-c", f"redis-cli --tls --cacert {CA_PATH} -h 127.0.0.1 -p {PORT} ping | grep -q PONG"],
            ),
            args=["redis-server", CONF_PATH],
            # redis-cli reads the password from here, so it never shows in a process list.
            secret_env=secret_env({"REDISCLI_AUTH": password}),
            ports=[
                Port("redis", PORT, published=PORT if publish else None, host_ip="127.0.0.1", tls=True, auth="password")
            ],
            # The official image: `mkdir /data && chown redis:redis /data` (999).
            volumes=[Volume("data", "/data", config.cache.storage_gb, owned_by_image=True)],
            # redis_exporter beside it (monitoring.enabled, Kubernetes): the password it needs is
            # REDISCLI_AUTH of the Secret above.
            exporters=(redis_exporter(config, certificate.ca_pem, PORT, "REDISCLI_AUTH"),)
            if exporters_declared(config)
            else (),
            files=[
                ConfigFile(CONF_PATH, self.redis_conf, secret=True, mode=0o600, owner=UID),
                ConfigFile(f"{TLS_DIR}/server.crt", certificate.cert_pem),
                ConfigFile(CA_PATH, certificate.ca_pem),
                ConfigFile(f"{TLS_DIR}/server.key", certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
        )
        # What monitoring scrapes: the service whose pods run redis_exporter.
        self.exporter_services: dict[str, tuple[Exporter, ...]] = {NAME: redis_spec.exporters}
        spec = redis_spec
        if ha:
            if platform.name != "kubernetes" or sentinel_password is None or sentinel_certificate is None:
                raise ValueError("cache.highAvailability runs on Kubernetes, with a Sentinel password and certificate")
            asking = sentinel_previous_password or sentinel_password
            nodes = self._nodes(config, platform, redis_spec, asking)
            sentinels = self._sentinels(
                config, platform, password, (sentinel_password, asking, *sentinel_accepted), sentinel_certificate
            )
            spec = self._proxy(config, platform, password, certificate, RedisHa(nodes, sentinels))
            self.exporter_services = {NODE: nodes.exporters}
        self._place(platform, spec, [])
        self.password = password
        self._tunnel = Sidecar(
            name=TUNNEL,
            image=config.images.edge,
            command=["nginx", "-c", TUNNEL_CONF, "-g", "daemon off;"],
            # nginx with one worker needs ~10 MB; the headroom keeps the tunnel clear of the OOM
            # killer, because on Docker its restart would strand the app (README: Docker).
            resources=config.cache.model_copy(update={"cpu_millis": 100, "memory_mb": 64}),
            security=Security(run_as_user=TUNNEL_UID, run_as_group=TUNNEL_UID),
            files=[
                ConfigFile(
                    TUNNEL_CONF,
                    tls_tunnel.render(
                        tls_tunnel.TunnelSettings(
                            listen_port=TUNNEL_PORT,
                            server_host=platform.resolvable_name(NAME),
                            server_port=PORT,
                            # The name the stack's certificate for Redis carries first.
                            server_name=platform.dns_names(NAME)[0],
                            ca_path=CA_PATH,
                            resolver=platform.resolver,
                        )
                    ),
                ),
                ConfigFile(CA_PATH, certificate.ca_pem),
            ],
            port=TUNNEL_PORT,
            # Healthy when Redis answers through it: a PING without the password gets -NOAUTH
            # back, which only Redis sends, so TLS, the certificate check and the route all work.
            # bash's /dev/tcp: the nginx image has no Redis client and no nc.
            probe_command=[
                "bash",
                "-c",
                f"exec 3<>/dev/tcp/127.0.0.1/{TUNNEL_PORT} && printf 'PING\\r\\n' >&3 && "
                "IFS= read -r -t 3 reply <&3 && [[ $reply == -NOAUTH* ]]",
            ],
            alive_command=["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{TUNNEL_PORT}"],
            after=tuple(self.ready),
        )
        # What api and worker are given: the tunnel on their own loopback, in plain text. The app
        # reads the password with WHATWG URL and does not decode it, so the config only accepts
        # URL-safe Redis passwords; quoting keeps the URL valid regardless.
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.concat(
                "redis://default:",
                pulumi.Output.from_input(password).apply(url_quote),
                f"@127.0.0.1:{TUNNEL_PORT}",
            )
        )

    def _nodes(
        self, config: StackConfig, platform: Platform, single: ServiceSpec, sentinel_password: pulumi.Output[str]
    ) -> ServiceSpec:
        """The one Redis's spec, three times, started by the script that asks the Sentinels
        whom to replicate (redis_ha.render_node_start). Its certificate names every node."""
        start = pulumi.Output.secret(sentinel_password).apply(
            lambda spw: redis_ha.render_node_start(
                redis_ha.NodeStartSettings(
                    first_node=redis_ha.Address(member(platform, NODE, 0), PORT),
                    sentinels=sentinel_addresses(platform),
                    sentinel_password=spw,
                    ca_path=CA_PATH,
                    conf_template=CONF_PATH,
                    conf_path=NODE_CONF_COPY,
                    self_host=f'"$(hostname).{platform.resolvable_name(NODE)}"',
                    self_port=str(PORT),
                )
            )
        )
        return ServiceSpec(
            name=NODE,
            image=single.image,
            resources=single.resources,
            security=single.security,
            probe=single.probe,
            command=["sh", NODE_START],
            secret_env=single.secret_env,
            ports=[Port("redis", PORT, tls=True, auth="password")],
            volumes=single.volumes,
            exporters=single.exporters,
            files=[*single.files, ConfigFile(NODE_START, start, secret=True, mode=0o500, owner=UID)],
            replicas=NODES,
            # Replication between the nodes; a starting node asks the Sentinels for the primary.
            talks_to=(NODE, SENTINEL),
        )

    def _sentinels(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        sentinel_passwords: tuple[pulumi.Output[str], ...],
        certificate: Certificate,
    ) -> ServiceSpec:
        """Three Sentinels (quorum 2) watching the nodes, TLS only, with their own password.
        ``sentinel_passwords``: the current one, the one to ask peers with at start (the
        previous generation's), then every other one they accept."""
        sentinel_password, asking = sentinel_passwords[0], sentinel_passwords[1]
        every = pulumi.Output.secret(pulumi.Output.all(password, *sentinel_passwords))
        conf = every.apply(
            lambda pws: redis_ha.render_sentinel(
                redis_ha.SentinelSettings(
                    redis_password=pws[0],
                    sentinel_password=pws[1],
                    accepted_sentinel_passwords=tuple(pws[2:]),
                    monitor=redis_ha.Address(member(platform, NODE, 0), PORT),
                    cert_path=f"{TLS_DIR}/server.crt",
                    key_path=f"{TLS_DIR}/server.key",
                    ca_path=CA_PATH,
                    port=SENTINEL_PORT,
                )
            )
        )
        start = pulumi.Output.secret(asking).apply(
            lambda spw: redis_ha.render_sentinel_start(
                redis_ha.SentinelStartSettings(
                    peers=sentinel_addresses(platform),
                    sentinel_password=spw,
                    ca_path=CA_PATH,
                    conf_template=SENTINEL_CONF,
                    conf_path=SENTINEL_CONF_COPY,
                    self_host=f'"$(hostname).{platform.resolvable_name(SENTINEL)}"',
                    self_port=str(SENTINEL_PORT),
                )
            )
        )
        return ServiceSpec(
            name=SENTINEL,
            image=config.images.redis,
            # Sentinel needs a few MB; the rest is headroom against the OOM killer.
            resources=config.cache.model_copy(
                update={"cpu_millis": 100, "memory_mb": 64, "storage_gb": SENTINEL_STORAGE_GB}
            ),
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=Probe(
                command=[
                    "sh",
                    "-c",
                    f"redis-cli --tls --cacert {CA_PATH} -h 127.0.0.1 -p {SENTINEL_PORT} ping | grep -q PONG",
                ],
            ),
            command=["sh", SENTINEL_START],
            secret_env=secret_env({"REDISCLI_AUTH": sentinel_password}),
            ports=[Port("sentinel", SENTINEL_PORT, tls=True, auth="password")],
            volumes=[Volume("data", "/data", SENTINEL_STORAGE_GB, owned_by_image=True)],
            files=[
                ConfigFile(SENTINEL_CONF, conf, secret=True, mode=0o400, owner=UID),
                ConfigFile(SENTINEL_START, start, secret=True, mode=0o500, owner=UID),
                ConfigFile(f"{TLS_DIR}/server.crt", certificate.cert_pem),
                ConfigFile(CA_PATH, certificate.ca_pem),
                ConfigFile(f"{TLS_DIR}/server.key", certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
            replicas=SENTINELS,
            # Sentinels talk to each other (hello messages, votes) and to every node.
            talks_to=(NODE, SENTINEL),
        )

    def _proxy(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        certificate: Certificate,
        ha: RedisHa,
    ) -> ServiceSpec:
        """HAProxy as `redis`: TCP pass-through to the node answering role:master, so the
        tunnel's verified TLS session ends at the primary itself (redis_ha.render_haproxy)."""
        conf = pulumi.Output.secret(password).apply(
            lambda pw: redis_ha.render_haproxy(
                redis_ha.ProxySettings(
                    redis_password=pw,
                    nodes=tuple(redis_ha.Address(member(platform, NODE, i), PORT) for i in range(NODES)),
                    ca_path=CA_PATH,
                    # The name the tunnel verifies too: the checks prove the same certificate.
                    server_name=platform.dns_names(NAME)[0],
                    port=PORT,
                    stats_port=PROXY_STATS_PORT,
                )
            )
        )
        return ServiceSpec(
            name=NAME,
            image=config.images.haproxy,
            resources=config.cache.model_copy(update={"cpu_millis": 200, "memory_mb": 128}),
            security=Security(run_as_user=PROXY_UID, run_as_group=PROXY_UID),
            probe=Probe(
                command=["haproxy", "-c", "-q", "-f", HAPROXY_CONF],
                http_path="/healthz",
                port=PROXY_STATS_PORT,
            ),
            # -W master-worker, -db in the foreground: what the image's entrypoint runs.
            command=["haproxy", "-W", "-db", "-f", HAPROXY_CONF],
            ports=[Port("redis", PORT, tls=True, auth="password")],
            files=[
                ConfigFile(HAPROXY_CONF, conf, secret=True, mode=0o400, owner=PROXY_UID),
                ConfigFile(CA_PATH, certificate.ca_pem),
            ],
            replicas=PROXY_REPLICAS,
            talks_to=(NODE,),
            redis_ha=ha,
        )

    @property
    def tunnel(self) -> Sidecar:
        """The sidecar each Redis client runs: loopback plain text in, verified TLS out."""
        return self._tunnel
