"""The tests run the program through the same offline engine as `make render`."""

from typing import Any

from offline.engine import (  # noqa: F401
    PROJECT,
    ROOT,
    STACKS,
    Deployment,
    Registration,
    is_secret,
    plain_strings,
    reveal,
    run_program,
    stack_config,
)
from offline.objects import container_files, tidy

# Flat config the config tests start from: images pinned, and a prod stack that passes every rule.
PINNED = {
    "images.api": "ghcr.io/aixsss/api:1.0.0",
    "images.worker": "ghcr.io/aixsss/worker:1.0.0",
    "images.web": "ghcr.io/aixsss/web:1.0.0",
}
PROD_OK = {
    **PINNED,
    "target": "kubernetes",
    "domain": "aixsss.example.com",
    "api.replicas": 2,
    "edge.replicas": 2,
    "tls.publicCertificate": "acme",
    "tls.acmeEmail": "ops@example.com",
    # LoadBalancer exposure (the default): only a DNS-01 ClusterIssuer can issue through it.
    "tls.acmeSolver": "dns01",
    "database.instances": 2,
    "cache.highAvailability": True,
}
# prod on one host (target docker) runs one of each (config refuses more), as .ci/run renders it.
ONE_HOST = {
    "edge.replicas": 1,
    "database.instances": 1,
    "database.synchronousReplicas": 0,
    "cache.highAvailability": False,
}


def stack_overrides(stack: str, target: str) -> dict[str, object]:
    """``stack`` switched to ``target``; prod on Docker with ONE_HOST."""
    return {"target": target, **(ONE_HOST if (stack, target) == ("prod", "docker") else {})}


# Gateway exposure needs the ranges the Gateway's proxies connect from (here a usual pod range).
GATEWAY_ADDRESSES = {"kubernetes.gatewayAddresses": ["10.244.0.0/16"]}

CONTAINER = "docker:index/container:Container"


def _volumes(container: Registration) -> list[dict[str, Any]]:
    return list(reveal(container.inputs.get("volumes")) or [])


def carrier_of(d: Deployment, container: Registration) -> Registration:
    """The container that filled the volume ``container`` mounts at /etc/aixsss (read-only)."""
    from components.spec import CONFIG_DIR

    mounts = [v for v in _volumes(container) if v["containerPath"] == CONFIG_DIR]
    assert len(mounts) == 1, f"{container.name} mounts no config volume at {CONFIG_DIR}"
    assert mounts[0].get("readOnly") is True, f"{container.name} mounts its config volume writable"
    volume = mounts[0]["volumeName"]
    carriers = [
        c
        for c in d.of_type(CONTAINER)
        if c.inputs.get("uploads") and any(v["volumeName"] == volume for v in _volumes(c))
    ]
    assert len(carriers) == 1, [c.name for c in carriers]
    return carriers[0]


def delivered(d: Deployment, container: Registration) -> dict[str, dict[str, Any]]:
    """Path -> upload (content, permissions, owner) of every file ``container`` sees under /etc/aixsss."""
    return {u["file"]: u for u in reveal(carrier_of(d, container).inputs["uploads"])}


WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")


def k8s_files(d: Deployment, workload: str, container: str | None = None) -> dict[str, tuple[str, str]]:
    """Path -> (content, octal mode) of every file ``container`` of ``workload`` (its first
    container unless named) sees from the stack's ConfigMaps and Secrets, through its volumes."""
    sources: dict[tuple[str, str], dict[str, Any]] = {}
    for reg in d.registrations:
        if reg.type == "kubernetes:core/v1:ConfigMap":
            sources[("configMap", reg.plain["metadata"]["name"])] = reg.plain.get("data") or {}
        elif reg.type == "kubernetes:core/v1:Secret":
            sources[("secret", reg.plain["metadata"]["name"])] = reg.plain.get("stringData") or {}
    [reg] = [r for r in d.registrations if r.type in WORKLOADS and r.name == workload]
    pod = tidy(reg.plain["spec"]["template"]["spec"])
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    chosen = pod["containers"][0] if container is None else next(c for c in containers if c["name"] == container)
    return container_files(pod, chosen, sources)


def k8s_file(d: Deployment, workload: str, path: str) -> str:
    """The content the first container of ``workload`` sees at ``path``."""
    return k8s_files(d, workload)[path][0]
