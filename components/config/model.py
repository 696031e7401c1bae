"""The whole stack config as pydantic models: the one place defaults and rules live.

A rule about one value sits on the value's type (``Replicas``, ``BucketName``…); a rule between
values sits on the section that holds them, as ``problems()``, which yields every broken rule
rather than stopping at the first, so a user sees all of them in one run.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from components.config.releases import (
    MIGRATION_RULE,
    NAME_RULE,
    Release,
    applied_since,
    blocking_step,
    is_migration_name,
    is_release_name,
    older_head,
    parse_history,
    refusal,
)

PROJECT = "aixsss"

# Kubernetes and Protobuf carry counts as int32; nothing the stack sizes needs more.
INT32_MAX = 2**31 - 1
# pulumi-tls computes validity as a Go time.Duration (int64 nanoseconds): it overflows past this.
GO_DURATION_MAX_HOURS = (2**63 - 1) // (3600 * 10**9)
# Docker refuses --cpus below 0.01 and --memory below 6 MB (daemon/container validation).
DOCKER_MIN_CPU_MILLIS = 10
DOCKER_MIN_MEMORY_MB = 6
# Connections PostgreSQL must keep free beyond the app's pools: superuser_reserved_connections (3),
# healthchecks, and an operator's psql during an incident.
DATABASE_RESERVED_CONNECTIONS = 10
# Redis needs room beyond maxmemory for client buffers, AOF rewrite and fork copy-on-write.
REDIS_OVERHEAD_MIN_MB = 64

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# The distribution reference grammar (github.com/distribution/reference, regexp.go), without
# upper case in the repository path, which Docker refuses.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
_IMAGE = re.compile(
    rf"^{_REGISTRY}?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)
# Names no public CA can validate: special-use TLDs (RFC 2606, 6761, 6762, 7686, 8375, 9476).
# The second-level names IANA reserves for examples do resolve, but Let's Encrypt refuses them by
# policy; the shipped stack files use them as placeholders, so they warn instead (warnings()).
_NOT_PUBLIC_TLDS = ("localhost", "local", "test", "example", "invalid", "internal", "onion", "alt", "home.arpa")
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
KUBERNETES_RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Target(StrEnum):
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class RuleViolation(ValueError):
    """A rule broken by one key: its flat key, the value found and what is allowed. ``uses`` names
    the other keys the rule read, so it is not reported when one of them was refused (its default
    stood in, and the rule would blame a value the user never gave)."""

    def __init__(self, key: str, value: object, allowed: str, uses: tuple[str, ...] = ()) -> None:
        super().__init__(f"{key}={value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
        self.uses = uses


# --------------------------------------------------------------------------- one value


def _matching(pattern: re.Pattern[str], allowed: str, *, optional: bool = False) -> AfterValidator:
    """A field rule: the value matches ``pattern`` (or, if ``optional``, is empty)."""

    def check(value: str) -> str:
        if (value or not optional) and not pattern.match(value):
            raise ValueError(allowed)
        return value

    return AfterValidator(check)


_LABEL_RULE = "a DNS-1123 label: at most 63 of a-z, 0-9 and '-', starting and ending alphanumeric"


def _namespace(value: str) -> str:
    if value and not _DNS_LABEL.match(value):
        raise ValueError(_LABEL_RULE)
    if value in KUBERNETES_RESERVED_NAMESPACES or value.startswith("kube-"):
        raise ValueError("a namespace of the stack's own: default and kube-* belong to the cluster")
    return value


def _bucket(value: str) -> str:
    """S3 general purpose bucket naming rules (AWS S3 user guide, "Bucket naming rules")."""
    problems = []
    if not 3 <= len(value) <= 63:
        problems.append("3 to 63 characters")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", value):
        problems.append("only a-z, 0-9, '.' and '-', starting and ending with a letter or digit")
    if ".." in value or ".-" in value or "-." in value:
        problems.append("no '..', '.-' or '-.'")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        problems.append("not formatted as an IP address")
    if value.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or value.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    ):
        problems.append("none of the prefixes/suffixes S3 reserves (xn--, sthree-, -s3alias, --ol-s3, …)")
    if problems:
        raise ValueError("an S3 bucket name: " + "; ".join(problems))
    return value


def _queue_name(value: str) -> str:
    # BullMQ's QueueBase throws "Queue name cannot contain :" (':' separates its Redis keys).
    if not value or ":" in value or value != value.strip():
        raise ValueError("a BullMQ queue name: not empty, no ':' and no surrounding spaces")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError("an address range such as 10.96.0.1/32") from exc
    return value


def _https_url(value: str) -> str:
    if not re.fullmatch(r"https://[^\s/]+(/\S*)?", value):
        raise ValueError("an https:// URL")
    return value


def _command(value: list[str]) -> list[str]:
    if not value or any(not part.strip() for part in value):
        raise ValueError("a non-empty list of non-empty arguments, e.g. [prisma, migrate, deploy]")
    return value


Hostname = Annotated[str, _matching(_HOSTNAME, "a DNS name such as app.example.com (lower case, at least two labels)")]
Email = Annotated[str, _matching(_EMAIL, "an e-mail address such as ops@example.com", optional=True)]
Image = Annotated[
    str,
    _matching(
        _IMAGE,
        "an image reference such as postgres:16 or registry.example.com/team/app@sha256:<digest> "
        "(lower-case repository path)",
    ),
]
OptionalImage = Annotated[
    str, _matching(_IMAGE, "empty, or an image reference such as registry.example.com/team/api:1.4.0", optional=True)
]
DnsLabel = Annotated[str, _matching(_DNS_LABEL, _LABEL_RULE, optional=True)]
DnsSubdomain = Annotated[
    str,
    _matching(
        _DNS_SUBDOMAIN,
        "a DNS-1123 subdomain: at most 253 of a-z, 0-9, '-' and '.', each part alphanumeric at both ends",
        optional=True,
    ),
]
NamespaceName = Annotated[str, AfterValidator(_namespace)]
BucketName = Annotated[str, AfterValidator(_bucket)]
QueueName = Annotated[str, AfterValidator(_queue_name)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Command = Annotated[list[str], AfterValidator(_command)]
Positive = Annotated[int, Field(gt=0, le=INT32_MAX)]
Replicas = Annotated[int, Field(gt=0, le=INT32_MAX)]
Hours = Annotated[int, Field(gt=0, le=GO_DURATION_MAX_HOURS)]


def image_is_pinned(image: str) -> bool:
    """A tag other than ``latest``, or a digest; ``repo`` alone means ``latest``."""
    if _DIGEST.search(image):
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def domain_public_ca_refuses(domain: str) -> str | None:
    """Why no public ACME CA could issue for ``domain`` (it cannot exist in public DNS), or None."""
    with_dot = "." + domain
    for tld in _NOT_PUBLIC_TLDS:
        if with_dot.endswith("." + tld):
            return f".{tld} is a special-use name that does not exist in public DNS"
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return None
    return "an IP address"


def domain_is_documentation_example(domain: str) -> bool:
    """example.com/.net/.org exist in DNS but are reserved (RFC 2606): Let's Encrypt refuses them."""
    return any(("." + domain).endswith("." + reserved) for reserved in _EXAMPLE_DOMAINS)


