"""Wire the stack: platform, secrets, PKI, then the seven services in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from components.api import Api
from components.app_env import AppConnections
from components.cache import Cache
from components.config import StackConfig, Target
from components.database import Database
from components.load_balancer import LoadBalancer
from components.object_store import ObjectStore
from components.pki import Certificate, InternalPki
from components.platforms.base import Platform
from components.platforms.docker import DockerPlatform
from components.platforms.kubernetes import KubernetesPlatform
from components.secrets import StackSecrets
from components.service import Service
from components.web import Web
from components.worker import Worker


@dataclass
class AixsssStack:
    config: StackConfig
    platform: Platform
    secrets: StackSecrets
    pki: InternalPki
    certificates: list[Certificate]
    database: Database
    cache: Cache
    object_store: ObjectStore
    api: Api
    worker: Worker
    web: Web
    edge: LoadBalancer

    @property
    def services(self) -> list[Service]:
        return [self.database, self.cache, self.object_store, self.api, self.worker, self.web, self.edge]


def make_platform(config: StackConfig) -> Platform:
    if config.target is Target.KUBERNETES:
        return KubernetesPlatform("kubernetes", config)
    return DockerPlatform("docker", config)


def build(config: StackConfig) -> AixsssStack:
    platform = make_platform(config)
    secrets = StackSecrets("secrets", config)
    pki = InternalPki("pki", config)

    def certificate(service: str) -> Certificate:
        # 127.0.0.1 lets in-container healthchecks verify the certificate too.
        return pki.issue(service, platform.dns_names(service), ["127.0.0.1"])

    certs = {name: certificate(name) for name in ("postgres", "redis", "minio")}
    database = Database(config, platform, secrets.postgres_password, certs["postgres"])
    cache = Cache(config, platform, secrets.redis_password, certs["redis"])
    object_store = ObjectStore(config, platform, secrets, certs["minio"])
    conn = AppConnections(
        database_url=database.url,
        redis_url=cache.url,
        s3_endpoint=object_store.endpoint,
        s3_bucket=object_store.bucket,
        s3_access_key=secrets.minio_app_access_key,
        s3_secret_key=secrets.minio_app_secret_key,
        api_key_encryption_key=secrets.api_key_encryption_key,
        ca_pem=pki.ca_cert_pem,
    )
    # Data services healthy -> migrations -> api -> worker; the edge after api and web.
    api = Api(config, platform, conn, secrets.jwt_secret, database.ready + cache.ready + object_store.ready)
    worker = Worker(config, platform, conn, api.ready)
    web = Web(config, platform)
    edge = LoadBalancer(config, platform, pki, api.ready + web.ready)
    certificates = list(certs.values()) + ([edge.certificate] if edge.certificate else [])
    return AixsssStack(
        config, platform, secrets, pki, certificates, database, cache, object_store, api, worker, web, edge
    )
