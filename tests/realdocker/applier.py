"""Apply a Deployment's Docker resources to a real dockerd, as `pulumi up` with pulumi-docker would.

pulumi-docker 5.2.0 is a bridged Terraform provider: kreuzwerker/terraform-provider-docker under
pulumi-terraform-bridge. The source read for this file (paths in those repositories):

- upstream v4.5.0 (the newest tag published; pulumi-docker 5.1.0 wraps it, commit e944612c):
  internal/provider/resource_docker_container.go (schema: ForceNew, defaults),
  internal/provider/resource_docker_container_funcs.go (Create, Update, Delete),
  internal/provider/resource_docker_container_structures.go (ports, volumes, ulimits, hosts),
  internal/provider/resource_docker_network{,_funcs}.go, internal/provider/resource_docker_volume.go,
  internal/provider/resource_docker_image{,_funcs}.go, internal/provider/data_source_docker_image.go.
  pulumi-docker 5.2.0's SDK adds `uploads[].owner/group` and `deviceCgroupRules` (upstream v4.6.0,
  whose source was not available): those two are mapped from the SDK's documentation, marked below.
- pulumi-docker provider/resources.go: docker_container has DeleteBeforeReplace: true;
  SetAutonaming(255, "-") autonames every other resource's `name`.
- pulumi-terraform-bridge v3.136.0 pkg/tfbridge/provider.go (Diff) and schema.go
  (nameRequiresDeleteBeforeReplace): an explicitly set autonamed `name` means delete-before-replace.
- pulumi/pulumi pkg/resource/deploy/step_generator.go (calculateDependentReplacements): dependents
  whose ForceNew inputs come from a resource replaced delete-first are replaced with it.

Only what a test of the daemon needs is mirrored; everything else raises (see UnmappedInput).
"""

from __future__ import annotations

import base64
import grp
import io
import json
import pwd
import re
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import docker
import docker.errors

from offline.engine import Deployment, Registration, reveal

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
APPLIED = (NETWORK, VOLUME, IMAGE, CONTAINER)
PROVIDER = "pulumi:providers:docker"
MIB = 1024 * 1024


class ApplyError(RuntimeError):
    """The daemon refused a step, or the provider would have failed it."""


class UnmappedInput(ApplyError):
    """An input this applier does not translate: it must not be silently dropped."""

    def __init__(self, resource: str, key: str, why: str = "not mapped by the applier") -> None:
        super().__init__(f"{resource}: input {key!r} {why}")
        self.resource, self.key = resource, key


