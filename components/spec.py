"""A target-neutral description of a service; the platforms turn it into resources.

Components know their domain (Postgres needs PGDATA and pg_hba rules); a spec carries that
knowledge to a platform, which owns runtime details and every hardening default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import pulumi

from components.config import Resources


class Zone(StrEnum):
    """Network zones; Docker maps each to a network, Kubernetes enforces flows instead."""

    FRONTEND = "frontend"  # reachable by the edge
    BACKEND = "backend"  # the data services and their clients; no route out
    EGRESS = "egress"  # may open HTTPS connections to the internet


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    # Published to the outside: on Docker bound to `host_ip:published`; on Kubernetes the
    # edge Service's port. Data services publish only in dev, on 127.0.0.1.
    published: int | None = None
    host_ip: str = "0.0.0.0"
    # An administrative port (the MinIO console): no other service's flow may reach it.
    admin: bool = False
    # What a client of this port gets: TLS on the wire, and how it proves who it is. The
    # platforms record both on each flow's resources, so reviews and diagrams read them there.
    tls: bool = False
    auth: str = "none"


@dataclass(frozen=True)
class Flow:
    """One allowed connection: ``client`` opens it to ``server``'s non-admin ports."""

    client: str
    server: str
    ports: tuple[Port, ...]

    @property
    def tls(self) -> bool:
        return all(p.tls for p in self.ports)

    @property
    def auth(self) -> str:
        return ",".join(sorted({p.auth for p in self.ports}))

    def describe(self) -> dict[str, object]:
        return {
            "client": self.client,
            "server": self.server,
            "ports": [p.port for p in self.ports],
            "tls": self.tls,
            "auth": self.auth,
        }


# Every file a service gets lives under this one directory: a platform delivers it as one unit
# (Docker: a volume filled before the service starts, mounted read-only; the root filesystem
# stays read-only, and a real daemon refuses uploads into a read-only root).
CONFIG_DIR = "/etc/aixsss"


@dataclass(frozen=True)
class ConfigFile:
    """A file mounted read-only into the container under CONFIG_DIR; secret files go through Secrets."""

    path: str
    content: pulumi.Input[str]
    secret: bool = False
    # Octal mode and owner uid; a server that checks its key file (Postgres) needs both.
    mode: int = 0o444
    owner: int | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith(f"{CONFIG_DIR}/") or "/../" in self.path:
            raise ValueError(f"{self.path}: service files live under {CONFIG_DIR}/ (delivered as one volume)")


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    size_gb: int
    # The volume ``name`` of the service ``shared_from`` (placed before), not one of this spec's
    # own: a run-once job that reaches PostgreSQL through the socket directory it shares. Docker
    # only (a Kubernetes volume is one pod's, and there PostgreSQL is the operator's).
    shared_from: str | None = None
    # False for a volume that only carries a socket between containers: no data of the service.
    holds_data: bool = True
    # The service's image makes ``path`` a directory owned by its user (the official postgres and
    # redis images do, and say so in their Dockerfiles). Docker copies that directory's contents,
    # owner and mode into a new named volume mounted there (its "populate a volume" behaviour;
    # tests/realdocker shows the owner), so no root job hands it over first on Docker. False: the
    # image leaves it to root (Silo's `VOLUME /data`) or is not known to.
    owned_by_image: bool = False


@dataclass(frozen=True)
class Probe:
    """How to tell the service is healthy.

    ``command`` works everywhere (Docker healthchecks only run commands); a Kubernetes
    platform prefers ``http_path`` or ``tcp_port`` when given, which need no tool in the image.
    """

    command: list[str]
    http_path: str | None = None
    port: int | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    tcp: bool = False
    start_period_seconds: int = 20


