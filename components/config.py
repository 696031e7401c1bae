"""The whole stack config as pydantic models: the one place defaults and rules live.

Stack files use flat, dotted keys in the project namespace (``aixsss:api.replicas: 2``) so that
``Pulumi.yaml`` can declare every key with a type and default (the CLI types only scalars and
arrays). :func:`load_stack_config` nests them, validates, and turns every problem into one
:class:`StackConfigError` naming the stack file, key, value and what is allowed.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT = "aixsss"

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Target(StrEnum):
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class RuleViolation(ValueError):
    """A rule broken by one key; pydantic keeps it in the error's context for the message."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


class StackConfigError(pulumi.RunError):
    """Bad stack config; raised before any resource is registered."""


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError("a DNS name such as app.example.com (lower case, at least two labels)")
    return value


def _email(value: str) -> str:
    if value and not _EMAIL.match(value):
        raise ValueError("an e-mail address such as ops@example.com")
    return value


def _image(value: str) -> str:
    if not value or " " in value:
        raise ValueError("an image reference such as postgres:16 or repo/app@sha256:<digest>")
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
Email = Annotated[str, AfterValidator(_email)]
Image = Annotated[str, AfterValidator(_image)]
Positive = Annotated[int, Field(gt=0)]


def image_is_pinned(image: str) -> bool:
    """A tag other than ``latest``, or a digest; ``repo`` alone means ``latest``."""
    if _DIGEST.search(image):
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Resources(Section):
    """Requests equal limits: predictable placement and no noisy neighbours."""

    cpu_millis: Positive = 500
    memory_mb: Positive = 512


class Images(Section):
    postgres: Image = "postgres:16"
    redis: Image = "redis:7"
    minio: Image = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
    minio_client: Image = "minio/mc:RELEASE.2025-08-13T08-35-41Z"
    api: Image = "ghcr.io/aixsss/api:latest"
    worker: Image = "ghcr.io/aixsss/worker:latest"
    web: Image = "ghcr.io/aixsss/web:latest"
    edge: Image = "nginxinc/nginx-unprivileged:1.29"
    acme_client: Image = "goacme/lego:v4.26.0"


class DockerSettings(Section):
    host: str = "unix:///var/run/docker.sock"
    publish_data_ports: bool = False

    @model_validator(mode="after")
    def _known_scheme(self) -> DockerSettings:
        if not self.host.startswith(("unix://", "ssh://", "tcp://", "npipe://")):
            raise RuleViolation("docker.host", self.host, "a unix://, ssh:// or tcp:// address")
        return self


class KubernetesSettings(Section):
    kubeconfig: str = ""
    context: str = ""
    namespace: str = ""
    render_yaml_to: str = ""
    storage_class: str = ""
    exposure: Literal["gateway", "loadBalancer"] = "loadBalancer"
    gateway_name: str = ""
    gateway_namespace: str = ""


class DatabaseSettings(Resources):
    storage_gb: Positive = 10
    max_connections: Positive = 100
    memory_mb: Positive = 1024


class CacheSettings(Resources):
    maxmemory_mb: Positive = 256
    storage_gb: Positive = 2