class DriftError(ApplyError):
    """A resource in the state is gone from the daemon (pulumi up without --refresh would not notice)."""


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # In place, as resourceDockerContainerUpdate does (restart policy, memory, ...; or must_run).
    updated: list[str] = field(default_factory=list)
    # Containers in the order they were started (or created, when start=False).
    started: list[str] = field(default_factory=list)
    # Exit code of each container found stopped after its create (the provider's `exit_code`).
    exit_codes: dict[str, int] = field(default_factory=dict)
    # The deletes after the creates (replaced create-first, or no longer declared): the resource,
    # its Docker name, and when the delete began and ended (time.monotonic()).
    deletions: list[tuple[str, str, float, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Schema facts (upstream v4.5.0 resource_docker_*.go), in Pulumi's camelCase input names.
# --------------------------------------------------------------------------------------------

# Container attributes without ForceNew: a change is an update, never a replacement.
CONTAINER_NOT_FORCE_NEW = frozenset(
    {
        "rm", "start", "wait", "waitTimeout", "attach", "logs", "mustRun", "restart", "maxRetryCount",
        "removeVolumes", "tmpfs", "deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops",
        "destroyGraceSeconds", "memory", "memoryReservation", "memorySwap", "cpuShares", "cpuSet",
        "healthcheck", "containerReadRefreshTimeoutMilliseconds", "init", "cpuPeriod", "cpuQuota",
    }
)  # fmt: skip
# resourceDockerContainerUpdate sends ContainerUpdate only when one of these changed; other
# non-ForceNew changes (tmpfs, healthcheck, ...) reach the state only, the container keeps its own.
CONTAINER_UPDATED_VIA_API = frozenset(
    {"restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "cpuSet", "memorySwap"}
)
# Schema defaults: an absent input and its default are the same to Terraform's diff.
DEFAULTS: dict[str, dict[str, Any]] = {
    CONTAINER: {
        "rm": False, "readOnly": False, "start": True, "wait": False, "waitTimeout": 60, "attach": False,
        "logs": False, "mustRun": True, "restart": "no", "removeVolumes": True, "networkMode": "bridge",
        "tty": False, "stdinOpen": False, "memoryReservation": 0,
        "containerReadRefreshTimeoutMilliseconds": 15000,
    },
    NETWORK: {"ipamDriver": "default"},
    VOLUME: {},
    IMAGE: {"platform": ""},
}  # fmt: skip
# Keys each non-container type accepts (their SDK Args), and which of them are not ForceNew.
KNOWN_KEYS = {
    NETWORK: {"attachable", "driver", "ingress", "internal", "ipamConfigs", "ipamDriver", "ipamOptions", "ipv6"}
    | {"labels", "name", "options"},
    VOLUME: {"driver", "driverOpts", "labels", "name"},
    IMAGE: {"name", "forceRemove", "keepLocally", "platform", "pullTriggers", "triggers"},
}
NOT_FORCE_NEW = {CONTAINER: CONTAINER_NOT_FORCE_NEW, NETWORK: frozenset(), VOLUME: frozenset()}
NOT_FORCE_NEW[IMAGE] = frozenset({"keepLocally", "forceRemove"})
# TypeSet attributes: their order is not a change.
SET_KEYS = frozenset(
    {
        "envs", "labels", "capabilities", "adds", "drops", "securityOpts", "volumes", "mounts", "hosts",
        "ulimits", "devices", "dns", "dnsOpts", "dnsSearches", "groupAdds", "networksAdvanced", "aliases",
        "linkLocalIps", "uploads", "deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops",
        "ipamConfigs", "pullTriggers",
    }
)  # fmt: skip


def normalized(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs as Terraform's diff sees them: defaults filled, empty values absent, sets unordered."""
    out = {**DEFAULTS.get(typ, {})}
    for key, value in inputs.items():
        if value is None or value == [] or value == {}:
            continue
        out[key] = _canon(key, value)
    return out


def _canon(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canon(k, v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Structs carry numbers as doubles
    if isinstance(value, list):
        items = [_canon(key, v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if key in SET_KEYS else items
    return value


def diff(typ: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[str, set[str]]:
    """("same" | "update" | "replace", changed keys), as the bridge's Diff would decide."""
    before, after = normalized(typ, old), normalized(typ, new)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if not changed:
        return "same", changed
    if changed - NOT_FORCE_NEW[typ]:
        return "replace", changed
    return "update", changed


def delete_before_replace(reg: Registration) -> bool:
    """pulumi-docker resources.go: docker_container has DeleteBeforeReplace: true. Networks and
    volumes have an autonamed `name` (SetAutonaming): set explicitly, the bridge's Diff answers
    delete-before-replace (schema.go nameRequiresDeleteBeforeReplace). docker_image's `name` has its
    own SchemaInfo, so it is not autonamed. The resource option deleteBeforeReplace, when set,
    wins either way (step_generator.go: `if goal.DeleteBeforeReplace != nil`)."""
    if reg.delete_before_replace is not None:
        return reg.delete_before_replace
    if reg.type == CONTAINER:
        return True
    return reg.type in (NETWORK, VOLUME) and "name" in reg.inputs


# --------------------------------------------------------------------------------------------
# Inputs -> Engine API bodies (pure; unit-tested without a daemon)
# --------------------------------------------------------------------------------------------


def go_duration_ns(text: str) -> int:
    """time.ParseDuration (the provider parses healthcheck durations with it), in nanoseconds."""
    units = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
    units["h"] = 3600 * 10**9
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if body == "0":
        return 0
    parts = re.findall(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)", body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ApplyError(f"invalid duration {text!r}")
    return sign * int(sum(Fraction(n) * units[u] for n, u in parts))


def parse_cpus(text: str) -> int:
    """docker/cli opts.ParseCPUs: a rational number of CPUs, as whole nanoCPUs."""
    nano = Fraction(text) * 10**9
    if nano.denominator != 1:
        raise ApplyError(f"Error setting cpus: value {text!r} is too precise")
    return int(nano)


def _int(value: Any) -> int:
    return int(value)


def _labels(items: list[dict[str, Any]]) -> dict[str, str]:
    # helpers.go labelSetToMap
    return {item["label"]: item["value"] for item in items}


def _strings(values: dict[str, Any]) -> dict[str, str]:
    # helpers.go mapTypeMapValsToString
    return {k: str(v) for k, v in values.items()}


def _ports(ports: list[dict[str, Any]]) -> tuple[dict[str, dict], dict[str, list]]:
    """structures.go portSetToDockerPorts. `external` unset is 0 in Terraform, sent as "0" (random);
    `ip` defaults to 0.0.0.0 and `protocol` to tcp in the schema."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list] = {}
    for port in ports:
        key = f"{_int(port['internal'])}/{port.get('protocol') or 'tcp'}"
        exposed[key] = {}
        binding = {"HostIp": port.get("ip") or "0.0.0.0", "HostPort": str(_int(port.get("external") or 0))}
        bindings.setdefault(key, []).append(binding)
    return exposed, bindings


def _volumes(volumes: list[dict[str, Any]]) -> tuple[dict[str, dict], list[str], list[str]]:
    """structures.go volumeSetToDockerVolumes: named volumes and host paths become Binds."""
    paths: dict[str, dict] = {}
    binds: list[str] = []
    volumes_from: list[str] = []
    for volume in volumes:
        from_container, path = volume.get("fromContainer") or "", volume.get("containerPath") or ""
        source = volume.get("hostPath") or volume.get("volumeName") or ""
        if not from_container and not path:
            raise ApplyError("Unable to parse volumes: volume entry without container path or source container")
        if from_container and path:
            raise ApplyError("Unable to parse volumes: both a container and a path specified in a volume entry")
        if from_container:
            volumes_from.append(from_container)
            continue
        paths[path] = {}
        if source:
            mode = "ro" if volume.get("readOnly") else "rw"
            if volume.get("selinuxRelabel"):
                mode += "," + volume["selinuxRelabel"]
            binds.append(f"{source}:{path}:{mode}")
    return paths, binds, volumes_from


def _healthcheck(check: dict[str, Any]) -> dict[str, Any]:
    # Create: time.ParseDuration per field; zero values are omitted by HealthConfig's JSON tags.
    out: dict[str, Any] = {"Test": list(check.get("tests") or [])}
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod")):
        out[api] = go_duration_ns(check.get(key) or "0s")
    out["StartInterval"] = go_duration_ns(check.get("startInterval") or "0s")
    out["Retries"] = _int(check.get("retries") or 0)
    return {k: v for k, v in out.items() if v not in (0, [])}


def _security_opts(opts: list[str]) -> dict[str, Any]:
    # funcs.go parseSystemPaths: `systempaths=unconfined` is client-side, empty Masked/ReadonlyPaths.
    out: dict[str, Any] = {"SecurityOpt": [o for o in opts if o != "systempaths=unconfined"]}
    if "systempaths=unconfined" in opts:
        out.update(MaskedPaths=[], ReadonlyPaths=[])
    return out


def _throttle(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # structures.go throttleDeviceSetToDockerThrottleDevices
    return [{"Path": item["path"], "Rate": _int(item["rate"])} for item in items]


def _ulimit(u: dict[str, Any]) -> dict[str, Any]:
    # structures.go ulimitsToDockerUlimits
    return {"Name": u["name"], "Soft": _int(u["soft"]), "Hard": _int(u["hard"])}


def _device(d: dict[str, Any]) -> dict[str, Any]:
    # structures.go deviceSetToDockerDevices: container_path defaults to host_path; permissions to rwm
    path = d["hostPath"]
    return {
        "PathOnHost": path,
        "PathInContainer": d.get("containerPath") or path,
        "CgroupPermissions": d.get("permissions") or "rwm",
    }


def _restart_policy(values: dict[str, Any]) -> dict[str, Any]:
    return {"Name": values["restart"], "MaximumRetryCount": _int(values.get("maxRetryCount") or 0)}


def _memory_swap(value: Any) -> int:
    swap = _int(value)  # -1 (unlimited) passes through; MB otherwise
    return swap * MIB if swap > 0 else swap


# Each container input the create request carries: key -> (section, function of (value, inputs)).
# Mirrors resourceDockerContainerCreate in the order it reads them.
Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]
CONFIG, HOST = "config", "host"
BODY: dict[str, tuple[str, Handler]] = {
    "image": (CONFIG, lambda v, _: {"Image": v}),
    "hostname": (CONFIG, lambda v, _: {"Hostname": v}),
    "domainname": (CONFIG, lambda v, _: {"Domainname": v}),
    "tty": (CONFIG, lambda v, _: {"Tty": bool(v)}),
    "stdinOpen": (CONFIG, lambda v, _: {"OpenStdin": bool(v)}),
    "stopSignal": (CONFIG, lambda v, _: {"StopSignal": v}),
    "stopTimeout": (CONFIG, lambda v, _: {"StopTimeout": _int(v)}),
    "envs": (CONFIG, lambda v, _: {"Env": list(v)}),
    "command": (CONFIG, lambda v, _: {"Cmd": list(v)}),
    "entrypoints": (CONFIG, lambda v, _: {"Entrypoint": list(v)}),
    "user": (CONFIG, lambda v, _: {"User": v}),
    "ports": (CONFIG, lambda v, _: {"ExposedPorts": _ports(v)[0]} if v else {}),
    "workingDir": (CONFIG, lambda v, _: {"WorkingDir": v}),
    "labels": (CONFIG, lambda v, _: {"Labels": _labels(v)}),
    "healthcheck": (CONFIG, lambda v, _: {"Healthcheck": _healthcheck(v)}),
    "hosts": (HOST, lambda v, _: {"ExtraHosts": [f"{h['host']}:{h['ip']}" for h in v]} if v else {}),
    "ulimits": (HOST, lambda v, _: {"Ulimits": [_ulimit(u) for u in v]} if v else {}),
    "privileged": (HOST, lambda v, _: {"Privileged": bool(v)}),
    "publishAllPorts": (HOST, lambda v, _: {"PublishAllPorts": bool(v)}),
    "restart": (HOST, lambda v, i: {"RestartPolicy": _restart_policy(i)}),
    "maxRetryCount": (HOST, lambda v, i: {}),  # read with `restart`
    "runtime": (HOST, lambda v, _: {"Runtime": v}),
    "rm": (HOST, lambda v, _: {"AutoRemove": bool(v)}),
    "readOnly": (HOST, lambda v, _: {"ReadonlyRootfs": bool(v)}),
    "logDriver": (HOST, lambda v, i: {}),  # read with log_opts below (LogConfig)
    "tmpfs": (HOST, lambda v, _: {"Tmpfs": _strings(v)} if v else {}),
    "capabilities": (HOST, lambda v, _: {"CapAdd": list(v.get("adds") or []), "CapDrop": list(v.get("drops") or [])}),
    "devices": (HOST, lambda v, _: {"Devices": [_device(d) for d in v]}),
    "deviceReadBps": (HOST, lambda v, _: {"BlkioDeviceReadBps": _throttle(v)}),
    "deviceReadIops": (HOST, lambda v, _: {"BlkioDeviceReadIOps": _throttle(v)}),
    "deviceWriteBps": (HOST, lambda v, _: {"BlkioDeviceWriteBps": _throttle(v)}),
    "deviceWriteIops": (HOST, lambda v, _: {"BlkioDeviceWriteIOps": _throttle(v)}),
    "dns": (HOST, lambda v, _: {"Dns": list(v)}),
    "dnsOpts": (HOST, lambda v, _: {"DnsOptions": list(v)}),
    "dnsSearches": (HOST, lambda v, _: {"DnsSearch": list(v)}),
    "securityOpts": (HOST, lambda v, _: _security_opts(list(v))),
    "memory": (HOST, lambda v, _: {"Memory": _int(v) * MIB} if v else {}),
    "memoryReservation": (HOST, lambda v, _: {"MemoryReservation": _int(v) * MIB} if v else {}),
    "memorySwap": (HOST, lambda v, _: {"MemorySwap": _memory_swap(v)} if v else {}),
    "shmSize": (HOST, lambda v, _: {"ShmSize": _int(v) * MIB} if v else {}),
    "cpus": (HOST, lambda v, _: {"NanoCpus": parse_cpus(v)}),
    # `cpus` wins: the provider logs a warning and ignores cpu_period/cpu_quota.
    "cpuPeriod": (HOST, lambda v, i: {} if i.get("cpus") else {"CpuPeriod": _int(v)}),
    "cpuQuota": (HOST, lambda v, i: {} if i.get("cpus") else {"CpuQuota": _int(v)}),
    "cpuShares": (HOST, lambda v, _: {"CpuShares": _int(v)}),
    "cpuSet": (HOST, lambda v, _: {"CpusetCpus": v}),
    "logOpts": (HOST, lambda v, i: {}),  # read with LogConfig below
    "volumes": (HOST, lambda v, i: {}),  # Binds, VolumesFrom and Config.Volumes below
    "networkMode": (HOST, lambda v, _: {"NetworkMode": v}),
    "usernsMode": (HOST, lambda v, _: {"UsernsMode": v}),
    "pidMode": (HOST, lambda v, _: {"PidMode": v}),
    "sysctls": (HOST, lambda v, _: {"Sysctls": _strings(v)} if v else {}),
    "ipcMode": (HOST, lambda v, _: {"IpcMode": v}),
    "groupAdds": (HOST, lambda v, _: {"GroupAdd": list(v)}),
    "cgroupnsMode": (HOST, lambda v, _: {"CgroupnsMode": v}),
    "cgroupParent": (HOST, lambda v, _: {"CgroupParent": v}),
    "init": (HOST, lambda v, _: {"Init": bool(v)}),
    "storageOpts": (HOST, lambda v, _: {"StorageOpt": _strings(v)} if v else {}),
    # pulumi-docker 5.2.0 only (upstream v4.6.0, source not read): the SDK documents it as the
    # cgroup rules of `--device-cgroup-rule`, i.e. HostConfig.DeviceCgroupRules.
    "deviceCgroupRules": (HOST, lambda v, _: {"DeviceCgroupRules": list(v)}),
}
# Read outside the create body: by Create's later steps, Update, Delete or not at all on create.
LIFECYCLE = frozenset(
    {
        "name", "platform", "networksAdvanced", "uploads", "start", "wait", "waitTimeout", "attach",
        "logs", "mustRun", "destroyGraceSeconds", "removeVolumes", "containerReadRefreshTimeoutMilliseconds",
    }
)  # fmt: skip
# In the SDK, not mirrored: they raise rather than vanish.
NOT_MAPPED = {
    "gpus": "needs docker/cli GpuOpts parsing",
    "deviceRequests": "device requests are not mirrored",
    "mounts": "mounts are not mirrored (the program uses volumes)",
}


def container_create_body(resource: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The POST /containers/create body resourceDockerContainerCreate sends for these inputs.

    Raises UnmappedInput for any input key that is neither in the body nor a lifecycle setting.
    """
    for key in inputs:
        if key in NOT_MAPPED:
            raise UnmappedInput(resource, key, NOT_MAPPED[key])
        if key not in BODY and key not in LIFECYCLE:
            raise UnmappedInput(resource, key)
    values = {**DEFAULTS[CONTAINER], **{k: v for k, v in inputs.items() if v is not None}}
    config: dict[str, Any] = {}
    # Fields Create always sets, whatever the inputs (d.Get of a default is still sent).
    host: dict[str, Any] = {"Init": False, "LogConfig": {"Type": values.get("logDriver") or ""}}
    for key, value in values.items():
        if key in BODY:
            section, handler = BODY[key]
            (config if section == CONFIG else host).update(handler(value, values))
    if values.get("ports"):
        host["PortBindings"] = _ports(values["ports"])[1]
    if values.get("volumes"):
        paths, binds, volumes_from = _volumes(values["volumes"])
        config["Volumes"] = paths
        host.update({k: v for k, v in (("Binds", binds), ("VolumesFrom", volumes_from)) if v})
    if values.get("logOpts"):
        host["LogConfig"]["Config"] = _strings(values["logOpts"])
    # networks_advanced is not in NetworkingConfig: Create connects them after the container exists.
    return {**config, "HostConfig": host, "NetworkingConfig": {}}


def network_attachments(inputs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Create, after ContainerCreate: disconnect `bridge`, then NetworkConnect every entry of
    networks_advanced (all of them, the first too) with this EndpointSettings."""
    out = []
    for net in inputs.get("networksAdvanced") or []:
        unsupported = {"gwPriority", "driverOpts"} & {k for k, v in net.items() if v}
        if unsupported:
            raise UnmappedInput(inputs.get("name", "?"), f"networksAdvanced.{sorted(unsupported)[0]}")
        endpoint = {
            "Aliases": list(net.get("aliases") or []),
            "IPAMConfig": {
                "IPv4Address": net.get("ipv4Address") or "",
                "IPv6Address": net.get("ipv6Address") or "",
                "LinkLocalIPs": list(net.get("linkLocalIps") or []),
            },
            "MacAddress": net.get("macAddress") or "",
        }
        out.append((net["name"], endpoint))
    return out


def _numeric_id(value: str, lookup: Callable[[str], Any]) -> int:
    return int(value) if value.isdigit() else int(lookup(value))


def upload_tar(upload: dict[str, Any], now: float | None = None) -> bytes:
    """Create's upload loop: one regular file per tar, named by `file`, extracted at "/"."""
    sources = [k for k in ("content", "contentBase64", "source") if upload.get(k)]
    if len(sources) != 1:
        raise ApplyError(
            "error with upload content: "
            + ("one of" if not sources else "only one of")
            + " 'content', 'content_base64', or 'source' "
            + ("must be set" if not sources else "can be set")
        )
    if upload.get("content"):
        data = str(upload["content"]).encode()
    elif upload.get("contentBase64"):
        data = base64.b64decode(upload["contentBase64"])
    else:
        data = Path(upload["source"]).read_bytes()
    # `permissions` wins over `executable`; 0644 otherwise.
    mode = int(upload["permissions"], 8) if upload.get("permissions") else 0o744 if upload.get("executable") else 0o644
    info = tarfile.TarInfo(upload["file"])  # Go's tar.Header{Name: file}: the path as given
    info.size, info.mode, info.type = len(data), mode, tarfile.REGTYPE
    # Go's WriteHeader rounds ModTime to whole seconds (USTAR); uid/gid 0 unless owner/group.
    info.mtime = round(time.time() if now is None else now)
    # pulumi-docker 5.2.0 only (upstream v4.6.0, source not read): owner/group "are resolved using
    # the host's user database; numeric IDs can be used directly" (SDK docs) -> the header's ids.
    if upload.get("owner"):
        info.uid = _numeric_id(str(upload["owner"]), lambda n: pwd.getpwnam(n).pw_uid)
    if upload.get("group"):
        info.gid = _numeric_id(str(upload["group"]), lambda n: grp.getgrnam(n).gr_gid)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def network_create_body(resource: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerNetworkCreate's CreateOptions, as the Engine client posts them."""
    _check_keys(resource, NETWORK, inputs)
    values = {**DEFAULTS[NETWORK], **{k: v for k, v in inputs.items() if v not in (None, [], {})}}
    # The Go client sets CheckDuplicate for daemons older than API 1.44 (this one is 1.41).
    body: dict[str, Any] = {"Name": values["name"], "CheckDuplicate": True}
    if values.get("labels"):
        body["Labels"] = _labels(values["labels"])
    for key, api in (("driver", "Driver"), ("internal", "Internal"), ("attachable", "Attachable")):
        if values.get(key):
            body[api] = values[key]
    if values.get("ingress"):
        body["Ingress"] = True
    if values.get("options"):
        body["Options"] = _strings(values["options"])
    if values.get("ipv6"):
        body["EnableIPv6"] = True
    # ipam_driver defaults to "default", so IPAM is always sent.
    ipam: dict[str, Any] = {"Driver": values["ipamDriver"]}
    if values.get("ipamConfigs"):
        ipam["Config"] = [_ipam_config(c) for c in values["ipamConfigs"]]
    if values.get("ipamOptions"):
        ipam["Options"] = _strings(values["ipamOptions"])
    body["IPAM"] = ipam
    return body


def _ipam_config(config: dict[str, Any]) -> dict[str, Any]:
    keys = (("subnet", "Subnet"), ("ipRange", "IPRange"), ("gateway", "Gateway"), ("auxAddress", "AuxAddress"))
    return {api: config[key] for key, api in keys if config.get(key)}


def volume_create_body(resource: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerVolumeCreate's CreateOptions (cluster volumes are not mirrored)."""
    _check_keys(resource, VOLUME, inputs)
    body: dict[str, Any] = {"Name": inputs.get("name") or ""}
    if inputs.get("labels"):
        body["Labels"] = _labels(inputs["labels"])
    if inputs.get("driver"):
        body["Driver"] = inputs["driver"]
    if inputs.get("driverOpts"):
        body["DriverOpts"] = _strings(inputs["driverOpts"])
    return body


def _check_keys(resource: str, typ: str, inputs: dict[str, Any]) -> None:
    for key in inputs:
        if key not in KNOWN_KEYS[typ]:
            raise UnmappedInput(resource, key)


def _api_error(err: docker.errors.APIError) -> str:
    return str(err.explanation or err)


def apply_order(deployment: Deployment) -> list[tuple[Registration, list[str]]]:
    """The applied resources, each with the applied resources it waits for, in the order they are
    applied: the first ready one in declaration order, each after everything it depends on."""
    regs = _selected(deployment)
    applied = {r.urn for r in regs}
    deps = {r.urn: _dependencies(deployment, r, applied) for r in regs}
    done: set[str] = set()
    order = []
    while len(order) < len(regs):
        ready = [r for r in regs if r.urn not in done and set(deps[r.urn]) <= done]
        if not ready:
            raise ApplyError("dependency cycle among " + ", ".join(r.name for r in regs if r.urn not in done))
        order.append((ready[0], deps[ready[0].urn]))
        done.add(ready[0].urn)
    return order


def _selected(deployment: Deployment) -> list[Registration]:
    out = []
    for reg in deployment.registrations:
        if reg.type in APPLIED:
            out.append(reg)
        elif reg.type.startswith("docker:") and reg.type != PROVIDER:
            raise ApplyError(f"{reg.name}: resource type {reg.type} is not applied by this applier")
    return out


def _dependencies(deployment: Deployment, reg: Registration, applied: set[str]) -> list[str]:
    """Applied resources `reg` waits for: its dependencies, where a component stands for all its
    descendants (as the SDK expands them), and an applied parent (its URN resolves on create).
    A component parent orders nothing: Pulumi orders by dependencies, not by parent."""
    todo = [*reg.dependencies, *([reg.parent] if reg.parent in applied else [])]
    seen: set[str] = set()
    out: list[str] = []
    while todo:
        urn = todo.pop(0)
        if urn in seen:
            continue
        seen.add(urn)
        if urn in applied:
            out.append(urn)
        else:
            todo += [child.urn for child in deployment.registrations if child.parent == urn]
    return out


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class Entry:
    type: str
    name: str
    inputs: dict[str, Any]
    id: str
    dependencies: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    tainted: bool = False  # a create that failed after the object existed: replaced next time


class State:
    """URN -> Entry, in creation order, written to a JSON file after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = json.loads(path.read_text()) if path.exists() else {}
        self.entries: dict[str, Entry] = {urn: Entry(**e) for urn, e in raw.items()}

    def save(self) -> None:
        data = {urn: e.__dict__ for urn, e in self.entries.items()}
        self.path.write_text(json.dumps(data, indent=2, sort_keys=False))

    def put(self, urn: str, entry: Entry) -> None:
        self.entries.pop(urn, None)
        self.entries[urn] = entry
        self.save()

    def drop(self, urn: str) -> None:
        self.entries.pop(urn, None)
        self.save()

    def dependents(self, urn: str) -> list[str]:
        return [u for u, e in self.entries.items() if urn in e.dependencies]

    def reverse_order(self, urns: set[str]) -> list[str]:
        """Dependents before their dependencies (deletion order), later creations first."""
        order: list[str] = []
        for urn in reversed(list(self.entries)):
            self._visit(urn, urns, order, set())
        return order

    def old_order(self, condemned: set[str], gone: set[str]) -> list[str]:
        """The deletion order of old states: ``condemned`` (`<urn>#old-<id>`, replaced create-first)
        and ``gone`` (no longer declared), dependents before what they depended on. An old state
        depended on the states its URNs named when it was created: an old one where that URN was
        replaced too, the current one otherwise."""
        old_of = {urn.split("#old-", 1)[0]: urn for urn in condemned}
        urns = condemned | gone

        def needs(urn: str) -> set[str]:
            return {old_of.get(dep, dep) for dep in self.entries[urn].dependencies} & urns

        order: list[str] = []
        remaining = [u for u in self.entries if u in urns]
        while remaining:
            # Those no remaining state depends on go first (ScheduleDeletes's antichains).
            needed = set().union(*(needs(u) for u in remaining))
            free = [u for u in reversed(remaining) if u not in needed]
            if not free:
                raise ApplyError("dependency cycle among old states: " + ", ".join(remaining))
            order += free
            remaining = [u for u in remaining if u not in free]
        return order

    def _visit(self, urn: str, urns: set[str], order: list[str], seen: set[str]) -> None:
        if urn in seen or urn in order or urn not in urns:
            return
        seen.add(urn)
        for dependent in self.dependents(urn):
            self._visit(dependent, urns, order, seen)
        order.append(urn)


# --------------------------------------------------------------------------------------------
# The applier
# --------------------------------------------------------------------------------------------


class Applier:
    """`pulumi up` / `pulumi destroy` for the Docker resources of a Deployment, sequentially."""

    def __init__(self, docker_host: str, state_file: Path) -> None:
        self.api = docker.APIClient(base_url=docker_host)
        self.state = State(state_file)
        self._real: dict[str, str] = {}  # a mock output (id, imageId, repoDigest) -> the real one

    def _inputs(self, reg: Registration) -> dict[str, Any]:
        """Revealed inputs, the mock's made-up outputs in them replaced by the daemon's values."""
        return _substitute(reveal(reg.inputs), self._real)

    # ---- apply ----------------------------------------------------------------------------

    def apply(self, deployment: Deployment) -> ApplyReport:
        report = ApplyReport()
        self._real = {}
        plan = apply_order(deployment)
        declared = {reg.urn for reg, _ in plan}
        follow: set[str] = set()  # deleted with a delete-before-replace dependency: recreate
        condemned: list[str] = []  # create-before-replace: the old object goes at the end
        for reg, deps in plan:
            self._apply_one(reg, deps, report, follow, condemned)
        # Pulumi deletes what was replaced create-first and what the program no longer declares
        # after every create and update, together and dependents first, by the old states'
        # dependencies (deployment_executor.go performDeletes -> step_generator.go
        # ScheduleDeletes; run here one at a time, in the antichains' order).
        gone = set(self.state.entries) - declared - set(condemned)
        for urn in self.state.old_order(set(condemned), gone):
            entry, began = self.state.entries[urn], time.monotonic()
            self._delete_state(urn, report if urn in gone else None)
            report.deletions.append((entry.name, str(entry.inputs.get("name", "")), began, time.monotonic()))
        return report

    def _apply_one(
        self, reg: Registration, deps: list[str], report: ApplyReport, follow: set[str], condemned: list[str]
    ) -> None:
        inputs = self._inputs(reg)
        entry = self.state.entries.get(reg.urn)
        if entry is None:
            self._create(reg, inputs, deps, report)
            (report.replaced if reg.urn in follow else report.created).append(reg.name)
            self._remember(reg, self.state.entries[reg.urn])
            return
        fresh = inputs  # without the old autoname: a create-first replacement gets a new one
        inputs = _keep_autoname(reg, inputs, entry)
        verdict, changed = diff(reg.type, entry.inputs, inputs)
        if entry.tainted:
            verdict = "replace"
        if verdict == "same" and not self._must_start(reg, entry):
            self._check_exists(entry)
            if entry.dependencies != deps:
                entry.dependencies = deps
                self.state.save()
            report.unchanged.append(reg.name)
        elif verdict in ("same", "update"):
            self._update(reg, entry, inputs, changed, report)
            entry.inputs, entry.dependencies = inputs, deps
            self.state.save()
            report.updated.append(reg.name)
        elif delete_before_replace(reg):
            for urn in self._dependent_replacements(reg.urn):
                self._delete_state(urn, report=None)
                follow.add(urn)
            self._delete_state(reg.urn, report=None)
            self._create(reg, inputs, deps, report)
            report.replaced.append(reg.name)
        else:
            old = f"{reg.urn}#old-{entry.id[:12]}"
            self.state.entries[old] = entry
            self._create(reg, fresh, deps, report)
            condemned.append(old)
            report.replaced.append(reg.name)
        self._remember(reg, self.state.entries[reg.urn])

    def _dependent_replacements(self, urn: str) -> list[str]:
        """step_generator.go calculateDependentReplacements: a dependent goes with a resource replaced
        delete-first when an input taking that resource's output is ForceNew (then transitively).
        The mock records no per-property dependencies; an input holding one of the resource's
        identifying values (its name or id) stands for one."""
        root = self.state.entries[urn]
        marks = {v for v in (root.inputs.get("name"), root.id, root.outputs.get("imageId")) if v}
        marks.add(_JOIN + root.id)  # network_mode "container:<id>" takes the id too
        out: list[str] = []
        for dependent in self.state.dependents(urn):
            entry = self.state.entries[dependent]
            keys = {k for k, v in entry.inputs.items() if marks & set(_strings_in(v))}
            if keys - NOT_FORCE_NEW[entry.type]:
                out += [dependent, *self._dependent_replacements(dependent)]
        return self.state.reverse_order(set(out))

    # ---- create ---------------------------------------------------------------------------

    def _create(self, reg: Registration, inputs: dict[str, Any], deps: list[str], report: ApplyReport) -> None:
        if reg.type == IMAGE:
            self._create_image(reg, inputs, deps)
        elif reg.type == NETWORK:
            inputs = _autonamed(reg, inputs)
            body = network_create_body(reg.name, inputs)
            created = self._call(reg.name, "Unable to create network", self._post, "/networks/create", body)
            self.state.put(reg.urn, Entry(reg.type, reg.name, inputs, created["Id"], deps))
        elif reg.type == VOLUME:
            inputs = _autonamed(reg, inputs)
            body = volume_create_body(reg.name, inputs)
            created = self._call(reg.name, "Unable to create volume", self._post, "/volumes/create", body)
            self.state.put(reg.urn, Entry(reg.type, reg.name, inputs, created["Name"], deps))
        else:
            self._create_container(reg, inputs, deps, report)

    def _create_image(self, reg: Registration, inputs: dict[str, Any], deps: list[str]) -> None:
        """resourceDockerImageCreate -> findImage: a local image by name; here never pulled."""
        _check_keys(reg.name, IMAGE, inputs)
        name = inputs["name"]
        try:
            found = self.api.inspect_image(name)
        except docker.errors.NotFound as err:
            raise ApplyError(f"{reg.name}: Unable to read Docker image into resource: {name} is not local "
                             f"(the applier never pulls): {_api_error(err)}") from err  # fmt: skip
        outputs = {"imageId": found["Id"], "repoDigest": _repo_digest(name, found.get("RepoDigests") or [])}
        self.state.put(reg.urn, Entry(reg.type, reg.name, inputs, found["Id"] + name, deps, outputs))

    def _remember(self, reg: Registration, entry: Entry) -> None:
        """Map the mock's made-up outputs to the daemon's: EngineLikeMocks.new_resource names every
        resource's id f"{name}-id" and gives a RemoteImage a random imageId and repoDigest."""
        self._real[f"{reg.name}-id"] = entry.id
        for key, value in reveal(reg.outputs).items():
            if key in entry.outputs and isinstance(value, str) and value:
                self._real[value] = entry.outputs[key]

    def _create_container(
        self, reg: Registration, inputs: dict[str, Any], deps: list[str], report: ApplyReport
    ) -> None:
        """resourceDockerContainerCreate, step by step; a failure after the container exists leaves
        it in the state, tainted (replaced by the next apply, removed by destroy)."""
        body = container_create_body(reg.name, inputs)
        values = {**DEFAULTS[CONTAINER], **{k: v for k, v in inputs.items() if v is not None}}
        try:
            self.api.inspect_image(body["Image"])  # findImage; a missing image is an error, not a pull
        except docker.errors.NotFound as err:
            raise ApplyError(f"{reg.name}: Unable to create container with image {body['Image']}: "
                             f"{_api_error(err)}") from err  # fmt: skip
        created = self._call(
            reg.name,
            "Unable to create container",
            self.api.create_container_from_config,
            body,
            values.get("name"),
            values.get("platform") or None,
        )
        entry = Entry(reg.type, reg.name, inputs, created["Id"], deps, tainted=True)
        self.state.put(reg.urn, entry)
        self._connect_networks(reg.name, entry.id, values)
        self._upload(reg.name, entry.id, values.get("uploads") or [])
        if values["start"]:
            self._call(reg.name, "Unable to start container", self.api.start, entry.id)
        report.started.append(reg.name)
        if values["start"] and values["wait"]:
            self._wait_healthy(reg.name, entry.id, _int(values["waitTimeout"]))
        if values["attach"]:
            self._attach(reg.name, entry, bool(values["logs"]))
        self._read_after_create(reg.name, entry, bool(values["mustRun"]), report)
        entry.tainted = False
        self.state.put(reg.urn, entry)

    def _connect_networks(self, resource: str, container_id: str, values: dict[str, Any]) -> None:
        attachments = network_attachments(values)
        if not attachments:
            return
        try:
            self.api.disconnect_container_from_network(container_id, "bridge")
        except docker.errors.APIError as err:
            if "is not connected to the network bridge" not in _api_error(err).lower():
                raise ApplyError(f"{resource}: Unable to disconnect the default network: {_api_error(err)}") from err
        for net, endpoint in attachments:
            body = {"Container": container_id, "EndpointConfig": endpoint}
            self._call(
                resource, f"Unable to connect to network '{net}'", self._post, "/networks/{0}/connect", body, net
            )

    def _upload(self, resource: str, container_id: str, uploads: list[dict[str, Any]]) -> None:
        for upload in uploads:
            archive = upload_tar(upload)
            self._call(resource, "Unable to upload volume content", self.api.put_archive, container_id, "/", archive)

    def _wait_healthy(self, resource: str, container_id: str, timeout: int) -> None:
        """Create's waitForHealthyState: inspect every second until healthy; no healthcheck is an
        error; after wait_timeout seconds "container failed to be in healthy state" (the last health
        log and the container's last log lines are added here, for the test's sake: CI shows them)."""
        deadline = time.monotonic() + timeout
        while True:
            health = (self.api.inspect_container(container_id).get("State") or {}).get("Health")
            if health is None:
                raise ApplyError(
                    f"{resource}: you have supplied a 'wait' argument, but the container does not have a "
                    "healthcheck defined. Please remove the 'wait' argument or add a 'healthcheck' attribute"
                )
            if health.get("Status") == "healthy":
                return
            if time.monotonic() >= deadline:
                last = (health.get("Log") or [{}])[-1]
                tail = self.api.logs(container_id, tail=40).decode(errors="replace")
                raise ApplyError(f"{resource}: container failed to be in healthy state "
                                 f"(status {health.get('Status')}, last check: {last}); "
                                 f"its last log lines:\n{tail}")  # fmt: skip
            time.sleep(1)

    def _attach(self, resource: str, entry: Entry, logs: bool) -> None:
        """Create's attach: ContainerWait(not-running). The exit code is not checked there: a failed
        run-once container does not fail the create (Read records exit_code)."""
        try:
            self.api.wait(entry.id, condition="not-running")
        except docker.errors.APIError as err:
            raise ApplyError(f"{resource}: Unable to wait container end of execution: {_api_error(err)}") from err
        if logs:
            entry.outputs["containerLogs"] = self.api.logs(entry.id, stdout=True, stderr=True).decode(errors="replace")

    def _read_after_create(self, resource: str, entry: Entry, must_run: bool, report: ApplyReport) -> None:
        """resourceDockerContainerRead (Create ends with it): a stopped container gets exit_code, and
        must_run=true flips to false in the state, so the next `up` updates it, i.e. starts it."""
        state = self.api.inspect_container(entry.id)["State"]
        entry.outputs["running"] = bool(state.get("Running"))
        if not state.get("Running"):
            entry.outputs["exitCode"] = state.get("ExitCode")
            report.exit_codes[resource] = int(state.get("ExitCode") or 0)
            entry.outputs["mustRunFalse"] = must_run

    # ---- update ---------------------------------------------------------------------------

    def _must_start(self, reg: Registration, entry: Entry) -> bool:
        return reg.type == CONTAINER and bool(entry.outputs.get("mustRunFalse"))

    def _update(
        self, reg: Registration, entry: Entry, inputs: dict[str, Any], changed: set[str], report: ApplyReport
    ) -> None:
        """resourceDockerContainerUpdate (networks and images have no update that touches the daemon;
        a volume's only one is for cluster volumes, not mirrored)."""
        if reg.type != CONTAINER:
            return
        values = {**DEFAULTS[CONTAINER], **{k: v for k, v in inputs.items() if v is not None}}
        if self._must_start(reg, entry) and values["mustRun"] and values["start"]:
            self._call(reg.name, "Unable to start container", self.api.start, entry.id)
            entry.outputs["mustRunFalse"] = False
            report.started.append(reg.name)
        if changed & CONTAINER_UPDATED_VIA_API:
            self._call(reg.name, "Unable to update a container", self.api.update_container, entry.id,
                       **_update_kwargs(values))  # fmt: skip

    # ---- delete ---------------------------------------------------------------------------

    def _delete_state(self, urn: str, report: ApplyReport | None) -> None:
        entry = self.state.entries[urn]
        if entry.type == CONTAINER:
            self._delete_container(entry)
        elif entry.type == NETWORK:
            self._retry_remove(entry, self.api.remove_network, "has active endpoints", missing_ok=True)
        elif entry.type == VOLUME:
            self._retry_remove(entry, lambda i: self.api.remove_volume(i, force=True), "volume is in use")
        elif not entry.inputs.get("keepLocally"):
            raise ApplyError(f"{entry.name}: removing images (keep_locally unset) is not mirrored")
        self.state.drop(urn)
        if report is not None:
            report.deleted.append(entry.name)

    def _delete_container(self, entry: Entry) -> None:
        """resourceDockerContainerDelete: unless attach, stop with t=destroy_grace_seconds, else t=0 —
        an explicit timeout, so the container's own stop_timeout is not used; then force-remove
        (v=remove_volumes) and wait for not-running."""
        values = {**DEFAULTS[CONTAINER], **entry.inputs}
        ignorable = ("no such container", "is already in progress")
        if not values["attach"]:
            grace = _int(values.get("destroyGraceSeconds") or 0)
            self._ignoring(ignorable[:1], self.api.stop, entry.id, timeout=max(grace, 0))
        self._ignoring(ignorable, self.api.remove_container, entry.id, v=bool(values["removeVolumes"]), force=True)
        self._ignoring(ignorable, self.api.wait, entry.id, condition="not-running")

    def _retry_remove(
        self, entry: Entry, remove: Callable[[str], Any], pending: str, *, missing_ok: bool = False
    ) -> None:
        """Network/volume Delete: a StateChangeConf retrying while the object is in use (Timeout 30s,
        MinTimeout 5s; its initial Delay of 2s only slows the tests and is left out). A network gone
        already counts as removed; a volume is removed with force=true, which the daemon does not
        fail for a missing volume."""
        deadline = time.monotonic() + 30
        while True:
            try:
                remove(entry.id)
                return
            except docker.errors.NotFound:
                if missing_ok:
                    return
                raise
            except docker.errors.APIError as err:
                if pending not in _api_error(err).lower() or time.monotonic() >= deadline:
                    raise ApplyError(f"{entry.name}: {_api_error(err)}") from err
            time.sleep(5)

    # ---- destroy --------------------------------------------------------------------------

    def destroy(self) -> None:
        """`pulumi destroy`: containers, then volumes and networks; images stay (keep_locally)."""
        rank = {CONTAINER: 0, VOLUME: 1, NETWORK: 2, IMAGE: 3}
        order = self.state.reverse_order(set(self.state.entries))
        for urn in sorted(order, key=lambda u: (rank[self.state.entries[u].type], order.index(u))):
            self._delete_state(urn, report=None)

    # ---- helpers --------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any], *args: str) -> Any:
        """POST exactly `body` (docker-py's own helpers would rebuild it from keyword arguments)."""
        response = self.api._post_json(self.api._url(path, *args), data=body)
        return self.api._result(response, json=bool(response.content))

    def _check_exists(self, entry: Entry) -> None:
        inspect = {
            CONTAINER: self.api.inspect_container,
            NETWORK: self.api.inspect_network,
            VOLUME: self.api.inspect_volume,
            IMAGE: lambda i: self.api.inspect_image(entry.outputs["imageId"]),
        }[entry.type]
        try:
            inspect(entry.id)
        except docker.errors.NotFound as err:
            raise DriftError(f"{entry.name}: {entry.id} is in the state but not on the daemon") from err

    def _call(self, resource: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as err:
            raise ApplyError(f"{resource}: {what}: {_api_error(err)}") from err

    def _ignoring(self, messages: tuple[str, ...], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        # helpers.go containsIgnorableErrorMessage: case-insensitive substrings.
        try:
            fn(*args, **kwargs)
        except docker.errors.APIError as err:
            if not any(m in _api_error(err).lower() for m in messages):
                raise ApplyError(_api_error(err)) from err


def _update_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerContainerUpdate's UpdateConfig (device throttles there are not mirrored)."""
    if any(values.get(k) for k in ("deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops")):
        raise UnmappedInput(values.get("name", "?"), "deviceReadBps", "updates in place: not mirrored")
    out: dict[str, Any] = {
        "restart_policy": _restart_policy(values),
        "cpu_shares": _int(values.get("cpuShares") or 0),
        "mem_limit": _int(values.get("memory") or 0) * MIB,
        "mem_reservation": _int(values.get("memoryReservation") or 0) * MIB,
        "cpuset_cpus": values.get("cpuSet") or "",
    }
    if values.get("memorySwap"):
        out["memswap_limit"] = _memory_swap(values["memorySwap"])
    return out


def _repo_digest(name: str, digests: list[str]) -> str:
    # data_source_docker_image.go determineRepoDigest
    if len(digests) <= 1:
        return digests[0] if digests else ""
    repo = name.split(":", 1)[0]
    return next((d for d in digests if d.startswith(repo)), digests[0])


def _autonamed(reg: Registration, inputs: dict[str, Any]) -> dict[str, Any]:
    """The bridge's AutoName(255, "-"): the resource name plus a random suffix, kept in state."""
    if inputs.get("name"):
        return inputs
    return {**inputs, "name": f"{reg.name}-{secrets.token_hex(4)[:7]}"}


def _keep_autoname(reg: Registration, inputs: dict[str, Any], entry: Entry) -> dict[str, Any]:
    """The bridge's Check keeps a resource's autoname from its old state (it changes on replace only)."""
    if reg.type in (NETWORK, VOLUME) and not inputs.get("name") and entry.inputs.get("name"):
        return {**inputs, "name": entry.inputs["name"]}
    return inputs


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


# network_mode joining another container's namespace: the program writes
# Output.concat("container:", owner.id), which the mock resolves to "container:<name>-id".
# Upstream v4.5.0 resourceDockerContainerCreate passes network_mode through as
# HostConfig.NetworkMode (funcs.go L392-398) and connects networks_advanced only when set
# (L463), so such a container gets no network of its own; network_mode is ForceNew.
_JOIN = "container:"


def _substitute(value: Any, real: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value.startswith(_JOIN) and value[len(_JOIN) :] in real:
            return _JOIN + real[value[len(_JOIN) :]]
        return real.get(value, value)
    if isinstance(value, dict):
        return {k: _substitute(v, real) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, real) for v in value]
    return value
