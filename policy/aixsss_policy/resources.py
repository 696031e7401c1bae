"""Read what a rule needs from a resource's properties, as the policy engine passes them.

Docker resources come from pulumi-docker, Kubernetes objects from pulumi-kubernetes (camelCase
properties, the object itself). The engine hands them over in proxies that raise on a value not
known yet (a first preview, before the secrets exist): pulumi-policy then reports that the rule
could not run in preview, and `pulumi up` runs it again with the values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy.proxy import UnknownValueError

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
DATA_SERVICES = ("postgres", "redis", "minio")
SERVICE_LABEL = "aixsss.service"
K8S_NAME_LABEL = "app.kubernetes.io/name"
ROLE_LABEL, VOLUME_OWNER_ROLE, CONFIG_CARRIER_ROLE = "aixsss.io/role", "volume-owner", "config-carrier"
EXPORTER_ROLE = "exporter"
CONFIG_VOLUME_ROLE = "config"  # components/platforms/docker.py: a config carrier's volume
# The labels the rules decide by: an unknown value of one of these stops the rule (as any
# unknown does); an unknown value of any other label (the service's `aixsss.io/config`, the id of
# its config carrier, unknown until the carrier exists) is left out instead.
RULE_LABELS = (SERVICE_LABEL, ROLE_LABEL, K8S_NAME_LABEL)
# Docker: every file a service gets sits under this directory, in a volume its config carrier
# fills and the service mounts read-only (components/spec.py CONFIG_DIR).
CONFIG_DIR = "/etc/aixsss"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
SERVING_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")
LOOPBACK = ("127.0.0.1", "::1")
# CloudNativePG's Cluster: PostgreSQL whose pods, PVCs and Services the operator makes from it.
# The pack sees the Cluster, never those pods (they are not Pulumi resources).
CNPG_GROUP = "postgresql.cnpg.io"


@dataclass(frozen=True)
class Resource:
    """What every rule looks at: the type, the properties and the options of one resource."""

    type: str
    name: str
    props: Mapping[str, Any]
    protect: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")

    @property
    def kind(self) -> str:
        return str(self.props.get("kind") or self.type.rsplit(":", 1)[-1])

    @property
    def labels(self) -> dict[str, str]:
        if self.kubernetes:
            return dict((self.props.get("metadata") or {}).get("labels") or {})
        labels = {}
        for item in self.props.get("labels") or []:
            if "label" not in item:
                continue
            try:
                labels[item["label"]] = item["value"]
            except UnknownValueError:
                if item["label"] in RULE_LABELS:
                    raise
        return labels

    @property
    def service(self) -> str | None:
        """The aixsss service a Docker container or a Kubernetes object belongs to."""
        if self.kubernetes:
            pod_labels = ((self.pod_template or {}).get("metadata") or {}).get("labels") or {}
            return pod_labels.get(K8S_NAME_LABEL) or self.labels.get(K8S_NAME_LABEL)
        return self.labels.get(SERVICE_LABEL)

    @property
    def postgres_cluster(self) -> bool:
        """A CloudNativePG Cluster (by API group: other operators have kinds named Cluster)."""
        return (
            self.kubernetes
            and self.kind == "Cluster"
            and str(self.props.get("apiVersion") or "").startswith(f"{CNPG_GROUP}/")
        )

    @property
    def pod_template(self) -> dict[str, Any] | None:
        if not self.kubernetes or self.kind not in POD_KINDS:
            return None
        spec = self.props.get("spec") or {}
        if self.kind == "Pod":
            return {"metadata": self.props.get("metadata") or {}, "spec": spec}
        if self.kind == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        return spec.get("template") or {}

    @property
    def pod(self) -> dict[str, Any] | None:
        template = self.pod_template
        return None if template is None else (template.get("spec") or {})

    def containers(self) -> Iterator[dict[str, Any]]:
        pod = self.pod or {}
        yield from pod.get("initContainers") or []
        yield from pod.get("containers") or []

    def mounted_paths(self) -> list[str]:
        """Where a pod's containers see files: each mount's path and, below it, each item its
        configMap, secret or projected volume lists (the whole-directory mounts of issue 12)."""
        volumes = {v.get("name"): v for v in (self.pod or {}).get("volumes") or []}
        paths = []
        for container in self.containers():
            for mount in container.get("volumeMounts") or []:
                at = mount.get("mountPath", "")
                paths.append(at)
                if mount.get("subPath"):
                    continue
                volume = volumes.get(mount.get("name")) or {}
                sources = [*((volume.get("projected") or {}).get("sources") or []), volume]
                for source in sources:
                    for kind in ("configMap", "secret"):
                        for item in (source.get(kind) or {}).get("items") or []:
                            paths.append(f"{at.rstrip('/')}/{item.get('path', '')}")
        return paths

    def mounts(self) -> Iterator[tuple[str, str, bool]]:
        """(volume name, path in the container, read-only) of a Docker container's named volumes."""
        for volume in self.props.get("volumes") or [] if self.type == CONTAINER else []:
            if volume.get("volumeName"):
                yield volume["volumeName"], volume.get("containerPath", ""), bool(volume.get("readOnly"))

    def words(self) -> list[str]:
        """A Docker container's entrypoint, command and health check, split into words (a
        `sh -c` script too)."""
        if self.type != CONTAINER:
            return []
        health = (self.props.get("healthcheck") or {}).get("tests") or []
        args = [*(self.props.get("entrypoints") or []), *(self.props.get("command") or []), *health]
        # `-c config_file=/etc/…` names a path too: the part after the last `=`.
        return [w.rsplit("=", 1)[-1].strip("'\";") for a in args for w in str(a).split()]

    def upload_paths(self) -> list[str]:
        """Where a Docker container's uploads go, without reading their content (which is not
        known in a first preview)."""
        if self.type != CONTAINER:
            return []
        return [str(upload.get("file", "")) for upload in self.props.get("uploads") or []]

    def files(self) -> Iterator[tuple[str, str]]:
        """(path or key, content) of every file this resource carries: Docker uploads,
        ConfigMap data, Secret data."""
        if self.type == CONTAINER:
            for upload in self.props.get("uploads") or []:
                if upload.get("content") is not None:
                    yield upload.get("file", ""), upload["content"]
        elif self.kind in ("ConfigMap", "Secret"):
            for section in ("data", "stringData"):
                for key, value in (self.props.get(section) or {}).items():
                    if isinstance(value, str):
                        yield key, value


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag other than `latest` (a registry port is not a tag)."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def directives(conf: str) -> list[list[str]]:
    """A Redis- or nginx-style file as lists of words, comments and blank lines dropped."""
    lines = []
    for line in conf.splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            lines.append(words)
    return lines