class ObjectStoreSettings(Resources):
    bucket: str = Field(default="aixsss", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    storage_gb: Positive = 20


class ApiSettings(Resources):
    replicas: Positive = 1
    migration_command: list[str] = ["npx", "prisma", "migrate", "deploy"]
    ai_queue_name: str = Field(default="ai-jobs", min_length=1)


class WorkerSettings(Resources):
    replicas: Positive = 1
    concurrency: Positive = 4


class WebSettings(Resources):
    replicas: Positive = 1
    memory_mb: Positive = 128
    cpu_millis: Positive = 200


class EdgeSettings(Resources):
    replicas: Positive = 1
    memory_mb: Positive = 256
    client_max_body_size_mb: Positive = 10
    api_rate_per_second: Positive = 10
    api_rate_burst: Positive = 20


class TlsSettings(Section):
    public_certificate: Literal["self-signed", "acme", "supplied"] = "self-signed"
    acme_email: Email = ""
    acme_server: str = "https://acme-v02.api.letsencrypt.org/directory"
    cluster_issuer: str = "letsencrypt"
    validity_hours: Positive = 8760
    early_renewal_hours: Positive = 720

    @model_validator(mode="after")
    def _renewal_inside_validity(self) -> TlsSettings:
        if self.early_renewal_hours >= self.validity_hours:
            raise RuleViolation(
                "tls.earlyRenewalHours",
                self.early_renewal_hours,
                f"fewer hours than tls.validityHours ({self.validity_hours})",
            )
        if self.public_certificate == "acme" and not self.acme_email:
            raise RuleViolation(
                "tls.acmeEmail", self.acme_email, "an e-mail address when tls.publicCertificate is acme"
            )
        return self


class SecretSettings(Section):
    # Bump to regenerate every rotatable secret (all but the API key encryption key).
    rotation: Annotated[int, Field(ge=0)] = 0


class StackConfig(Section):
    environment: Environment
    target: Target = Target.DOCKER
    domain: Hostname = "aixsss.localhost"
    docker: DockerSettings = DockerSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    images: Images = Images()
    database: DatabaseSettings = DatabaseSettings()
    cache: CacheSettings = CacheSettings()
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    web: WebSettings = WebSettings()
    edge: EdgeSettings = EdgeSettings()
    tls: TlsSettings = TlsSettings()
    secrets: SecretSettings = SecretSettings()

    @property
    def protect_data(self) -> bool:
        return self.environment is not Environment.DEV

    @property
    def public_origin(self) -> str:
        return f"https://{self.domain}"

    @model_validator(mode="after")
    def _environment_rules(self) -> StackConfig:
        env = self.environment
        if env is not Environment.DEV:
            for field, image in self.images.model_dump(by_alias=True).items():
                if not image_is_pinned(image):
                    raise RuleViolation(
                        f"images.{field}",
                        image,
                        f"a pinned image (a tag other than latest, or @sha256 digest) in {env}",
                    )
        if env is Environment.PROD:
            if self.target is Target.KUBERNETES:
                for name, section in (("api", self.api), ("edge", self.edge)):
                    if section.replicas < 2:
                        raise RuleViolation(
                            f"{name}.replicas",
                            section.replicas,
                            "at least 2 in prod on Kubernetes (one pod may be drained or fail)",
                        )
            if self.tls.public_certificate == "self-signed":
                raise RuleViolation(
                    "tls.publicCertificate",
                    "self-signed",
                    "acme or supplied in prod (browsers must trust the public certificate)",
                )
        if (
            self.kubernetes.exposure == "gateway"
            and self.target is Target.KUBERNETES
            and not self.kubernetes.gateway_name
        ):
            raise RuleViolation(
                "kubernetes.gatewayName", "", "the name of an existing Gateway when kubernetes.exposure is gateway"
            )
        return self


# Secret keys a user may supply with `pulumi config set --secret` instead of generating them.
SUPPLIED_SECRET_KEYS: dict[str, str] = {
    "postgresPassword": "secrets.postgresPassword",
    "redisPassword": "secrets.redisPassword",
    "minioRootUser": "secrets.minioRootUser",
    "minioRootPassword": "secrets.minioRootPassword",
    "minioAppAccessKey": "secrets.minioAppAccessKey",
    "minioAppSecretKey": "secrets.minioAppSecretKey",
    "jwtSecret": "secrets.jwtSecret",
    "apiKeyEncryptionKey": "secrets.apiKeyEncryptionKey",
    "publicCertificatePem": "tls.suppliedCertificatePem",
    "publicPrivateKeyPem": "tls.suppliedPrivateKeyPem",
}


def leaf_keys(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, Any]:
    """Every flat config key the model reads, mapped to its pydantic field info."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(leaf_keys(annotation, key + "."))
        else:
            keys[key] = field
    return keys


def pulumi_yaml_declarations() -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml, derived from the model (a test keeps them equal)."""
    declarations: dict[str, dict[str, Any]] = {}
    for key, field in leaf_keys().items():
        default = field.default
        if key == "environment":
            declarations[key] = {
                "type": "string",
                "default": "",
                "description": "dev, staging or prod; empty means the stack name",
            }
            continue
        if isinstance(default, StrEnum):
            default = default.value
        if isinstance(default, bool):
            type_ = "boolean"
        elif isinstance(default, int):
            type_ = "integer"
        elif isinstance(default, list):
            declarations[key] = {"type": "array", "items": {"type": "string"}, "default": list(default)}
            continue
        else:
            type_ = "string"
        declarations[key] = {"type": type_, "default": default}
    for key in SUPPLIED_SECRET_KEYS.values():
        # A secret-marked key may not carry a plain default in Pulumi.yaml, so these are declared
        # unmarked with an empty default; the program refuses a value that is not encrypted.
        declarations[key] = {"type": "string", "default": "", "description": "optional; set with --secret"}
    return declarations


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StackConfigError(f"config key {PROJECT}:{key} conflicts with a scalar key")
        node[leaf] = value
    return nested


def _describe(error: dict[str, Any], flat: dict[str, Any], stack_file: str) -> str:
    violation = (error.get("ctx") or {}).get("error")
    if isinstance(violation, RuleViolation):
        key, value, allowed = violation.key, violation.value, violation.allowed
    else:
        key = ".".join(str(part) for part in error["loc"])
        value = error.get("input")
        allowed = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = "no such key (see the config reference in README.md)"
        allowed = allowed.removeprefix("Value error, ")
    source = "" if key in flat else " (default)"
    return f"{stack_file}: {PROJECT}:{key} = {value!r}{source} is not allowed: {allowed}"


def parse_stack_config(flat: dict[str, Any], stack: str) -> StackConfig:
    """Validate flat ``key -> value`` config (without namespace) for ``stack``."""
    stack_file = f"Pulumi.{stack}.yaml"
    values = {k: v for k, v in flat.items() if k not in SUPPLIED_SECRET_KEYS.values()}
    if not values.get("environment"):
        values["environment"] = stack
    try:
        return StackConfig.model_validate(_nest(values))
    except ValidationError as exc:
        messages = [_describe(err, values, stack_file) for err in exc.errors()]
        raise StackConfigError("invalid stack config:\n  " + "\n  ".join(messages)) from None


def _coerce(raw: str, field: Any) -> Any:
    """Pulumi hands config to the program as strings; arrays and objects as JSON."""
    if isinstance(field.default, (bool, int, list)) and not isinstance(field.default, StrEnum):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _all_config() -> dict[str, Any]:
    """All config the engine passed: the PULUMI_CONFIG environment and the explicit map."""
    from pulumi.runtime import config as runtime_config

    return {**(runtime_config.get_config_env() or {}), **runtime_config.CONFIG.get()}


def _is_secret(key: str) -> bool:
    from pulumi.runtime import config as runtime_config

    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def load_stack_config() -> StackConfig:
    """Read this stack's ``aixsss:*`` config, including keys no model field knows."""
    stack = pulumi.get_stack()
    fields = leaf_keys()
    flat: dict[str, Any] = {}
    config = _all_config()
    for full_key, raw in config.items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        if key in SUPPLIED_SECRET_KEYS.values():
            if raw and not _is_secret(full_key):
                raise StackConfigError(
                    f"Pulumi.{stack}.yaml: {full_key} holds a plain-text value: "
                    f"set it with `pulumi config set --secret {full_key}`"
                )
            continue
        flat[key] = _coerce(raw, fields[key]) if key in fields else raw
    parsed = parse_stack_config(flat, stack)
    if parsed.tls.public_certificate == "supplied":
        for name in ("publicCertificatePem", "publicPrivateKeyPem"):
            key = f"{PROJECT}:{SUPPLIED_SECRET_KEYS[name]}"
            if not config.get(key):
                raise StackConfigError(
                    f"Pulumi.{stack}.yaml: {key} is not set: tls.publicCertificate is supplied, so set it "
                    f"with `pulumi config set --secret {key} < file.pem`"
                )
    return parsed


def supplied_secret(name: str) -> pulumi.Output[str] | None:
    """A secret the user supplied for ``name`` (see SUPPLIED_SECRET_KEYS), or None."""
    key = SUPPLIED_SECRET_KEYS[name]
    if not _all_config().get(f"{PROJECT}:{key}"):
        return None
    return pulumi.Config(PROJECT).require_secret(key)
