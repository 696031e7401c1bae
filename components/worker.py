"""The BullMQ worker: no ports; talks to the data services and to AI providers over HTTPS."""

from __future__ import annotations

import pulumi

from components.api import UID, data_services
from components.app_env import AppConnections, shared_env, shared_secret_env
from components.app_images import AppImage
from components.config import StackConfig
from components.platforms.base import Platform
from components.service import CA_PATH, Service
from components.spec import ConfigFile, Probe, Security, ServiceSpec, Sidecar, Zone, secret_env

NAME = "worker"
# Healthy means the worker can reach its queue: a PING over the same REDIS_URL it consumes, so
# through the same TLS tunnel to the same Redis; a broken tunnel, certificate or password fails it.
HEALTH_COMMAND = [
    "node",
    "-e",
    "const R=require('ioredis');const r=new R(process.env.REDIS_URL,{lazyConnect:true,maxRetriesPerRequest:1});"
    "r.connect().then(()=>r.ping()).then(()=>process.exit(0),()=>process.exit(1))",
]


class Worker(Service):
    tls = "n/a (no listener)"
    auth = "n/a (no listener)"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        conn: AppConnections,
        image: AppImage,
        redis_tunnel: Sidecar,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Worker", NAME, opts)
        spec = ServiceSpec(
            name=NAME,
            image=image.ref,
            resources=config.worker,
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=Probe(command=HEALTH_COMMAND, start_period_seconds=30),
            env={
                **shared_env(config, conn),
                "WORKER_CONCURRENCY": str(config.worker.concurrency),
                "AI_REQUEST_TIMEOUT_MS": str(config.worker.ai_request_timeout_seconds * 1000),
            },
            secret_env=secret_env(shared_secret_env(conn)),
            files=[ConfigFile(CA_PATH, conn.ca_pem)],
            replicas=config.worker.replicas,
            zones=frozenset({Zone.BACKEND, Zone.EGRESS}),
            talks_to=data_services(config),
            sidecars=(redis_tunnel,),
            # It finishes its active jobs on SIGTERM (APP.md); the config rule keeps this above
            # the AI timeout.
            stop_grace_seconds=config.worker.stop_grace_seconds,
        )
        self.image = image
        self._place(platform, spec, depends_on)
