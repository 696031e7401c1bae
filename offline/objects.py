"""What a stack declares, as files: Kubernetes objects, the Docker plan, generated config files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from components.platforms.docker import CONFIG_CARRIER_ROLE, ROLE_KEY
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
    """ConfigMap/Secret keys, placed where each workload mounts them (by subPath)."""
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
        volumes: dict[str, tuple[tuple[str, str], str]] = {}
        for volume in pod.get("volumes") or []:
            if "configMap" in volume:
                volumes[volume["name"]] = (("configMap", volume["configMap"]["name"]), "0444")
            elif "secret" in volume:
                mode = f"{int(volume['secret'].get('defaultMode', 0o644)):04o}"
                volumes[volume["name"]] = (("secret", volume["secret"]["secretName"]), mode)
        for container in pod.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                source = volumes.get(mount["name"])
                if source is None or "subPath" not in mount or source[0] not in sources:
                    continue
                data = sources[source[0]]
                if mount["subPath"] in data:
                    content = data[mount["subPath"]]
                    files.append(GeneratedFile(obj["metadata"]["name"], mount["mountPath"], content, source[1]))
    return files


def secret_items(value: Any) -> list[Any]:
    """The items of a list input; if the whole list is secret, each item stays marked secret."""
    if is_secret(value):
        return [{**value, "value": item} for item in value["value"] or []]
    return list(value or [])


def _workload(container: Registration) -> str:
    name: str = reveal(container.inputs.get("name"))
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
