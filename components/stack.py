"""Wire the stack: platform, secrets, PKI, then the seven services in dependency order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.api import Api
from components.app_env import AppConnections
from components.app_images import app_images
from components.cache import SENTINEL, Cache, sentinel_certificate_names
from components.cache import certificate_names as redis_certificate_names
from components.config import StackConfig, Target
from components.database import Database, certificate_names
from components.load_balancer import LoadBalancer
from components.monitoring import Monitoring, exporters_declared
from components.object_store import ObjectStore
from components.pki import Certificate, InternalPki
from components.platforms.base import Platform
from components.secrets import StackSecrets
from components.service import Service
from components.spec import ClusterBackup
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
    # None with objectStore.mode external: the app uses an S3 service the stack does not run.
    object_store: ObjectStore | None
    api: Api
    worker: Worker
    web: Web
    edge: LoadBalancer
    # monitoring.enabled: exporters' scrape targets and the alerting rules.
    monitoring: Monitoring | None = None

    @property
    def services(self) -> list[Service]:
        services: list[Service | None] = [
            self.database,
            self.cache,
            self.object_store,
            self.api,
            self.worker,
            self.web,
            self.edge,
        ]
        return [s for s in services if s is not None]


def make_platform(config: StackConfig) -> Platform:
    # Each platform imports its own SDK, and only the target's is imported: the Kubernetes
    # platform's imports alone (~0.25 s) are half a Docker stack's evaluation (issue 14).
    if config.target is Target.KUBERNETES:
        from components.platforms.kubernetes import KubernetesPlatform

        return KubernetesPlatform("kubernetes", config)
    from components.platforms.docker import DockerPlatform

    return DockerPlatform("docker", config)


# Pulumi runs the program in the project directory; app.source is relative to it.
PROJECT_DIR = Path(__file__).resolve().parent.parent


def build(config: StackConfig) -> AixsssStack:
    platform = make_platform(config)
    images = app_images(config, platform, PROJECT_DIR)
    secrets = StackSecrets("secrets", config)
    pki = InternalPki("pki", config)

    def certificate(service: str) -> Certificate:
        # 127.0.0.1 lets in-container healthchecks verify the certificate too.
        return pki.issue(service, platform.dns_names(service), ["127.0.0.1"])

    data = ("postgres", "redis") if config.object_store.mode == "external" else ("postgres", "redis", "minio")
    # The Redis certificate also names each node of the HA set (one certificate for the three).
    certs = {
        name: pki.issue(name, redis_certificate_names(config, platform), ["127.0.0.1"])
        if name == "redis"
        else certificate(name)
        for name in data
        if name != "postgres"
    }
    if config.cache.high_availability:
        certs[SENTINEL] = pki.issue(SENTINEL, sentinel_certificate_names(platform), ["127.0.0.1"])
    # PostgreSQL's clients may use the cluster's Services where an operator runs it.
    certs["postgres"] = pki.issue("postgres", certificate_names(platform), ["127.0.0.1"])
    # The store first: PostgreSQL's backups flow to it (a flow names a placed server).
    external = config.object_store.mode == "external"
    object_store = None if external else ObjectStore(config, platform, secrets, certs["minio"])
    backup = None
    if config.backup.enabled:
        bundled = config.object_store.mode == "bundled"
        backup = ClusterBackup(
            endpoint=f"https://{platform.dns_names('minio')[0]}:9000" if bundled else config.object_store.endpoint,
            bucket=config.backup.bucket,
            server_name=config.backup.server_name,
            access_key=secrets.backup_access_key,
            secret_key=secrets.backup_secret_key,
            ca_pem=pki.ca_cert_pem if bundled else None,
            store_service="minio" if bundled else None,
            schedule=config.backup.cron,
            retention=f"{config.backup.retention_days}d",
            store_ready=tuple(object_store.ready) if object_store is not None else (),
        )
    database = Database(
        config,
        platform,
        secrets.postgres_password,
        certs["postgres"],
        backup,
        secrets.postgres_bootstrap_password,
        secrets.postgres_scram_salt,
        login_passwords=secrets.postgres_login_passwords,
    )
    cache = Cache(
        config,
        platform,
        secrets.redis_password,
        certs["redis"],
        sentinel_password=secrets.redis_sentinel_password,
        sentinel_certificate=certs.get(SENTINEL),
        accepted=secrets.redis_passwords,
        replication_password=secrets.redis_previous_password,
        sentinel_accepted=secrets.redis_sentinel_passwords or (),
        sentinel_previous_password=secrets.redis_sentinel_previous_password,
    )
    conn = AppConnections(
        database_url=database.url,
        redis_url=cache.url,
        s3_endpoint=object_store.endpoint if object_store else config.object_store.endpoint,
        s3_bucket=config.object_store.bucket,
        s3_region=config.object_store.region,
        s3_access_key=secrets.minio_app_access_key,
        s3_secret_key=secrets.minio_app_secret_key,
        api_key_encryption_key=secrets.api_key_encryption_key,
        ca_pem=pki.ca_cert_pem,
    )
    # PostgreSQL healthy -> migrations; they and Redis -> api and worker, side by side (the
    # worker needs the schema and the queue, not the api); the edge waits for none of them.
    # Nothing waits for the object store: the application reads no S3 setting (APP.md).
    api = Api(config, platform, conn, secrets.jwt_secret, images["api"], cache.tunnel, database.ready, cache.ready)
    worker = Worker(
        config,
        platform,
        conn,
        images["worker"],
        cache.tunnel,
        api.migrations_ready + cache.ready,
        queue_password=cache.password,
    )
    web = Web(config, platform, images["web"])
    edge = LoadBalancer(config, platform, pki)
    # A rotation's last step: logins older than the previous generation go once api and worker run
    # with the new one (the previous generation's still drain: they go at the next rotation). On
    # Docker the api's new instances answer once the edge took them (its routes, in edge.ready).
    database.retire_previous_logins(platform, [*api.ready, *worker.ready, *edge.ready])
    certificates = list(certs.values()) + ([edge.certificate] if edge.certificate else [])
    monitoring = None
    if exporters_declared(config):
        exporters = {
            database.spec.name: database.spec.exporters,
            **cache.exporter_services,
            edge.spec.name: edge.spec.exporters,
        }
        # Kubernetes: rules for the namespace, and CloudNativePG's instances export their own.
        namespace = platform.namespace_name
        monitoring = Monitoring(
            config,
            platform,
            namespace,
            database.spec.name if namespace is not None else None,
            exporters,
            certificates,
            pki.ca_not_after,
        )
    return AixsssStack(
        config, platform, secrets, pki, certificates, database, cache, object_store, api, worker, web, edge, monitoring
    )