# --------------------------------------------------------------------------- sections


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        """Rules between this section's values (and the stack's); none by default."""
        return iter(())


class Resources(Section):
    """Requests equal limits: predictable placement and no noisy neighbours."""

    cpu_millis: Positive = 500
    memory_mb: Positive = 512

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if stack.target is Target.DOCKER:
            if self.cpu_millis < DOCKER_MIN_CPU_MILLIS:
                yield RuleViolation(
                    f"{prefix}.cpuMillis",
                    self.cpu_millis,
                    f"at least {DOCKER_MIN_CPU_MILLIS} on Docker (--cpus 0.01)",
                    ("target",),
                )
            if self.memory_mb < DOCKER_MIN_MEMORY_MB:
                yield RuleViolation(
                    f"{prefix}.memoryMb",
                    self.memory_mb,
                    f"at least {DOCKER_MIN_MEMORY_MB} on Docker (its minimum)",
                    ("target",),
                )


# The object store: Silo, the maintained fork of MinIO (same MINIO_* variables, `server /data`,
# health paths and on-disk format), and its client. MinIO's images left Docker Hub in 2026-09 and
# its community edition is unpatched (APP.md). Dated tags as the fork publishes them.
SILO_IMAGE = "pgsty/silo:RELEASE.2026-09-16T00-00-00Z"
SILO_CLIENT_IMAGE = "pgsty/mc:RELEASE.2026-09-16T00-00-00Z"
APP_IMAGES = ("api", "worker", "web")


class Images(Section):
    postgres: Image = "postgres:16"
    redis: Image = "redis:7"
    minio: Image = SILO_IMAGE
    minio_client: Image = SILO_CLIENT_IMAGE
    # The application has no published image (APP.md): these name images you built and pushed,
    # or stay empty when app.source is set and the program builds them (images/app/Dockerfile).
    api: OptionalImage = ""
    worker: OptionalImage = ""
    web: OptionalImage = ""
    # CloudNativePG's PostgreSQL image (Kubernetes): its operator runs PostgreSQL, not images.postgres.
    postgres_cluster: Image = "ghcr.io/cloudnative-pg/postgresql:16.10"
    # Docker with backups: PostgreSQL plus pgBackRest. Empty: the program builds
    # images/postgres/Dockerfile on the Docker host from images.postgres (pulumi-docker Image).
    postgres_pgbackrest: OptionalImage = ""
    edge: Image = "nginxinc/nginx-unprivileged:1.29"
    acme_client: Image = "goacme/lego:v4.26.0"
    # Exporters beside Redis and the edge (monitoring.enabled), and beside PostgreSQL on Docker
    # (CloudNativePG exports its own): the releases components/conf/exporters.py names and was
    # checked against.
    redis_exporter: Image = "oliver006/redis_exporter:v1.88.0"
    postgres_exporter: Image = "quay.io/prometheuscommunity/postgres-exporter:v0.20.1"
    # Docker with backups: the age of the last pgBackRest backup.
    pgbackrest_exporter: Image = "woblerr/pgbackrest_exporter:v0.23.0"
    # The proxy in front of Redis's Sentinel-managed nodes (cache.highAvailability, Kubernetes).
    haproxy: Image = "haproxy:3.2.6"
    nginx_exporter: Image = "nginx/nginx-prometheus-exporter:1.5.3"
    mtail: Image = "ghcr.io/google/mtail:3.0.9"

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        built = bool(stack.app.source)
        for name in APP_IMAGES:
            image = getattr(self, name)
            if built and image:
                yield RuleViolation(
                    f"{prefix}.{name}",
                    image,
                    f"empty while app.source is set (the program builds {name} from it); unset one of them",
                    ("app.source",),
                )
            elif not built and not image:
                yield RuleViolation(
                    f"{prefix}.{name}",
                    image,
                    f"the {name} image to deploy, or set app.source to an application checkout to build it "
                    "(the application publishes no image)",
                    ("app.source",),
                )
        if self.postgres_pgbackrest and not (stack.target is Target.DOCKER and stack.backup.enabled):
            yield RuleViolation(
                f"{prefix}.postgresPgbackrest",
                self.postgres_pgbackrest,
                "empty unless target is docker and backup.enabled is true (the only place it runs)",
                ("target", "backup.enabled"),
            )
        if stack.environment is Environment.DEV:
            return
        for field, image in self.model_dump(by_alias=True).items():
            if image and not image_is_pinned(image):
                yield RuleViolation(
                    f"{prefix}.{field}",
                    image,
                    f"a pinned image (a tag other than latest, or @sha256 digest) in {stack.environment}",
                    ("environment",),
                )


