"""Redis 7 for BullMQ: password, TLS only, AOF, maxmemory with noeviction."""

from __future__ import annotations

import pulumi

from components.conf import redis
from components.conf.urls import url_quote
from components.config import StackConfig
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import ConfigFile, Port, Probe, Security, ServiceSpec, Volume, secret_env

NAME = "redis"
PORT = 6379
UID = 999  # the image's redis user
CONF_PATH = "/etc/aixsss/redis.conf"


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
    tls = "required (plain-text port disabled)"
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
            files=[
                ConfigFile(CONF_PATH, self.redis_conf, secret=True, mode=0o600, owner=UID),
                ConfigFile(f"{TLS_DIR}/server.crt", certificate.cert_pem),
                ConfigFile(CA_PATH, certificate.ca_pem),
                ConfigFile(f"{TLS_DIR}/server.key", certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
        )
        self._place(platform, spec, [])
        host = platform.dns_names(NAME)[0]
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            # The app reads the password with WHATWG URL and does not decode it, so the config
            # only accepts URL-safe Redis passwords; quoting keeps the URL valid regardless.
            pulumi.Output.concat(
                "rediss://default:", pulumi.Output.from_input(password).apply(url_quote), f"@{host}:{PORT}"
            )
        )