@dataclass(frozen=True)
class Security:
    run_as_user: int | None
    run_as_group: int | None = None
    read_only_root: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)
    cap_add: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcmeCertificate:
    """A public certificate from an ACME CA, kept renewed by the platform, as tls.crt/tls.key."""

    domain: str
    email: str
    server: str
    cluster_issuer: str
    # http01 or dns01 (tls.acmeSolver): which issuer and solver a platform with cert-manager uses.
    solver: Literal["http01", "dns01"]
    mount_dir: str
    webroot: str
    # Served until the first ACME certificate arrives, by a platform that needs one (Docker: the
    # edge serves lego's HTTP-01 webroot). None where the platform's issuer writes its own
    # temporary certificate first (cert-manager's issue-temporary-certificate on Kubernetes).
    bootstrap_cert_pem: pulumi.Output[str] | None = None
    bootstrap_key_pem: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class Sidecar:
    """A helper in the service's network namespace, started before the service and serving it on
    loopback only (the Redis TLS tunnel). Kubernetes: a native sidecar (an init container that
    keeps running). Docker: the container that owns the namespace the service's containers join,
    so it exists (and listens) before they start, as on Kubernetes."""

    name: str  # the container is named `<service>-<name>`
    image: pulumi.Input[str]
    command: list[str]
    resources: Resources
    security: Security
    files: list[ConfigFile]
    # The loopback port it listens on (outputs; the checks below connect to it).
    port: int
    # Works end to end: Docker's health check and Kubernetes' startup probe, which gate the
    # service's start. Commands, because a Kubernetes TCP probe dials the pod IP, never loopback.
    probe_command: list[str]
    # Still listening: Kubernetes' liveness probe (restarting the tunnel cannot fix its server).
    alive_command: list[str]
    # What the sidecar itself needs to pass its probe (the tunnel: Redis up). On Docker, where it
    # is a container of its own, it waits for that alone, not for what its service waits for,
    # so the api's tunnel comes up while the migrations run.
    after: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class Exporter:
    """A metrics exporter in the service's pod, reading it over loopback (or, like the edge's,
    from files and datagrams only the pod sees); Prometheus scrapes ``port`` at the pod's address.
    Kubernetes: a container of the pod with the platform's hardening, HTTP probes on
    ``health_path``, a PodMonitor and a NetworkPolicy for Prometheus's namespace
    (components/monitoring.py). Docker: a container in the service container's network
    namespace, with the platform's hardening, on the stack's metrics network through it."""

    name: str  # the container's and its port's name (at most 15 characters)
    image: pulumi.Input[str]
    port: int
    resources: Resources
    security: Security
    args: list[str] = field(default_factory=list[str])
    env: dict[str, str] = field(default_factory=dict[str, str])
    # Variables taken from the service's own secret_env (variable -> key there): the exporter
    # reads the service's password from the Secret that already holds it.
    env_from_service_secret: dict[str, str] = field(default_factory=dict[str, str])
    # Secrets of its own, not the service's (Docker only): single-host PostgreSQL's exporter logs
    # in with the current login role's password, which the server's container never holds.
    secret_env: dict[str, pulumi.Output[str]] = field(default_factory=dict[str, pulumi.Output[str]])
    files: list[ConfigFile] = field(default_factory=list[ConfigFile])
    health_path: str = "/"
    metrics_path: str = "/metrics"

    def __post_init__(self) -> None:
        if len(self.name) > 15:
            raise ValueError(f"{self.name}: a port name has at most 15 characters (IANA_SVC_NAME)")


@dataclass(frozen=True)
class Companion:
    """A second long-running process of the service's own image, beside it and on its data: the
    same volumes, files, environment and user (PostgreSQL's backup scheduler on Docker: pgBackRest
    reads the data directory and reaches the server through its socket, so it runs where the data
    is). Docker: a container on the service's networks, without the service's name. Kubernetes has
    none: there PostgreSQL is an operator's cluster (ServiceSpec.cluster), whose operator backs up."""

    name: str  # the container is named `<service>-<name>`
    command: list[str]
    resources: Resources
    # Healthy: the work it exists for is being done (for backups: archiving checked, and the
    # latest backup succeeded). `pulumi up` waits for it, so a broken repository fails the deploy.
    probe: Probe
    # What must exist before it starts, beyond the service itself (the backup bucket and its user).
    depends_on: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class ClusterBackup:
    """Continuous WAL archiving and scheduled base backups to an S3 bucket: CloudNativePG's Barman
    Cloud plugin on Kubernetes, pgBackRest on a Docker host."""

    endpoint: str  # https://host[:port]
    bucket: str
    # The folder of this cluster's backups in the bucket (a restored cluster writes a new one).
    server_name: str
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    # The CA of the endpoint's certificate (the stack's own store); None: the public trust store.
    ca_pem: pulumi.Input[str] | None
    # The stack service that is the endpoint (a flow to it), or None for an external one.
    store_service: str | None
    schedule: str  # six-field cron, seconds first (CloudNativePG ScheduledBackup)
    retention: str  # e.g. "14d"
    # What must exist before the first base backup (the bucket and its user): a failed first
    # Backup is not retried. WAL archiving needs no wait: PostgreSQL keeps segments and retries.
    store_ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class ClusterRestore:
    """Bootstrap from another cluster's backups instead of an empty database."""

    server_name: str
    target_time: str  # RFC 3339; empty: replay everything archived


