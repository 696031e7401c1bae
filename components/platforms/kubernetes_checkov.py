"""checkov's per-resource exceptions for the workloads the Kubernetes platform renders.

checkov reads `checkov.io/skip<N>: <CHECK>=<reason>` annotations on a resource's own metadata
(checkov/kubernetes/kubernetes_utils.py, SKIP_ANNOTATION_PREFIXES). Each annotation is derived
here from the pod spec itself, so a workload carries an exception only where the check would
fail on it, with the reason naming that workload's containers: an image pinned by digest loses
its CKV_K8S_43/CKV_K8S_15 exception, a container above UID 10000 needs none, and a container
that reads no Secret through its environment needs no CKV_K8S_35 one. Nothing is skipped
globally (.checkov.yaml), so a new workload that fails a check is still caught.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_kubernetes.core.v1 import PodSpecArgsDict

SKIP_PREFIX = "checkov.io/skip"
# CKV_K8S_40 passes above this UID.
HIGH_UID = 10000

# Why each Secret-derived variable stays in its process's environment (CKV_K8S_35): the
# programs that read them take no file instead. A variable missing here is an error, so a new
# secret in an environment needs its reason written down (or a *_FILE move, kubernetes_files).
_APP = "the app validates its settings from the environment at start and reads no files (APP.md)"
ENV_ONLY: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "DATABASE_URL",
            "REDIS_URL",
            "API_KEY_ENCRYPTION_KEY",
            "S3_ACCESS_KEY_ID",
            "S3_SECRET_ACCESS_KEY",
            "JWT_SECRET",
        ),
        _APP,
    ),
    "REDISCLI_AUTH": "redis-cli (the probes) takes its password only from REDISCLI_AUTH or its command line, "
    "which ps shows to every process",
    "REDIS_PASSWORD": "redis_exporter's REDIS_PASSWORD_FILE is a JSON map from target URI to password, not a "
    "password file, and the same pod's Redis container holds that password as REDISCLI_AUTH anyway",
    **dict.fromkeys(
        (
            "MINIO_ROOT_USER",
            "MINIO_ROOT_PASSWORD",
            "APP_ACCESS_KEY",
            "APP_SECRET_KEY",
            "BACKUP_ACCESS_KEY",
            "BACKUP_SECRET_KEY",
        ),
        "the bootstrap script (the same on Docker) hands the keys to mc, which reads no key files",
    ),
}


def _containers(pod: PodSpecArgsDict) -> list[Any]:
    # The platform builds plain lists here (no Outputs): read them as such.
    spec: Any = pod
    return [*(spec.get("init_containers") or []), *spec["containers"]]


def _uid(pod: PodSpecArgsDict, container: Any) -> int | None:
    own: Any = container.get("security_context") or {}
    pod_level: Any = pod.get("security_context") or {}
    return own.get("run_as_user", pod_level.get("run_as_user"))


def _secret_vars(container: Any) -> list[str]:
    env: list[Any] = container.get("env") or []
    found: list[str] = []
    for e in env:
        source: Any = e.get("value_from")
        if source and source.get("secret_key_ref"):
            found.append(str(e["name"]))
    return found


def _reasons(pod: PodSpecArgsDict, images: Sequence[str]) -> dict[str, str]:
    """The failing checks of ``pod`` (its containers' resolved ``images`` in order) -> reason."""
    containers = _containers(pod)
    low = [
        f"{c['name']} runs as uid {uid}, the user {image.split('@')[0]} owns its files as"
        for c, image in zip(containers, images, strict=True)
        if (uid := _uid(pod, c)) is not None and uid <= HIGH_UID
    ]
    tagged = [f"{c['name']} ({image})" for c, image in zip(containers, images, strict=True) if "@" not in image]
    env_only: list[str] = []
    for c in containers:
        names = _secret_vars(c)
        unexplained = [n for n in names if n not in ENV_ONLY]
        if unexplained:
            raise ValueError(f"{c['name']}: no reason why {', '.join(unexplained)} stays in the environment")
        for why in dict.fromkeys(ENV_ONLY[n] for n in names):
            env_only.append(f"{c['name']} reads {', '.join(n for n in names if ENV_ONLY[n] == why)}: {why}")
    reasons: dict[str, str] = {}
    if tagged:
        pinned = ", ".join(tagged)
        reasons["CKV_K8S_15"] = (
            f"IfNotPresent with pinned release tags ({pinned}; the config refuses latest) pulls the same image "
            "and keeps pods restartable during a registry outage; multi-tenant clusters enable AlwaysPullImages"
        )
        reasons["CKV_K8S_43"] = (
            f"{pinned} pinned by release tag: a digest cannot be looked up offline when the stack is written; "
            "images.* accepts repo@sha256 digests and this exception then goes away"
        )
    if env_only:
        reasons["CKV_K8S_35"] = "; ".join(env_only) + "; values come by secretKeyRef, never inline"
    if low:
        reasons["CKV_K8S_40"] = (
            "; ".join(low)
            + ": another UID breaks its file ownership. Non-root, all capabilities dropped, no privilege "
            "escalation, RuntimeDefault seccomp, never the host's user namespace"
        )
    for check, reason in reasons.items():
        # checkov splits the annotation at '=' (CHECK=reason): a reason must not hold one.
        if "=" in reason:
            raise ValueError(f"{check}: a checkov skip reason cannot contain '=': {reason}")
    return reasons


def skip_annotations(pod: PodSpecArgsDict) -> pulumi.Output[dict[str, str]]:
    """The workload's `checkov.io/skip<N>` annotations: one per check its pod fails, with why."""
    images = pulumi.Output.all(*(c["image"] for c in _containers(pod)))
    return images.apply(
        lambda resolved: {
            f"{SKIP_PREFIX}{n}": f"{check}={reason}"
            for n, (check, reason) in enumerate(sorted(_reasons(pod, [str(i) for i in resolved]).items()), start=1)
        }
    )