_REPOSITORY_PREFIX = re.compile(rf"^{_REGISTRY}?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")


def _registry(value: str) -> str:
    host = value.split("/", 1)[0]
    # pulumi-docker pushes only fully qualified names (reference.ParseNamed): a registry host first.
    qualified = "/" in value and ("." in host or ":" in host or host == "localhost")
    if value and not (_REPOSITORY_PREFIX.match(value) and qualified):
        raise ValueError(
            "a registry host and repository prefix such as registry.example.com/team or docker.io/team (no tag)"
        )
    return value


class AppSettings(Section):
    """The application to deploy when it is built here rather than given as images."""

    # A checkout of the application (absolute, or relative to the project directory): api,
    # worker and web are built from it with this repo's images/app/Dockerfile.
    source: str = ""
    # Where built images are pushed for Kubernetes, e.g. registry.example.com/team; pods pull them
    # by digest. On Docker the images are built on the host that runs them and never pushed.
    registry: Annotated[str, AfterValidator(_registry)] = ""
    # The platform the images are built for: the Docker host's or the cluster nodes', not the
    # machine running Pulumi (a laptop may be arm64, the servers amd64).
    platform: Literal["linux/amd64", "linux/arm64"] = "linux/amd64"

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if self.source and stack.target is Target.KUBERNETES and not self.registry:
            yield RuleViolation(
                f"{prefix}.registry",
                "",
                "a registry to push the built images to (e.g. registry.example.com/team): a cluster pulls "
                "images, it cannot use ones built on this machine",
                (f"{prefix}.source", "target"),
            )


def _docker_host(value: str) -> str:
    if not value.startswith(("unix://", "ssh://", "tcp://", "npipe://")):
        raise ValueError("a unix://, ssh://, tcp:// or npipe:// address")
    return value


class DockerSettings(Section):
    host: Annotated[str, AfterValidator(_docker_host)] = "unix:///var/run/docker.sock"
    publish_data_ports: bool = False

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if self.publish_data_ports and stack.environment is Environment.PROD:
            yield RuleViolation(
                f"{prefix}.publishDataPorts",
                True,
                "false in prod (data ports on the host are for debugging dev)",
                ("environment",),
            )


class KubernetesSettings(Section):
    kubeconfig: str = ""
    context: str = ""
    namespace: NamespaceName = ""
    render_yaml_to: str = ""
    storage_class: DnsSubdomain = ""
    exposure: Literal["gateway", "loadBalancer"] = "loadBalancer"
    gateway_name: DnsSubdomain = ""
    gateway_namespace: DnsLabel = ""
    # Gateway exposure: the ranges the gateway's proxies connect to the edge from (the edge
    # believes X-Forwarded-For/-Proto from them only) and the namespace they run in, the one
    # the edge admits (default: gatewayNamespace, else the stack's own).
    gateway_addresses: list[Annotated[str, AfterValidator(_cidr)]] = []
    gateway_proxy_namespace: DnsLabel = ""
    # A kubernetes.io/dockerconfigjson Secret in the namespace, for a private app.registry.
    image_pull_secret: DnsSubdomain = ""
    # Where the CloudNativePG operator runs (its Helm chart's default): it reaches the instances.
    cnpg_namespace: DnsLabel = "cnpg-system"
    # The API server's address range: CloudNativePG's instance manager talks to it. The address
    # is the cluster's own; the default lets the instances reach 443/6443 anywhere.
    api_server_cidr: Annotated[str, AfterValidator(_cidr)] = "0.0.0.0/0"
    # Where the KEDA operator runs (its Helm chart's usual namespace): with worker.autoscale it
    # reads the queue's length from Redis, the one flow admitted from outside the stack to it.
    keda_namespace: DnsLabel = "keda"

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if stack.target is Target.KUBERNETES and self.exposure == "gateway" and not self.gateway_name:
            yield RuleViolation(
                f"{prefix}.gatewayName",
                "",
                "the name of an existing Gateway when kubernetes.exposure is gateway",
                ("target", f"{prefix}.exposure"),
            )
        if stack.target is Target.KUBERNETES and self.exposure == "gateway":
            yield from self._gateway_address_problems(prefix)

    def _gateway_address_problems(self, prefix: str) -> Iterator[RuleViolation]:
        key, uses = f"{prefix}.gatewayAddresses", ("target", f"{prefix}.exposure")
        if not self.gateway_addresses:
            yield RuleViolation(
                key,
                [],
                "the address ranges the Gateway's proxies reach the edge from (e.g. [10.244.0.0/16]) when "
                "kubernetes.exposure is gateway: the edge believes X-Forwarded-For/-Proto only from them",
                uses,
            )
        for cidr in self.gateway_addresses:
            if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                yield RuleViolation(
                    key,
                    self.gateway_addresses,
                    f"the Gateway's own ranges, not {cidr}: trusting every address lets any client choose the "
                    "address its rate limit counts and claim HTTPS",
                    uses,
                )


