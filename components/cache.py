"""Redis 7 for BullMQ: password, TLS only, AOF, maxmemory with noeviction."""

from __future__ import annotations

import pulumi

from components.conf import redis, tls_tunnel
from components.conf.urls import url_quote
from components.config import StackConfig
from components.monitoring import exporters_declared, redis_exporter
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import ConfigFile, Port, Probe, Security, ServiceSpec, Sidecar, Volume, secret_env

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


def redis_settings(config: StackConfig, password: str) -> redis.RedisSettings:
    return redis.RedisSettings(
        password=password,
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
    auth = "requirepass"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        certificate: Certificate,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Cache", NAME, opts)
        # The file holds the password, so it is a secret in every form it takes.
        self.redis_conf: pulumi.Output[str] = pulumi.Output.secret(password).apply(
            lambda pw: redis.render(redis_settings(config, pw))
        )
        publish = config.docker.publish_data_ports
        spec = ServiceSpec(
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
            volumes=[Volume("data", "/data", config.cache.storage_gb)],
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

    @property
    def tunnel(self) -> Sidecar:
        """The sidecar each Redis client runs: loopback plain text in, verified TLS out."""
        return self._tunnel