@dataclass(frozen=True)
class ClusterLogin:
    """A role the clients log in as, a member of the cluster's owner (rotation's alternating
    users): ``password`` None means retired: first disabled (no login, no password, no
    membership), then, one rotation later, ``dropped`` (the operator drops it)."""

    name: str
    password: pulumi.Output[str] | None
    dropped: bool = False


@dataclass(frozen=True)
class PostgresCluster:
    """PostgreSQL run by an established operator where the platform has one (Kubernetes:
    CloudNativePG: replicas, failover, TLS, backups). A platform without one runs the spec's
    container as it is (Docker: one host, one instance)."""

    image: str  # the operator's PostgreSQL image
    instances: int
    synchronous_replicas: int
    database: str
    owner: str
    password: pulumi.Output[str]
    server_cert_pem: pulumi.Input[str]
    server_key_pem: pulumi.Input[str]
    ca_pem: pulumi.Input[str]
    parameters: dict[str, str]
    pg_hba: tuple[str, ...]
    storage_gb: int
    backup: ClusterBackup | None
    restore: ClusterRestore | None
    # The login roles the operator manages (CloudNativePG: spec.managed.roles).
    logins: tuple[ClusterLogin, ...] = ()


@dataclass(frozen=True)
class RedisHa:
    """Redis made highly available where the platform can run the set (Kubernetes only: the
    config refuses it on Docker). The spec that carries it is the proxy its clients dial (HAProxy,
    routing to the primary); ``nodes`` and ``sentinels`` are replicated sets whose members need
    stable names (Kubernetes: StatefulSets with a headless Service each, one claim per member)."""

    nodes: ServiceSpec  # Redis itself: one primary, the rest replicas (Sentinel decides which)
    sentinels: ServiceSpec


@dataclass(frozen=True)
class QueueBacklog:
    """A Redis list whose length is the work waiting (BullMQ's ``<prefix>:<queue>:wait``), read
    through ``server``'s Service with the clients' password and the stack CA (TLS)."""

    server: str
    port: int
    list_name: str
    target_length: int  # waiting jobs per replica the autoscaler aims at
    password: pulumi.Output[str]
    ca_pem: pulumi.Output[str]


@dataclass(frozen=True)
class Autoscale:
    """Replicas between the spec's ``replicas`` (the floor) and ``max_replicas``, driven by the
    queue's backlog or by CPU (percent of the request), where the platform has an autoscaler."""

    max_replicas: int
    cpu_percent: int | None = None
    queue: QueueBacklog | None = None


@dataclass(frozen=True)
class Handover:
    """A stateless service replaced without failing work: the new instances start beside the old
    ones and are healthy first; an old instance then leaves its clients' rotation, finishes what it
    has, and only then stops.

    Docker: each of the service's containers and config volumes carries a revision in its name,
    so a change creates a whole new set beside the old one (Pulumi's create-before-delete), and
    the old set is deleted afterwards, dependents first. A service that publishes host ports
    cannot overlap (the port is held) and is replaced stop-first there. Kubernetes: a rolling
    update that never goes below the desired count, a ``preStop`` pause while the endpoints drop
    the pod, and a grace period that covers the drain.
    """

    # The longest request or job an old instance may be finishing when it is asked to stop.
    drain_seconds: int
    # False: the process exits at once when asked to stop (the api: NestJS without shutdown hooks
    # exits on SIGTERM with requests in flight). The platform then holds the stop back until no
    # request is left: Kubernetes pauses before the signal (preStop) for the whole drain; Docker,
    # which has no such hook, puts a draining proxy in the service's namespace on its port, which
    # is stopped first (nginx SIGQUIT: finishes requests, accepts none), and moves the app to
    # ``app_port``, told through the variable ``app_port_env``.
    drains_itself: bool = True
    app_port: int | None = None
    app_port_env: str = "PORT"


