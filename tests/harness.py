"""The tests run the program through the same offline engine as `make render`."""

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
}
