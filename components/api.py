"""The API (NestJS/Fastify on PORT, prefix /api) and its once-per-release migrations."""

from __future__ import annotations

import hashlib

import pulumi

from components import releases
from components.app_env import AppConnections, node_env, shared_env, shared_secret_env
from components.app_images import AppImage
from components.conf.nginx import API_READ_TIMEOUT_SECONDS
from components.config import StackConfig
from components.platforms.base import Placement, Platform
from components.service import CA_PATH, Service
from components.spec import (
    CONFIG_DIR,
    Autoscale,
    ConfigFile,
    Handover,
    Port,
    Probe,
    Security,
    ServiceSpec,
    Sidecar,
    Zone,
    secret_env,
)

NAME = "api"
PORT = 3001
# Where the app listens when a draining proxy takes PORT (Docker: spec.Handover).
APP_PORT = 3002
HEALTH_PATH = "/api/health"
UID = 1000  # the node user of the official Node images
# The release record (components/releases.py) the policy pack's rollback rules read.
RELEASE_RECORD_PATH = f"{CONFIG_DIR}/{releases.RECORD_FILE}"


def data_services(config: StackConfig) -> tuple[str, ...]:
    """The stack's servers api and worker open connections to: an external object store is
    reached over HTTPS through the egress zone, like an AI provider."""
    bundled = config.object_store.mode == "bundled"
    return ("postgres", "redis", "minio") if bundled else ("postgres", "redis")


HEALTH_COMMAND = [
    "node",
    "-e",
    f"fetch('http://127.0.0.1:'+process.env.PORT+'{HEALTH_PATH}').then(r=>r.json()).then(b=>process.exit(b.ok?0:1))"
    ".catch(()=>process.exit(1))",
]


class Api(Service):
    tls = "behind the edge (TLS terminated there)"
    auth = "JWT (application)"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        conn: AppConnections,
        jwt_secret: pulumi.Output[str],
        image: AppImage,
        redis_tunnel: Sidecar,
        database_ready: list[pulumi.Resource],
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Api", NAME, opts)
        ca_file = ConfigFile(CA_PATH, conn.ca_pem)
        command = config.api.migration_command
        release = hashlib.sha256(f"{image.version}\n{command}".encode()).hexdigest()
        self.image = image
        # The release this deploy records (components/releases.py); its record rides with the api.
        self.release = releases.plan(config, image.version, image.migrations)
        record = ConfigFile(RELEASE_RECORD_PATH, self.release.record())
        self.migration_spec = ServiceSpec(
            name="api-migrate",
            image=image.ref,
            resources=config.api,
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=None,
            command=command,
            env={"NODE_ENV": node_env(config)},
            secret_env=secret_env({"DATABASE_URL": conn.database_url}),
            files=[ca_file],
            talks_to=("postgres",),
            run_once=True,
            release=release,
        )
        # Migrations need PostgreSQL alone; the new api serves only after they ran. A rollback
        # declares none: the older images run on the schema as it is (the config refused it if
        # they cannot), and migrations are never undone.
        self.migrations: Placement | None = None
        if self.release.runs_migrations:
            self.migrations = platform.place(self.migration_spec, self, database_ready)
        # What api and worker wait for: the migrations, or on a rollback the database itself.
        self.migrations_ready: list[pulumi.Resource] = (
            self.migrations.ready if self.migrations is not None else list(database_ready)
        )
        spec = ServiceSpec(
            name=NAME,
            image=image.ref,
            resources=config.api,
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=Probe(command=HEALTH_COMMAND, http_path=HEALTH_PATH, port=PORT),
            env={**shared_env(config, conn), "PORT": str(PORT), "CORS_ORIGIN": config.public_origin},
            secret_env=secret_env({**shared_secret_env(conn), "JWT_SECRET": jwt_secret}),
            ports=[Port("http", PORT, auth="jwt")],
            files=[ca_file, record],
            replicas=config.api.replicas,
            zones=frozenset({Zone.FRONTEND, Zone.BACKEND, Zone.EGRESS}),
            talks_to=data_services(config),
            sidecars=(redis_tunnel,),
            # NestJS without shutdown hooks exits on SIGTERM with requests in flight: the platform
            # holds the stop back until the longest request the edge allows is over.
            handover=Handover(drain_seconds=API_READ_TIMEOUT_SECONDS, drains_itself=False, app_port=APP_PORT),
            # api.autoscale (Kubernetes): CPU, a percent of the request, between replicas and maxReplicas.
            autoscale=Autoscale(max_replicas=config.api.max_replicas, cpu_percent=config.api.cpu_target_percent)
            if config.api.autoscale and platform.name == "kubernetes"
            else None,
        )
        self._place(platform, spec, self.migrations_ready + depends_on)