@dataclass(frozen=True)
class Routes:
    """A proxy that the platform tells which instances of its upstreams (``talks_to``) serve,
    where a name cannot follow a side-by-side replacement cleanly.

    Docker puts a container's DNS name and its address up and down together: a new instance is
    listed before it listens, and an old one stays in a lookup the proxy holds after its address
    is gone. nginx also fails a request outright when its address list changes between two tries
    of that request. So on Docker the platform writes an upstream's instances, as soon as a new set
    of them exists, into ``directory``/``<service>``/: one ``line`` per instance (``{address}``:
    its container name and port) and the URL of its health check. The proxy takes them once every
    new instance answers ``check`` (the URL appended), then reloads (``reload``, which returns once
    the reload took and fails if it did not): its new workers take only the new set, its old ones
    finish what they started, and only then does ``pulumi up`` delete the old set. A Kubernetes
    Service's address stays while its endpoints follow readiness: nothing is written there (the
    proxy names the Service).
    """

    directory: str
    line: str
    check: tuple[str, ...]
    reload: tuple[str, ...]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    image: pulumi.Input[str]
    resources: Resources
    security: Security
    probe: Probe | None
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict[str, str])
    secret_env: dict[str, pulumi.Output[str]] = field(default_factory=dict[str, pulumi.Output[str]])
    # secret_env variables the image also reads from the file `<NAME>_FILE` names: where the
    # platform delivers files (Kubernetes) they go as secret files, out of the environment.
    file_env: frozenset[str] = frozenset()
    ports: list[Port] = field(default_factory=list[Port])
    volumes: list[Volume] = field(default_factory=list[Volume])
    files: list[ConfigFile] = field(default_factory=list[ConfigFile])
    replicas: int = 1
    zones: frozenset[Zone] = frozenset({Zone.BACKEND})
    # Servers this service opens connections to (by spec name): the allowed network flows.
    talks_to: tuple[str, ...] = ()
    # Run to completion once per release (migrations, bootstrap) instead of serving.
    run_once: bool = False
    # A hash of what makes a new release of a run-once job (image, command).
    release: str = ""
    acme: AcmeCertificate | None = None
    sidecars: tuple[Sidecar, ...] = ()
    # PostgreSQL as an operator-managed cluster where the platform has the operator.
    cluster: PostgresCluster | None = None
    # How long a stopping container may take before it is killed; None: the platform's default.
    stop_grace_seconds: int | None = None
    companions: tuple[Companion, ...] = ()
    # An init as PID 1 that reaps what the main process leaves behind (Docker: docker-init, tini).
    # PostgreSQL with pgBackRest's asynchronous archive-push needs it: the daemonized push is
    # orphaned, and were the postmaster PID 1 it would adopt it, take its error exit for a
    # crashed backend and restart every session (pgbackrest/pgbackrest#2016).
    init: bool = False
    exporters: tuple[Exporter, ...] = ()
    # Redis as a Sentinel-managed set behind this spec's proxy, where the platform runs one.
    redis_ha: RedisHa | None = None
    # Kubernetes: an autoscaler owns the replica count (the Deployment leaves it out).
    autoscale: Autoscale | None = None
    # Replaced without failing work (api, worker, web, edge); None: stopped, then started anew.
    handover: Handover | None = None
    # How the platform announces its upstreams' instances to it (a proxy; Routes).
    routes: Routes | None = None

    @property
    def stateful(self) -> bool:
        return any(v.shared_from is None for v in self.volumes)

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)


def secret_env(values: Mapping[str, pulumi.Input[str]]) -> dict[str, pulumi.Output[str]]:
    """Wrap every value as a secret Output; a derived value (a URL) stays secret too."""
    return {k: pulumi.Output.secret(v) for k, v in values.items()}
