"""The audit view: what an auditor reads from `pulumi stack output`; never a secret value."""

from __future__ import annotations

from typing import Any

import pulumi

from components import api as api_module
from components.cache import redis_settings
from components.conf import redis
from components.platforms.base import Placement, flows_of
from components.secrets import fingerprint
from components.spec import Zone
from components.stack import AixsssStack


def _service_facts(service: Any, placement: Placement) -> dict[str, Any]:
    spec = placement.spec
    return {
        "image": spec.image,
        "replicas": 0 if spec.run_once else spec.replicas,
        "tls": service.tls,
        "auth": service.auth,
        "exposedPorts": placement.exposed,
        "networks": placement.networks,
        "talksTo": list(spec.talks_to),
        "nonRoot": placement.non_root,
        "readOnlyRootFs": placement.read_only_root,
        "limits": {"cpuMillis": spec.resources.cpu_millis, "memoryMb": spec.resources.memory_mb},
        "healthcheck": spec.probe is not None,
    }


def checklist(stack: AixsssStack) -> dict[str, dict[str, Any]]:
    """The deployment guide's pre-deployment checklist (appendix E), each item decided from the
    declared resources rather than asserted."""
    api_secret = set(stack.api.spec.secret_env)
    required = {"JWT_SECRET", "API_KEY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"}
    missing = sorted(required - api_secret)
    data_published = [
        f"{s.spec.name}:{p.host_ip}:{p.published}"
        for s in (stack.database, stack.cache, stack.object_store)
        for p in s.spec.ports
        if p.published
    ]
    public_data = [p for p in data_published if not p.split(":")[1].startswith("127.")]
    # Rendered with a placeholder password: the settings, not the secret, are what is checked.
    redis_conf = redis.render(redis_settings(stack.config, "placeholder")).splitlines()
    redis_ok = "port 0" in redis_conf and any(line.startswith("requirepass ") for line in redis_conf)
    minio_https = stack.object_store.endpoint.startswith("https://") and "--certs-dir" in (
        stack.object_store.spec.args or []
    )
    volumes = [f"{s.spec.name}:{v.name}={v.size_gb}GB" for s in stack.services for v in s.spec.volumes]
    flows = [f"{s.spec.name}->{t}" for s in stack.services for t in s.spec.talks_to]
    data = [stack.database, stack.cache, stack.object_store]
    # Isolated: data services sit only in the backend zone (Docker: an internal network with no
    # route out; Kubernetes: default-deny plus one policy pair per flow), and every flow into
    # them is TLS.
    exposed_data = [s.spec.name for s in data if set(s.spec.zones) != {Zone.BACKEND}]
    specs = {s.spec.name: s.spec for s in stack.services}
    data_names = {d.spec.name for d in data}
    plain_into_data = [
        f"{f.client}->{f.server}"
        for s in stack.services
        for f in flows_of(s.spec, specs)
        if f.server in data_names and not f.tls
    ]
    probe = stack.api.spec.probe
    items = {
        "env.secretsGeneratedAndInjected": (
            not missing,
            "api receives JWT_SECRET, API_KEY_ENCRYPTION_KEY, DATABASE_URL, REDIS_URL as secrets"
            if not missing
            else f"missing: {', '.join(missing)}",
        ),
        "security.redisAuthAndTls": (
            redis_ok,
            "redis.conf sets requirepass and disables the plain-text port (port 0, tls-port 6379); REDIS_URL is rediss://",
        ),
        "security.minioHttps": (minio_https, f"MinIO serves {stack.object_store.endpoint} with its certificate"),
        "security.databaseNotPublic": (
            not public_data,
            "postgres/redis/minio publish nothing"
            if not data_published
            else f"published on loopback only: {', '.join(data_published)}"
            if not public_data
            else f"published publicly: {', '.join(public_data)}",
        ),
        "storage.volumesDeclared": (bool(volumes), ", ".join(volumes)),
        "network.dataIsolated": (
            not exposed_data and not plain_into_data,
            "data services only in the backend zone, reached over TLS by: " + ", ".join(flows)
            if not exposed_data and not plain_into_data
            else f"outside the backend zone: {exposed_data}; plain-text flows: {plain_into_data}",
        ),
        "health.endpoint": (
            probe is not None and probe.http_path == api_module.HEALTH_PATH,
            f"api is probed at {api_module.HEALTH_PATH}; the deploy waits until every service is healthy",
        ),
    }
    return {key: {"ok": bool(ok), "reason": reason} for key, (ok, reason) in items.items()}


def export(stack: AixsssStack) -> None:
    config = stack.config
    origin = config.public_origin
    pulumi.export("environment", config.environment.value)
    pulumi.export("target", config.target.value)
    pulumi.export(
        "endpoints", {"site": origin + "/", "api": origin + "/api", "health": origin + api_module.HEALTH_PATH}
    )
    services = {s.spec.name: _service_facts(s, s.placement) for s in stack.services}
    services["api-migrate"] = _service_facts(stack.api, stack.api.migrations)
    services["minio-bootstrap"] = _service_facts(stack.object_store, stack.object_store.bootstrap)
    pulumi.export("images", {name: facts["image"] for name, facts in services.items()})
    pulumi.export("services", services)
    pulumi.export(
        "certificates",
        [
            {
                "name": c.name,
                "subject": f"CN={c.common_name}, O=AIXSSS",
                "sans": c.dns_names,
                "issuer": c.issuer,
                "notAfter": c.not_after,
            }
            for c in stack.certificates
        ]
        + [
            {
                "name": "ca",
                "subject": f"CN={stack.pki.ca_subject}, O=AIXSSS",
                "sans": [],
                "issuer": stack.pki.ca_subject,
                "notAfter": stack.pki.ca_not_after,
            }
        ],
    )
    pulumi.export("publicCertificate", config.tls.public_certificate)
    pulumi.export("secretInventory", {name: fingerprint(value) for name, value in stack.secrets.inventory.items()})
    pulumi.export("checklist", checklist(stack))
    # Connection strings only as secrets, for operators who need them (`--show-secrets`).
    pulumi.export("databaseUrl", pulumi.Output.secret(stack.database.url))
    pulumi.export("redisUrl", pulumi.Output.secret(stack.cache.url))
