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
