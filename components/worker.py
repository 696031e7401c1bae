"""The BullMQ worker: no ports; talks to the data services and to AI providers over HTTPS."""

from __future__ import annotations

import pulumi

from components import cache
from components.api import UID, data_services
from components.app_env import AppConnections, shared_env, shared_secret_env
from components.app_images import AppImage
from components.config import StackConfig
from components.platforms.base import Platform
from components.service import CA_PATH, Service
from components.spec import (
    Autoscale,
    ConfigFile,
    Handover,
    Probe,
    QueueBacklog,
    Security,
    ServiceSpec,
    Sidecar,
    Zone,
    secret_env,
)

NAME = "worker"
# The app gives BullMQ no prefix, so BullMQ's default; waiting jobs are the list <prefix>:<queue>:wait.
BULLMQ_PREFIX = "bull"


def queue_wait_list(queue_name: str) -> str:
    return f"{BULLMQ_PREFIX}:{queue_name}:wait"


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
        queue_password: pulumi.Output[str] | None = None,
    ) -> None:
        """``queue_password``: the Redis password the clients hold (the current slot), which the
        autoscaler reads the queue with (worker.autoscale, Kubernetes)."""
        super().__init__("Worker", NAME, opts)
        autoscale = None
        if config.worker.autoscale and platform.name == "kubernetes" and queue_password is not None:
            backlog = QueueBacklog(
                server=cache.NAME,  # the Service the app dials (HAProxy's with cache.highAvailability)
                port=cache.PORT,
                list_name=queue_wait_list(config.api.ai_queue_name),
                target_length=config.worker.queue_length_target,
                password=queue_password,
                ca_pem=conn.ca_pem,
            )
            autoscale = Autoscale(max_replicas=config.worker.max_replicas, queue=backlog)
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
            autoscale=autoscale,
            # It finishes its active jobs on SIGTERM (APP.md); the config rule keeps this above
            # the AI timeout.
            stop_grace_seconds=config.worker.stop_grace_seconds,
            handover=Handover(drain_seconds=config.worker.stop_grace_seconds),
        )
        self.image = image
        self._place(platform, spec, depends_on)
