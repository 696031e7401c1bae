"""How a pod's files and secrets reach it on Kubernetes, and how a change to them reaches the pod.

- Each container's files are one directory, CONFIG_DIR: a projected volume of its ConfigMap and
  its Secret, never a subPath. Kubelet updates a projected volume in place (atomically, within
  its sync period); a subPath mount it never updates, so a renewed certificate or a changed
  nginx.conf would never reach a running pod.
- Most servers read their files (and every process its environment) only at start, so each pod
  template carries a checksum annotation per ConfigMap and Secret it reads (files and env): a
  change alters the template of exactly the workloads that use it, and their controllers roll
  them (Deployments and StatefulSets one pod at a time; a Job's template is immutable, so Pulumi
  replaces the Job and it runs again with what changed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
from pulumi_kubernetes.core.v1 import KeyToPathArgsDict, VolumeArgsDict, VolumeProjectionArgsDict

from components.secrets import fingerprint
from components.spec import CONFIG_DIR, ConfigFile, ServiceSpec

# Where secret_env variables the image reads from files (ServiceSpec.file_env) are delivered.
ENV_FILE_DIR = f"{CONFIG_DIR}/env"
# One annotation per ConfigMap/Secret: a diff of the template names what changed.
CHECKSUM_PREFIX = "checksum.aixsss.io/"
# Owned by root and readable by the pod's fsGroup (the servers' group), never by others.
SECRET_FILE_MODE = 0o440
CONFIG_FILE_MODE = 0o444


def file_key(path: str) -> str:
    """A file's key in its ConfigMap or Secret (a flat name: keys cannot hold '/')."""
    return path.strip("/").replace("/", "_")


def checksum(data: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """SHA-256 over the whole of ``data`` (key and value): plain, as annotations are, and safe to
    show as components/secrets.py's fingerprints are, since only the digest is unwrapped."""
    keys = sorted(data)
    content = pulumi.Output.all(*(data[k] for k in keys)).apply(
        lambda values: json.dumps(dict(zip(keys, values, strict=True)), sort_keys=True)
    )
    return fingerprint(content)


def checksum_annotations(checksums: Mapping[str, pulumi.Output[str]]) -> dict[str, pulumi.Input[str]]:
    return {f"{CHECKSUM_PREFIX}{name}": value for name, value in sorted(checksums.items())}


def config_volume(volume: str, config_map: str | None, secret: str | None, files: list[ConfigFile]) -> VolumeArgsDict:
    """The projected volume holding ``files`` under their paths relative to CONFIG_DIR, from the
    ConfigMap (plain files) and the Secret (secret files) named; mounted at CONFIG_DIR."""
    sources: list[VolumeProjectionArgsDict] = []
    if config_map is not None:
        sources.append({"config_map": {"name": config_map, "items": _items(files, secret=False)}})
    if secret is not None:
        sources.append({"secret": {"name": secret, "items": _items(files, secret=True)}})
    return {"name": volume, "projected": {"default_mode": SECRET_FILE_MODE, "sources": sources}}


def _items(files: list[ConfigFile], *, secret: bool) -> list[KeyToPathArgsDict]:
    mode = SECRET_FILE_MODE if secret else CONFIG_FILE_MODE
    return [
        {"key": file_key(f.path), "path": f.path.removeprefix(f"{CONFIG_DIR}/"), "mode": mode}
        for f in files
        if f.secret == secret
    ]


def env_as_files(spec: ServiceSpec) -> tuple[dict[str, pulumi.Output[str]], list[ConfigFile], dict[str, str]]:
    """``spec``'s secret environment split: what stays in the environment (by secretKeyRef), the
    secret files for its ``file_env`` variables (in the pod's files volume, from its Secret,
    so checkov's CKV_K8S_35 holds) and the ``<NAME>_FILE`` variables naming them."""
    kept = {k: v for k, v in spec.secret_env.items() if k not in spec.file_env}
    moved = sorted(k for k in spec.secret_env if k in spec.file_env)
    files = [ConfigFile(f"{ENV_FILE_DIR}/{k}", spec.secret_env[k], secret=True) for k in moved]
    return kept, files, {f"{k}_FILE": f"{ENV_FILE_DIR}/{k}" for k in moved}
