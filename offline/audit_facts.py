"""What the audit diff compares beyond audit.json: flows, secret fingerprints, protected resources.

`make render` writes audit.json (the stack outputs: services with their TLS, auth and published
ports, images, checklist) and summary.txt (the flows, as text). The diff reads audit.json as it
is and takes the rest from the same render, in memory, into ``audit-facts.json`` beside it:

- ``flows``: the topology render drew (offline.topology: what the NetworkPolicies and container
  labels enforce), each hop with its ports, TLS and authentication;
- ``secrets``: a digest of each secretInventory fingerprint. audit.json shows them redacted
  (a fingerprint is the SHA-256 the Redis ACL also carries, which the redactor hides), so a
  salted digest of it stands in: equal when the secret is kept, different when it is rotated,
  and neither the value nor its SHA-256 is written;
- ``protected``: every protected resource with a digest of each input that makes its provider
  replace it (see REPLACED_BY), so the diff can say which would be replaced and by what change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from offline.engine import UPDATED_IN_PLACE, Registration, reveal
from offline.redact import Redactor
from offline.render import Rendered

FACTS = "audit-facts.json"
# Kept constant: the same secret gives the same digest in the base's render and the head's.
_SALT = b"aixsss audit-diff fingerprint\0"

# Inputs that make pulumi-kubernetes (4.x, pinned in requirements.txt) replace an object rather
# than patch it: its forceNewProperties (provider/pkg/provider/diff.go): .metadata.name and
# .metadata.namespace for every kind, plus these per kind (Secrets and ConfigMaps as the
# provider treats them by default, enableSecretMutable and enableConfigMapMutable off). A custom
# resource (CloudNativePG's Cluster) is replaced on its name and namespace only; what its
# operator's webhook refuses to change is not modelled.
_K8S_METADATA = ("metadata.name", "metadata.namespace")
_K8S_REPLACED_BY: dict[str, tuple[str, ...]] = {
    "PersistentVolumeClaim": ("spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName"),
    "StatefulSet": (
        "spec.podManagementPolicy",
        "spec.revisionHistoryLimit",
        "spec.selector",
        "spec.serviceName",
        "spec.volumeClaimTemplates",
    ),
    "Deployment": ("spec.selector",),
    "Job": ("spec.completions", "spec.parallelism", "spec.selector", "spec.template"),
    "ConfigMap": ("binaryData", "data"),
    "Secret": ("type", "stringData", "data"),
    "Service": ("spec.clusterIP",),
    "PodDisruptionBudget": ("spec",),
}


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def replaced_by(reg: Registration) -> dict[str, Any]:
    """The inputs whose change replaces ``reg``, by name (dotted paths for Kubernetes objects).

    - Kubernetes objects: apiVersion, kind and pulumi-kubernetes's forceNewProperties above.
    - pulumi-random and pulumi-tls: every input but the ones updated in place
      (offline.engine.UPDATED_IN_PLACE, which the render's own state follows).
    - pulumi-docker volumes: every input (terraform-provider-docker's docker_volume marks name,
      driver, driver_opts and labels ForceNew). Other Docker resources: every input, the
      cautious reading for a container, most of whose attributes are ForceNew.
    """
    plain = reveal(reg.inputs)
    if reg.type.startswith("kubernetes:"):
        paths = ("apiVersion", "kind", *_K8S_METADATA, *_K8S_REPLACED_BY.get(str(plain.get("kind")), ()))
        return {p: _get(plain, p) for p in paths}
    in_place = UPDATED_IN_PLACE.get(reg.type, set())
    return {k: v for k, v in plain.items() if k not in in_place}


def _digest(value: Any) -> str:
    return hashlib.sha256(_SALT + json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def facts(result: Rendered, *, from_base_state: bool = True) -> dict[str, Any]:
    outputs = reveal(result.deployment.outputs)
    protected = {
        reg.urn: {
            "type": reg.type,
            "name": reg.name,
            "replacedBy": {k: _digest(v) for k, v in sorted(replaced_by(reg).items())},
        }
        for reg in sorted(result.deployment.registrations, key=lambda r: r.urn)
        if reg.protect
    }
    return {
        "flows": [
            {"client": e.client, "server": e.server, "ports": list(e.ports), "tls": e.tls, "auth": e.auth}
            for e in result.topology.edges
        ],
        "secrets": {name: "fp:" + _digest(fp) for name, fp in sorted((outputs.get("secretInventory") or {}).items())},
        "protected": protected,
        "urns": sorted(reg.urn for reg in result.deployment.registrations if reg.custom),
        "warnings": list(result.warnings),
        # False: rendered afresh although a base's state was given, so every secret is new.
        "fromBaseState": from_base_state,
    }


def write(result: Rendered, redactor: Redactor, *, from_base_state: bool = True) -> Path:
    """``audit-facts.json`` in the render's directory; refused if it would carry a secret."""
    text = json.dumps(facts(result, from_base_state=from_base_state), indent=2, sort_keys=True) + "\n"
    if redactor.contains_secret(text):
        raise AssertionError(f"{FACTS} would carry a secret value; not written")
    result.write(FACTS, text, secret=False)
    return result.out / FACTS