class DatabaseSettings(Resources):
    storage_gb: Positive = 10
    max_connections: Annotated[int, Field(gt=0, le=262143)] = 100  # PostgreSQL's MAX_BACKENDS
    # Prisma's pool per process (connection_limit); without it Prisma opens 2 x cores + 1.
    connection_limit: Annotated[int, Field(gt=0, le=1000)] = 10
    # Kubernetes (CloudNativePG): instances (one primary, the rest hot standbys it fails over to)
    # and how many of them must confirm each commit (0: asynchronous replication).
    instances: Annotated[int, Field(ge=1, le=9)] = 1
    synchronous_replicas: Annotated[int, Field(ge=0, le=8)] = 0
    memory_mb: Positive = 1024

    @property
    def shared_buffers_mb(self) -> int:
        # A quarter of the container's memory, the usual starting point, never below 32 MB.
        return max(32, self.memory_mb // 4)

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        # shared_buffers, plus a base for the postmaster, plus a few MB per backend.
        needed = self.shared_buffers_mb + 64 + 2 * self.max_connections
        if self.memory_mb < needed:
            yield RuleViolation(
                f"{prefix}.memoryMb",
                self.memory_mb,
                f"at least {needed}: shared_buffers ({self.shared_buffers_mb} MB) + 64 MB + 2 MB for each "
                f"of database.maxConnections ({self.max_connections})",
                (f"{prefix}.maxConnections",),
            )
        if stack.target is Target.DOCKER and self.instances != 1:
            yield RuleViolation(
                f"{prefix}.instances",
                self.instances,
                "1 on Docker (one host: a standby on the same host adds no failure domain; use Kubernetes)",
                ("target",),
            )
        if self.synchronous_replicas >= self.instances:
            yield RuleViolation(
                f"{prefix}.synchronousReplicas",
                self.synchronous_replicas,
                f"fewer than database.instances ({self.instances}): a commit cannot wait for more standbys than exist",
                (f"{prefix}.instances",),
            )
        if stack.environment is Environment.PROD and stack.target is Target.KUBERNETES and self.instances < 2:
            yield RuleViolation(
                f"{prefix}.instances",
                self.instances,
                "at least 2 in prod on Kubernetes (a failover needs a standby)",
                ("environment", "target"),
            )
        budget = stack.connection_budget
        if budget > self.max_connections:
            yield RuleViolation(
                f"{prefix}.maxConnections",
                self.max_connections,
                f"at least {budget}: (api {stack.api.peak_replicas} + worker {stack.worker.peak_replicas} replicas"
                f" at most"
                f" + 1 of each during a rollout + 1 migration) x database.connectionLimit {self.connection_limit}"
                f" + {DATABASE_RESERVED_CONNECTIONS} reserved",
                (
                    *("api.replicas", "worker.replicas", "api.maxReplicas", "worker.maxReplicas"),
                    f"{prefix}.connectionLimit",
                ),
            )


class CacheSettings(Resources):
    maxmemory_mb: Positive = 256
    storage_gb: Positive = 2
    # Kubernetes: three Redis nodes (one primary, two replicas; each with these resources and
    # storage), three Sentinels that promote a replica when the primary is lost, and HAProxy as
    # Service `redis`, routing to whichever node is primary (components/conf/redis_ha.py).
    high_availability: bool = False

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        headroom = max(REDIS_OVERHEAD_MIN_MB, self.memory_mb // 4)
        if self.maxmemory_mb + headroom > self.memory_mb:
            yield RuleViolation(
                f"{prefix}.maxmemoryMb",
                self.maxmemory_mb,
                f"at most {self.memory_mb - headroom}: cache.memoryMb ({self.memory_mb}) less a quarter "
                f"(≥ {REDIS_OVERHEAD_MIN_MB} MB) for buffers and AOF rewrites, or Redis is killed before it "
                "refuses writes",
                (f"{prefix}.memoryMb",),
            )
        if stack.target is Target.DOCKER and self.high_availability:
            yield RuleViolation(
                f"{prefix}.highAvailability",
                self.high_availability,
                "false on Docker (one host: replicas and Sentinels on the same host add no failure domain; "
                "use Kubernetes)",
                ("target",),
            )
        if stack.environment is Environment.PROD and stack.target is Target.KUBERNETES and not self.high_availability:
            yield RuleViolation(
                f"{prefix}.highAvailability",
                self.high_availability,
                "true in prod on Kubernetes (Sentinel-managed replicas behind HAProxy: a lost primary is replaced)",
                ("environment", "target"),
            )


class ObjectStoreSettings(Resources):
    # bundled: Silo (the MinIO fork) in the stack; external: any S3 endpoint you run, with the
    # bucket created and the app's credentials supplied as secrets (minioAppAccessKey/SecretKey).
    mode: Literal["bundled", "external"] = "bundled"
    endpoint: Annotated[str, AfterValidator(lambda v: _https_url(v) if v else v)] = ""
    region: Annotated[str, Field(min_length=1, max_length=64)] = "us-east-1"
    bucket: BucketName = "aixsss"
    storage_gb: Positive = 20
    # Versioning on the bundled store's buckets (this one and backup.bucket): an object
    # overwritten or deleted stays as a non-current version for noncurrentVersionDays, then a
    # lifecycle rule expires it; the app's and the backups' users cannot delete versions
    # (components/object_store.py). False suspends versioning; the rule stays, to expire what is
    # left. With mode external the program configures nothing on your store: set both up there.
    versioning: bool = True
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 14

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        if self.mode == "bundled" and not self.versioning and stack.environment is Environment.PROD:
            yield RuleViolation(
                f"{prefix}.versioning",
                False,
                "true in prod with the bundled store: a deleted or overwritten object (a backup among them) "
                "must stay recoverable for objectStore.noncurrentVersionDays",
                (f"{prefix}.mode", "environment"),
            )
        if self.mode == "external" and not self.endpoint:
            yield RuleViolation(
                f"{prefix}.endpoint",
                "",
                "the https:// endpoint of your S3 service when objectStore.mode is external",
                (f"{prefix}.mode",),
            )
        port = urlsplit(self.endpoint).port if self.endpoint else None
        if self.mode == "external" and stack.target is Target.KUBERNETES and port not in (None, 443):
            yield RuleViolation(
                f"{prefix}.endpoint",
                self.endpoint,
                "an endpoint on port 443 on Kubernetes: the pods' egress policy opens HTTPS on 443 to public "
                "addresses only (README: object store)",
                (f"{prefix}.mode", "target"),
            )
        if self.mode == "bundled" and self.endpoint:
            yield RuleViolation(
                f"{prefix}.endpoint",
                self.endpoint,
                "empty when objectStore.mode is bundled (the stack's own store is used); set mode external",
                (f"{prefix}.mode",),
            )


class ApiSettings(Resources):
    replicas: Replicas = 1
    # The api image bakes the Prisma CLI, its engines and the schema (images/app/Dockerfile): the
    # job runs with no network.
    migration_command: Command = ["prisma", "migrate", "deploy", "--schema", "/app/prisma/schema.prisma"]
    ai_queue_name: QueueName = "ai-jobs"
    # Kubernetes: a HorizontalPodAutoscaler on CPU (metrics-server required) between replicas
    # and maxReplicas; the target is a percent of the CPU request.
    autoscale: bool = False
    max_replicas: Replicas = 6
    cpu_target_percent: Annotated[int, Field(ge=10, le=100)] = 70

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        yield from _autoscale_problems(stack, prefix, self.autoscale, self.replicas, self.max_replicas, "")

    @property
    def peak_replicas(self) -> int:
        return self.max_replicas if self.autoscale else self.replicas


# Seconds a stopping worker may need beyond its longest AI call: closing BullMQ, Prisma and Redis.
WORKER_SHUTDOWN_MARGIN_SECONDS = 30


class WorkerSettings(Resources):
    replicas: Replicas = 1
    concurrency: Positive = 4
    # The app's AI_REQUEST_TIMEOUT_MS, in seconds: the longest one provider call may take (its
    # default is 120 s).
    ai_request_timeout_seconds: Annotated[int, Field(gt=0, le=3600)] = 120
    # On SIGTERM the worker finishes its active jobs before exiting (APP.md); it is killed after
    # this long (Docker stop timeout; Kubernetes terminationGracePeriodSeconds, with a few seconds'
    # margin: platforms/kubernetes_handover.py).
    stop_grace_seconds: Annotated[int, Field(gt=0, le=86400)] = 180
    # Kubernetes: a KEDA ScaledObject on the queue's wait list between replicas and maxReplicas,
    # aiming at queueLengthTarget waiting jobs per worker (two rounds of the default concurrency).
    autoscale: bool = False
    # 4: with the defaults, staging's database.maxConnections (100) still covers the peak.
    max_replicas: Replicas = 4
    queue_length_target: Positive = 8

    @property
    def peak_replicas(self) -> int:
        return self.max_replicas if self.autoscale else self.replicas

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        keda = "the KEDA operator (>= 2.20; README: Autoscaling)"
        yield from _autoscale_problems(stack, prefix, self.autoscale, self.replicas, self.max_replicas, keda)
        if self.autoscale and stack.target is Target.KUBERNETES and not stack.kubernetes.keda_namespace:
            yield RuleViolation(
                "kubernetes.kedaNamespace",
                "",
                "the namespace the KEDA operator runs in (e.g. keda) when worker.autoscale is true: only it "
                "is admitted to Redis to read the queue's length",
                (f"{prefix}.autoscale",),
            )
        needed = self.ai_request_timeout_seconds + WORKER_SHUTDOWN_MARGIN_SECONDS
        if self.stop_grace_seconds < needed:
            yield RuleViolation(
                f"{prefix}.stopGraceSeconds",
                self.stop_grace_seconds,
                f"at least {needed}: worker.aiRequestTimeoutSeconds ({self.ai_request_timeout_seconds}) + "
                f"{WORKER_SHUTDOWN_MARGIN_SECONDS} s to close its connections, or a stop kills jobs in flight",
                (f"{prefix}.aiRequestTimeoutSeconds",),
            )


def _autoscale_problems(
    stack: StackConfig, prefix: str, on: bool, replicas: int, max_replicas: int, needs: str
) -> Iterator[RuleViolation]:
    """An autoscaler runs on Kubernetes only, between replicas (the floor) and maxReplicas."""
    if on and stack.target is Target.DOCKER:
        yield RuleViolation(
            f"{prefix}.autoscale",
            True,
            f"false on Docker (no autoscaler there; set {prefix}.replicas, README: Scaling on Docker)",
            ("target",),
        )
    if on and max_replicas < replicas:
        yield RuleViolation(
            f"{prefix}.maxReplicas",
            max_replicas,
            f"at least {prefix}.replicas ({replicas}), the autoscaler's floor"
            + (f"; Kubernetes with {needs}" if needs else ""),
            (f"{prefix}.autoscale", f"{prefix}.replicas"),
        )


class WebSettings(Resources):
    replicas: Replicas = 1
    memory_mb: Positive = 128
    cpu_millis: Positive = 200


class EdgeSettings(Resources):
    replicas: Replicas = 1
    memory_mb: Positive = 256
    client_max_body_size_mb: Positive = 10
    # nginx limit_req on /api per client address (conf/nginx.py): `delay`+1 requests at once, the
    # rest of `burst` queued at `perSecond`, then 429. Sized from the web app (apps/web/src): a
    # deep link into a project makes about 10 calls at once (auth/me, projects, ai-profiles, the
    # project, world view, characters, episodes once per canvas node that shows them (3), the
    # selected episode's scenes); delay 20 serves two such loads (a reload, a second tab) with no
    # wait, as today's `burst=20 nodelay` did. Its widest fan-out is the export and continuity
    # report: one call per episode at once, up to 100 (packages/shared caps episodeCount at 100),
    # so burst 120 queues that plus a page load instead of refusing part of it (the app then
    # shows empty episodes), and stays under one HTTP/2 connection's 128 concurrent streams.
    # The api still gets at most `delay`+1 at once and `perSecond` after: burst costs only the
    # edge's memory for the queued requests.
    api_rate_per_second: Positive = 10
    api_rate_burst: Positive = 120
    api_rate_delay: Annotated[int, Field(ge=0, le=INT32_MAX)] = 20

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        yield from super().problems(stack, prefix)
        if self.api_rate_delay > self.api_rate_burst:
            yield RuleViolation(
                f"{prefix}.apiRateDelay",
                self.api_rate_delay,
                f"at most edge.apiRateBurst ({self.api_rate_burst}): requests past the burst are refused, so"
                " a larger delay delays nothing",
                (f"{prefix}.apiRateBurst",),
            )
        # One Docker host has one pair of public ports: a second edge could not bind them, and
        # on one host it would add no failure domain either (README: one edge per Docker host).
        if stack.target is Target.DOCKER and self.replicas > 1:
            yield RuleViolation(
                f"{prefix}.replicas",
                self.replicas,
                "1 on Docker (one host publishes ports 80/443 once; run more edges on Kubernetes)",
                ("target",),
            )


class TlsSettings(Section):
    public_certificate: Literal["self-signed", "acme", "supplied"] = "self-signed"
    acme_email: Email = ""
    acme_server: HttpsUrl = "https://acme-v02.api.letsencrypt.org/directory"
    cluster_issuer: DnsSubdomain = "letsencrypt"
    # How cert-manager proves the domain on Kubernetes (Docker: lego, HTTP-01 through the edge).
    # http01: the program's own Issuer, whose solver cert-manager routes with an HTTPRoute on the
    # Gateway (kubernetes.exposure gateway). dns01: the ClusterIssuer `clusterIssuer`, whose
    # DNS-01 solver (and DNS credentials) are yours; the one that works with loadBalancer.
    acme_solver: Literal["http01", "dns01"] = "http01"
    # The CA lives five times as long as its leaves (pki.py), so five times this must fit too.
    validity_hours: Annotated[int, Field(gt=0, le=GO_DURATION_MAX_HOURS // 5)] = 8760
    early_renewal_hours: Hours = 720

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if self.early_renewal_hours >= self.validity_hours:
            yield RuleViolation(
                f"{prefix}.earlyRenewalHours",
                self.early_renewal_hours,
                f"fewer hours than tls.validityHours ({self.validity_hours})",
                (f"{prefix}.validityHours",),
            )
        if self.public_certificate == "acme":
            if not self.acme_email:
                yield RuleViolation(
                    f"{prefix}.acmeEmail",
                    self.acme_email,
                    "an e-mail address when tls.publicCertificate is acme",
                    (f"{prefix}.publicCertificate",),
                )
            yield from self._solver_problems(stack, prefix)
            refused = domain_public_ca_refuses(stack.domain)
            if refused:
                yield RuleViolation(
                    "domain",
                    stack.domain,
                    f"a name a public CA can issue for when tls.publicCertificate is acme ({refused}); "
                    "use self-signed or supplied for it",
                    (f"{prefix}.publicCertificate",),
                )
        if stack.environment is Environment.PROD and self.public_certificate == "self-signed":
            yield RuleViolation(
                f"{prefix}.publicCertificate",
                "self-signed",
                "acme or supplied in prod (browsers must trust the public certificate)",
                ("environment",),
            )

    def _solver_problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        # cert-manager answers HTTP-01 from a solver pod and Service it creates per challenge,
        # under a generated name, and routes to it only through an Ingress controller or a
        # Gateway. With a LoadBalancer Service the edge (plain nginx) is the entry and could not
        # find that Service, so HTTP-01 would never pass there: only DNS-01 can issue.
        if (
            stack.target is Target.KUBERNETES
            and stack.kubernetes.exposure == "loadBalancer"
            and self.acme_solver == "http01"
        ):
            yield RuleViolation(
                f"{prefix}.acmeSolver",
                self.acme_solver,
                "dns01 when kubernetes.exposure is loadBalancer and tls.publicCertificate is acme "
                "(cert-manager's HTTP-01 solver is reachable only through a Gateway or an Ingress "
                "controller, and the edge is neither): name a ClusterIssuer with a DNS-01 solver in "
                "tls.clusterIssuer, or set kubernetes.exposure to gateway",
                (f"{prefix}.publicCertificate", "kubernetes.exposure", "target"),
            )
        if stack.target is Target.KUBERNETES and self.acme_solver == "dns01" and not self.cluster_issuer:
            yield RuleViolation(
                f"{prefix}.clusterIssuer",
                "",
                "the name of a ClusterIssuer with a DNS-01 solver when tls.acmeSolver is dns01",
                (f"{prefix}.publicCertificate", f"{prefix}.acmeSolver", "target"),
            )


class BackupSettings(Section):
    """PostgreSQL backups: continuous WAL archiving plus a daily base backup, to an S3 bucket of
    their own (on the bundled store, or objectStore.endpoint when it is external)."""

    enabled: bool = True
    bucket: BucketName = "aixsss-backups"
    # The daily base backup's hour (UTC).
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 3
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 14
    # This cluster's folder in the bucket. A cluster restored from backups writes to a new one.
    server_name: DnsLabel = "postgres"
    # Restore: bootstrap the database from the backups of `restoreFrom` (a server name in the
    # bucket), up to `restoreTargetTime` (RFC 3339, e.g. 2026-11-29T08:00:00Z; empty: all of it).
    restore_from: DnsLabel = ""
    restore_target_time: str = ""

    @property
    def cron(self) -> str:
        return f"0 0 {self.hour_utc} * * *"

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if self.bucket == stack.object_store.bucket:
            yield RuleViolation(
                f"{prefix}.bucket",
                self.bucket,
                "a bucket other than objectStore.bucket (the application's credentials must not reach backups)",
                ("objectStore.bucket",),
            )
        if self.restore_from and self.restore_from == self.server_name:
            yield RuleViolation(
                f"{prefix}.serverName",
                self.server_name,
                "a new server name when restoring (the restored cluster must not write into the backups it "
                "restores from): e.g. postgres-2",
                (f"{prefix}.restoreFrom",),
            )
        if self.restore_target_time:
            if not self.restore_from:
                yield RuleViolation(
                    f"{prefix}.restoreTargetTime",
                    self.restore_target_time,
                    "empty unless backup.restoreFrom names the backups to restore",
                    (f"{prefix}.restoreFrom",),
                )
            try:
                parsed = datetime.datetime.fromisoformat(self.restore_target_time.replace("Z", "+00:00"))
                zoned = parsed.tzinfo is not None
            except ValueError:
                zoned = False
            if not zoned:
                yield RuleViolation(
                    f"{prefix}.restoreTargetTime",
                    self.restore_target_time,
                    "an RFC 3339 time with its zone, e.g. 2026-11-29T08:00:00Z",
                )
        if self.restore_from and stack.target is Target.DOCKER:
            yield RuleViolation(
                f"{prefix}.restoreFrom",
                self.restore_from,
                "empty on Docker (restore there with `make restore-drill` and the runbook)",
                ("target",),
            )


_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _label_pairs(pairs: list[str]) -> list[str]:
    """Kubernetes labels as ``key=value``: key an optional DNS-subdomain prefix and ``/`` before a
    name of at most 63 characters; value at most 63 characters of the same alphabet (or empty)."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        prefix, slash, name = key.rpartition("/")
        if (
            not sep
            or not name
            or not _LABEL_NAME.match(name)
            or (slash and not _DNS_SUBDOMAIN.match(prefix))
            or not _LABEL_NAME.match(value)
        ):
            raise ValueError(
                f"{pair!r} is not a Kubernetes label as key=value (key: [prefix/]name, name and value at most "
                "63 characters of letters, digits, '-', '_', '.', starting and ending alphanumeric)"
            )
    if len({p.partition("=")[0] for p in pairs}) != len(pairs):
        raise ValueError("each label key at most once")
    return pairs


class MonitoringSettings(Section):
    """Metrics and alerts (components/monitoring.py). Kubernetes: exporters beside Redis and the
    edge, PodMonitors for them and for CloudNativePG's instances, and a PrometheusRule, for a
    Prometheus Operator (e.g. kube-prometheus-stack) already running in the cluster. Docker: the
    same exporters and PostgreSQL's in their services' network namespaces, reachable on the
    stack's internal metrics network, with the scrape configuration and the rule file as stack
    outputs for the operator's Prometheus (selector labels and namespace do not apply there)."""

    enabled: bool = True
    # Put on every PodMonitor and PrometheusRule: what the Prometheus's podMonitorSelector and
    # ruleSelector match (kube-prometheus-stack's default: its release name).
    selector_labels: Annotated[list[str], AfterValidator(_label_pairs)] = ["release=kube-prometheus-stack"]
    # The namespace Prometheus scrapes from: the only one admitted to the metrics ports.
    prometheus_namespace: Annotated[str, _matching(_DNS_LABEL, _LABEL_RULE, optional=False)] = "monitoring"

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for pair in self.selector_labels:
            key, _, value = pair.partition("=")
            labels[key] = value
        return labels


# secrets.rotation's ceiling: on Kubernetes every retired generation's login role stays listed
# in the CloudNativePG Cluster as absent (database.cluster_logins), one entry each; a thousand
# rotations (monthly for 80 years) keep that list a few tens of kilobytes.
MAX_ROTATION = 1000


class SecretSettings(Section):
    # Bump by one to regenerate every rotatable secret (all but the API key encryption key).
    rotation: Annotated[int, Field(ge=0, le=MAX_ROTATION)] = 0


def _release_name(value: str) -> str:
    if value and not is_release_name(value):
        raise ValueError(f"empty, or {NAME_RULE}")
    return value


def _migration_name(value: str) -> str:
    if value and not is_migration_name(value):
        raise ValueError(f"empty, or {MIGRATION_RULE}")
    return value


def _history(lines: list[str]) -> list[str]:
    parse_history(lines)
    return lines


ReleaseName = Annotated[str, AfterValidator(_release_name)]


class ReleaseSettings(Section):
    """The release being deployed (components/releases.py); ``releases`` holds the earlier ones."""

    # Empty: derived from the images (the source's version when built, else the references).
    name: ReleaseName = ""
    # The newest migration in the api image. Built from app.source: read from its migrations
    # directory. Given images: declare it, or no rollback can be judged across this release.
    migration_head: Annotated[str, AfterValidator(_migration_name)] = ""
    # Whether the images of the release before this one still run on the schema this one's
    # migrations leave (only additions, nothing they read dropped or renamed). Declared: no
    # program can know it.
    backward_compatible: bool = False
    # A release of aixsss:releases to run again: its images, no migration job (the schema stays).
    rollback_to: ReleaseName = ""

    def problems(self, stack: StackConfig, prefix: str) -> Iterator[RuleViolation]:
        if self.migration_head and stack.app.source:
            yield RuleViolation(
                f"{prefix}.migrationHead",
                self.migration_head,
                "empty while app.source is set (the program reads it from the checkout's migrations)",
                ("app.source",),
            )
        history = stack.history
        for index, release in enumerate(history):
            for image_name, image in release.images.items():
                if not _IMAGE.match(image):
                    allowed = "an image reference (lower-case repository path)"
                elif stack.environment is not Environment.DEV and not image_is_pinned(image):
                    allowed = f"a pinned image (a tag other than latest, or @sha256 digest) in {stack.environment}"
                else:
                    continue
                yield RuleViolation(
                    "releases", release.line(), f"releases[{index}] ({release.name}) {image_name}=: {allowed}"
                )
        given = not stack.app.source
        recorded = {r.name: r for r in history}
        if given and history and not self.rollback_to and not self.migration_head:
            yield RuleViolation(
                f"{prefix}.migrationHead",
                "",
                "the newest migration in images.api (apps/api/prisma/migrations/<name>) once aixsss:releases "
                "records releases: a rollback is judged by it",
                ("app.source", "releases"),
            )
        disguised = older_head(self.migration_head, history)
        if given and disguised and not self.rollback_to:
            yield RuleViolation(
                f"{prefix}.migrationHead", self.migration_head, f"a head {disguised}", ("app.source", "releases")
            )
        images = {n: getattr(stack.images, n) for n in APP_IMAGES}
        if given and self.name in recorded and recorded[self.name].images != images and not self.rollback_to:
            yield RuleViolation(
                f"{prefix}.name",
                self.name,
                f"a new name: {self.name} is recorded in aixsss:releases with other images (images.* changed)",
                ("releases", "images.api", "images.worker", "images.web"),
            )
        if not self.rollback_to:
            return
        names = [r.name for r in history]
        if self.rollback_to not in names:
            listed = ", ".join(names) or "none: `make release` records each deploy"
            yield RuleViolation(
                f"{prefix}.rollbackTo",
                self.rollback_to,
                f"the name of a release in aixsss:releases (recorded: {listed})",
                ("releases",),
            )
            return
        step = blocking_step(applied_since(history, self.rollback_to))
        if step is not None:
            target = history[names.index(self.rollback_to)]
            yield RuleViolation(f"{prefix}.rollbackTo", self.rollback_to, refusal(target, step), ("releases",))


class StackConfig(Section):
    environment: Environment
    target: Target = Target.DOCKER
    domain: Hostname = "aixsss.localhost"
    docker: DockerSettings = DockerSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    app: AppSettings = AppSettings()
    images: Images = Images()
    database: DatabaseSettings = DatabaseSettings()
    cache: CacheSettings = CacheSettings()
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    web: WebSettings = WebSettings()
    edge: EdgeSettings = EdgeSettings()
    tls: TlsSettings = TlsSettings()
    backup: BackupSettings = BackupSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    secrets: SecretSettings = SecretSettings()
    release: ReleaseSettings = ReleaseSettings()
    # The releases deployed before, oldest first, one `key=value` line each
    # (components/config/releases.py); `make release` appends, `make rollback` reads.
    releases: Annotated[list[str], AfterValidator(_history)] = []

    @property
    def history(self) -> list[Release]:
        return parse_history(self.releases)

    @property
    def protect_data(self) -> bool:
        return self.environment is not Environment.DEV

    @property
    def public_origin(self) -> str:
        return f"https://{self.domain}"

    @property
    def connection_budget(self) -> int:
        """PostgreSQL connections the stack can open at its peak: every api and worker process
        (one more of each while a rollout surges), the migration job, and the reserve."""
        processes = (self.api.peak_replicas + 1) + (self.worker.peak_replicas + 1) + 1
        return processes * self.database.connection_limit + DATABASE_RESERVED_CONNECTIONS

    def warnings(self) -> list[str]:
        """Values that are allowed but will likely fail later, for the CLI to print."""
        notes = []
        if self.tls.public_certificate == "acme" and domain_is_documentation_example(self.domain):
            notes.append(
                f"aixsss:domain = {self.domain!r} is a documentation name (RFC 2606): ACME CAs such as "
                "Let's Encrypt refuse to issue for it; set your own domain before deploying"
            )
        return notes

    def all_problems(self) -> Iterator[RuleViolation]:
        """Every rule between values broken anywhere in the stack, in key order."""
        for name, field in type(self).model_fields.items():
            section = getattr(self, name)
            if isinstance(section, Section):
                yield from section.problems(self, field.alias or name)
        if self.environment is Environment.PROD and self.target is Target.KUBERNETES:
            for name, section in (("api", self.api), ("edge", self.edge)):
                if section.replicas < 2:
                    yield RuleViolation(
                        f"{name}.replicas",
                        section.replicas,
                        "at least 2 in prod on Kubernetes (one pod may be drained or fail)",
                        ("environment", "target"),
                    )
