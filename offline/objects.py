"""What a stack declares, as files: Kubernetes objects, the Docker plan, generated config files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from offline.engine import Deployment, Registration, is_secret, reveal

K8S_PREFIX = "kubernetes:"
DOCKER_KINDS = {
    "docker:index/network:Network": "networks",
    "docker:index/volume:Volume": "volumes",
    "docker:index/remoteImage:RemoteImage": "images",
    "docker:index/container:Container": "containers",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


def tidy(value: Any) -> Any:
    """Property values as the provider sends them: no nulls, whole numbers as integers."""
    if isinstance(value, dict):
        return {k: tidy(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [tidy(v) for v in value if v is not None]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def kubernetes_registrations(deployment: Deployment) -> list[Registration]:
    return [r for r in deployment.registrations if r.custom and r.type.startswith(K8S_PREFIX)]


def manifest_path(obj: dict[str, Any]) -> str:
    """Where pulumi-kubernetes' render_yaml_to_directory writes ``obj`` (0-crd/ or 1-manifest/)."""
    meta = obj.get("metadata") or {}
    api_version = str(obj["apiVersion"]).replace("/", "_").replace(":", "_")
    name = f"{api_version}-{str(obj['kind']).lower()}-{meta.get('namespace') or 'default'}-{meta['name']}.yaml"
    folder = "0-crd" if obj["kind"] == "CustomResourceDefinition" else "1-manifest"
    return f"{folder}/{name}"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") not in WORKLOAD_KINDS:
        return None
    return (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}


@dataclass(frozen=True)
class GeneratedFile:
    """A file the program puts into a container, as deployed: who gets it, where, what."""

    workload: str
    path: str
    content: str  # as deployed: secret values are still in it
    mode: str

    @property
    def relative(self) -> str:
        return f"{self.workload}/{PurePosixPath(self.path).relative_to('/')}"


def kubernetes_files(objects: list[dict[str, Any]]) -> list[GeneratedFile]:
    """ConfigMap/Secret keys, placed where each workload's containers see them."""
    sources: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        if obj.get("kind") == "ConfigMap":
            sources[("configMap", obj["metadata"]["name"])] = obj.get("data") or {}
        elif obj.get("kind") == "Secret":
            sources[("secret", obj["metadata"]["name"])] = obj.get("stringData") or {}
    files = []
    for obj in objects:
        pod = pod_spec(obj)
        if pod is None:
            continue
        for container in pod.get("containers") or []:
            for path, (content, mode) in container_files(pod, container, sources).items():
                files.append(GeneratedFile(obj["metadata"]["name"], path, content, mode))
    return files


def container_files(
    pod: dict[str, Any], container: dict[str, Any], sources: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, tuple[str, str]]:
    """Path -> (content, octal mode) of every ConfigMap/Secret key ``container`` sees, through
    configMap, secret and projected volumes, mounted whole or by subPath."""
    volumes = {v["name"]: _volume_files(v, sources) for v in pod.get("volumes") or []}
    seen: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts") or []:
        entries = volumes.get(mount["name"]) or {}
        if "subPath" in mount:
            if mount["subPath"] in entries:
                seen[mount["mountPath"]] = entries[mount["subPath"]]
            continue
        for relative, entry in entries.items():
            seen[f"{mount['mountPath'].rstrip('/')}/{relative}"] = entry
    return seen


def _volume_files(volume: dict[str, Any], sources: dict[tuple[str, str], dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Relative path -> (content, mode) of the keys a configMap, secret or projected volume holds."""
    if "projected" in volume:
        default = volume["projected"].get("defaultMode", 0o644)
        parts = [
            (kind, source[kind]["name"], source[kind].get("items"))
            for source in volume["projected"].get("sources") or []
            for kind in ("configMap", "secret")
            if kind in source
        ]
    elif "configMap" in volume:
        default = volume["configMap"].get("defaultMode", 0o644)
        parts = [("configMap", volume["configMap"]["name"], volume["configMap"].get("items"))]
    elif "secret" in volume:
        default = volume["secret"].get("defaultMode", 0o644)
        parts = [("secret", volume["secret"]["secretName"], volume["secret"].get("items"))]
    else:
        return {}
    entries: dict[str, tuple[str, str]] = {}
    for kind, name, items in parts:
        data = sources.get((kind, name))
        if data is None:
            continue
        listed: list[dict[str, Any]] = items if items is not None else [{"key": k, "path": k} for k in data]
        for item in listed:
            if item["key"] in data:
                entries[item["path"]] = (data[item["key"]], f"{int(item.get('mode', default)):04o}")
    return entries


def secret_items(value: Any) -> list[Any]:
    """The items of a list input; if the whole list is secret, each item stays marked secret."""
    if is_secret(value):
        return [{**value, "value": item} for item in value["value"] or []]
    return list(value or [])


REVISION_SUFFIX = re.compile(r"\.[0-9a-f]+$")


def _workload(container: Registration) -> str:
    # Docker's own labels, imported here: reading a Kubernetes stack loads no Docker SDK.
    from components.platforms.docker import CONFIG_CARRIER_ROLE, ROLE_KEY

    # Without the revision a service replaced side by side carries (`.<hex>`): the same workload
    # from render to render, whichever revision it is at.
    name: str = REVISION_SUFFIX.sub("", reveal(container.inputs.get("name")))
    labels = {item["label"]: item["value"] for item in reveal(container.inputs.get("labels") or [])}
    return name.removesuffix("-config") if labels.get(ROLE_KEY) == CONFIG_CARRIER_ROLE else name


def docker_files(deployment: Deployment) -> list[GeneratedFile]:
    """The files each container receives; a config carrier's files are its service's
    (components/platforms/docker.py: `<service>-config` fills the volume `<service>` mounts)."""
    files = []
    for reg in deployment.of_type("docker:index/container:Container"):
        name = _workload(reg)
        for upload in secret_items(reg.inputs.get("uploads")):
            plain = reveal(upload)
            files.append(GeneratedFile(name, plain["file"], plain["content"], plain.get("permissions", "0644")))
    return files


def docker_plan(deployment: Deployment, files: list[GeneratedFile]) -> dict[str, list[dict[str, Any]]]:
    """Networks, volumes, images and containers with their settings; uploads point at config/."""
    images = {
        reveal(r.outputs.get("imageId")): reveal(r.inputs.get("name"))
        for r in deployment.of_type("docker:index/remoteImage:RemoteImage")
    }
    by_container = {(f.workload, f.path): f for f in files}
    plan: dict[str, list[dict[str, Any]]] = {section: [] for section in DOCKER_KINDS.values()}
    # By name, not in registration order, which varies from run to run (the program registers
    # concurrently): an unchanged stack renders the same plan.
    for reg in sorted(deployment.registrations, key=lambda r: (r.name, r.urn)):
        section = DOCKER_KINDS.get(reg.type)
        if section is None:
            continue
        settings = dict(reg.inputs)
        if section == "containers":
            settings["image"] = images.get(reveal(settings.get("image")), settings.get("image"))
            uploads = []
            for upload in secret_items(settings.get("uploads")):
                plain = {k: v for k, v in reveal(upload).items() if k != "content"}
                generated = by_container[(_workload(reg), plain["file"])]
                uploads.append(plain | {"contentFile": f"config/{generated.relative}"})
            settings["uploads"] = uploads
        plan[section].append({"resource": reg.name, "protect": reg.protect, **settings})
    return plan
