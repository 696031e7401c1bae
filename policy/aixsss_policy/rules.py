"""The rules: each a description, a remediation hint and a check that names what is wrong.

A check takes one Resource (or, for a stack rule, all of them) and yields one message per
violation. The checks are plain functions so tests call them through the same
ResourceValidationArgs/StackValidationArgs the engine uses (see pack.py).

Docker services get their files from a config carrier (components/platforms/docker.py): a
container that is only created, never started, whose uploads fill a volume the service mounts
read-only at /etc/aixsss. The rules about file content (redis.conf, nginx.conf) judge the file
where it is declared: on the carrier. That stays a resource rule on purpose: `pulumi up` runs
resource rules before each resource is created, so a weakened redis.conf stops its carrier, and
with it the service, whose config label is the carrier's id; stack rules run only once every
resource is registered (after a preview; after the update, when it is too late to stop anything).
Which service reads which carrier, and that the files it names are there (MinIO's certificates
in --certs-dir), needs both resources: the stack rule docker-config-delivered checks it.

PostgreSQL on Kubernetes is a CloudNativePG Cluster: the operator makes its pods, PVCs and
Services, which are not Pulumi resources, so no rule here sees them. What the Cluster itself
declares is judged: its image (images-pinned), its resources (resource-limits) and its
protection (stateful-resources-protected). What the operator's pods do is the operator's:
non-root (uid 26), no privilege escalation, ALL capabilities dropped, a RuntimeDefault seccomp
profile and its instance manager's probes. The pack cannot check those; the namespace's Pod
Security `restricted` enforcement (namespace-pod-security-restricted) refuses any of its pods
that would break the first four, at admission.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from aixsss_policy.resources import (
    CONFIG_CARRIER_ROLE,
    CONFIG_DIR,
    CONFIG_VOLUME_ROLE,
    CONTAINER,
    DATA_SERVICES,
    EXPORTER_ROLE,
    LOOPBACK,
    REMOTE_IMAGE,
    ROLE_LABEL,
    SERVING_KINDS,
    VOLUME,
    VOLUME_OWNER_ROLE,
    Resource,
    directives,
    image_is_pinned,
)

HSTS_MIN_SECONDS = 31536000
DANGEROUS_CAPABILITIES = {"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "NET_RAW", "DAC_READ_SEARCH"}
SECRET_ENV_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY$|_KEY_|AUTH|DATABASE_URL|REDIS_URL)")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^@\s/]+@")
STATEFUL_KINDS = ("PersistentVolumeClaim", "StatefulSet")
# A Docker config volume: `<prefix>-<service>-config-<hash of its paths>`, and `.<revision>` for
# a service replaced side by side, labelled with the config role (its name may be unknown in a
# preview then: the revision is drawn at create). It holds what the carrier's uploads put there,
# rewritten on every change, and is replaced when the list of paths changes, so it is not
# protected; docker-config-delivered checks that only config goes in it.
CONFIG_VOLUME = re.compile(r".+-config-[0-9a-f]{8}(\.[0-9a-f]{8})?")


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    remediation: str
    check: Callable[[Resource], Iterable[str]]


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    remediation: str
    check: Callable[[list[Resource]], Iterable[str]]


def _volume_owner_helper(r: Resource) -> bool:
    """Docker's one-shot chown helper: root, but no network, CHOWN/FOWNER only, runs once."""
    caps = r.props.get("capabilities") or {}
    return (
        r.labels.get(ROLE_LABEL) == VOLUME_OWNER_ROLE
        and r.props.get("networkMode") == "none"
        and "ALL" in (caps.get("drops") or [])
        and set(caps.get("adds") or []) <= {"CHOWN", "FOWNER"}
        and bool(r.props.get("attach"))
        and not r.props.get("mustRun", True)
    )


def _config_carrier(r: Resource) -> bool:
    """Docker's config carrier: created only to receive its service's files (start false, no
    restart policy, not required to run), no network, no capability, no port. It runs no process,
    so it needs no health check and no user (it still gets limits, in case someone starts it); the
    rules about the files it carries apply to it."""
    caps = r.props.get("capabilities") or {}
    return (
        r.type == CONTAINER
        and r.labels.get(ROLE_LABEL) == CONFIG_CARRIER_ROLE
        and r.props.get("start") is False
        and not r.props.get("mustRun", True)
        and (r.props.get("restart") or "no") == "no"
        and r.props.get("networkMode") == "none"
        and not r.props.get("ports")
        and not r.props.get("privileged")
        and "ALL" in (caps.get("drops") or [])
        and not caps.get("adds")
    )


def _exporter(r: Resource) -> bool:
    """Docker's metrics exporter (ServiceSpec.exporters): in its service's network namespace
    (``container:``), so it has no network, port or alias of its own; read-only, no capability,
    not root, not privileged. Its images (scratch) hold no shell or client for a health check:
    Prometheus's scrape (``up``, alerted on) is its health check. A role label alone exempts
    nothing."""
    caps = r.props.get("capabilities") or {}
    user = str(r.props.get("user") or "")
    return (
        r.type == CONTAINER
        and r.labels.get(ROLE_LABEL) == EXPORTER_ROLE
        and str(r.props.get("networkMode") or "").startswith("container:")
        and not r.props.get("networksAdvanced")
        and not r.props.get("ports")
        and r.props.get("readOnly") is True
        and not r.props.get("privileged")
        and "ALL" in (caps.get("drops") or [])
        and not caps.get("adds")
        and user.split(":")[0] not in ("", "0", "root")
    )


def _helper(r: Resource) -> bool:
    """A container that helps a service (volume owner, config carrier, exporter) and is shaped like
    one: not the service itself. A role label alone exempts nothing."""
    return _volume_owner_helper(r) or _config_carrier(r) or _exporter(r)


def _option(words: list[str], flag: str) -> str | None:
    return next((words[i + 1] for i, w in enumerate(words[:-1]) if w == flag), None)


def _config_volume(r: Resource) -> bool:
    if r.type != VOLUME or r.labels.get(ROLE_LABEL) != CONFIG_VOLUME_ROLE:
        return False
    try:
        name = r.props.get("name")
    except UnknownValueError:  # a revision not drawn yet (preview)
        return True
    return bool(CONFIG_VOLUME.fullmatch(str(name or "")))


def _from_config_volume(r: Resource, path: str) -> bool:
    """``path`` lies in the config volume ``r`` mounts read-only (Docker): its carrier holds it."""
    return path.startswith(f"{CONFIG_DIR}/") and any(at == CONFIG_DIR and read_only for _, at, read_only in r.mounts())


def _run_once(r: Resource) -> bool:
    return r.type == CONTAINER and bool(r.props.get("attach")) and not r.props.get("mustRun", True)


# ---------------------------------------------------------------------------------- checks


def data_services_not_public(r: Resource) -> Iterator[str]:
    if r.service not in DATA_SERVICES:
        return
    if r.type == CONTAINER:
        for port in r.props.get("ports") or []:
            ip = port.get("ip") or "0.0.0.0"
            if ip not in LOOPBACK:
                yield f"{r.service} publishes port {port.get('internal')} on {ip}:{port.get('external')}"
    elif r.kind == "Service":
        spec = r.props.get("spec") or {}
        if spec.get("type") in ("LoadBalancer", "NodePort") or spec.get("externalIPs"):
            yield f"Service {r.name} exposes {r.service} outside the cluster (type {spec.get('type')})"
    for container in r.containers():
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{r.service} binds hostPort {port['hostPort']}"


# The HA set's data nodes (components/conf/redis_ha.py) and the script they start from.
REDIS_NODE, REDIS_NODE_START = "redis-node", "/redis-node-start.sh"


def redis_auth_and_tls(r: Resource) -> Iterator[str]:
    for path, content in r.files():
        if not path.endswith("redis.conf"):
            continue
        lines = directives(content)
        settings = {words[0].lower(): words[1:] for words in lines}
        # Clients authenticate as the default user: its password from requirepass, or its ACL
        # line (`user default on ... #<sha256>|><password>`, several during a rotation).
        default = [w[2:] for w in lines if w[0].lower() == "user" and w[1:2] == ["default"]]
        acl_passwords = (
            bool(default)
            and any(rule.startswith(("#", ">")) for rule in default[-1])
            and not any(rule in ("nopass", "off") for rule in default[-1])
        )
        authenticated = bool(settings.get("requirepass")) or acl_passwords
        if not authenticated:
            yield f"{path}: no requirepass and no default user with passwords: any client may run commands"
        if settings.get("port") != ["0"]:
            yield f"{path}: the plain-text port is open (set `port 0`)"
        if not settings.get("tls-port") or not settings.get("tls-cert-file") or not settings.get("tls-key-file"):
            yield f"{path}: TLS is not configured (tls-port, tls-cert-file, tls-key-file)"
        if r.kind == "ConfigMap" and authenticated:
            yield f"{path}: the Redis password (or its hash) sits in a ConfigMap; use a Secret"
    if r.service in ("redis", REDIS_NODE) and not _helper(r) and (r.type == CONTAINER or r.kind in SERVING_KINDS):
        args = [a for c in r.containers() for a in [*(c.get("args") or []), *(c.get("command") or [])]]
        args += list(r.props.get("command") or []) + list(r.props.get("entrypoints") or [])
        # The highly available set (prod on Kubernetes): `redis` is HAProxy in front, passing TLS
        # through; its nodes start from their start script, which runs redis-server on a copy of
        # the generated redis.conf (the Secret holding both is judged above, file by file).
        proxy = r.service == "redis" and any(str(a).endswith("/haproxy.cfg") for a in args)
        started = REDIS_NODE_START if r.service == REDIS_NODE else "redis.conf"
        if not proxy and not any(str(a).endswith(started) for a in args):
            yield f"{r.service} starts without the generated {started} (no auth, no TLS)"


def minio_https_console_private(r: Resource) -> Iterator[str]:
    if r.service != "minio" or _helper(r) or not (r.type == CONTAINER or r.kind in (*SERVING_KINDS, "Service")):
        return
    if r.kind == "Service":
        spec = r.props.get("spec") or {}
        public = spec.get("type") in ("LoadBalancer", "NodePort")
        for port in spec.get("ports") or []:
            if public and port.get("name") == "console":
                yield f"Service {r.name} exposes the MinIO console"
        return
    args = [str(a) for a in (r.props.get("command") or [])] + [
        str(a) for c in r.containers() for a in (c.get("args") or [])
    ]
    console = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--console-address"), None)
    certs = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--certs-dir"), None)
    if certs is None:
        yield "minio runs without --certs-dir: the S3 API and console speak plain HTTP"
    else:
        files = [path for path, _ in r.files()] + r.mounted_paths()
        # Docker: the certificates are in the config volume, filled by minio's carrier; which
        # files that holds only the pair shows (docker-config-delivered, with the same messages).
        if not _from_config_volume(r, certs):
            yield from _certs_missing(certs, files)
    if console is not None and r.type == CONTAINER:
        console_port = int(console.rsplit(":", 1)[-1])
        for port in r.props.get("ports") or []:
            if int(port.get("internal", 0)) == console_port:
                yield f"the MinIO console (port {console_port}) is published"


def _certs_missing(certs: str, files: list[str]) -> Iterator[str]:
    for name in ("public.crt", "private.key"):
        if not any(f.startswith(certs) and f.endswith(name) for f in files):
            yield f"minio has no {name} in {certs}"


def images_pinned(r: Resource) -> Iterator[str]:
    images = []
    if r.type == REMOTE_IMAGE:
        images = [r.props.get("name")]
    images += [c.get("image") for c in r.containers()]
    if r.postgres_cluster:  # the operator runs every instance from it
        images.append((r.props.get("spec") or {}).get("imageName"))
    for image in images:
        if image is not None and not image_is_pinned(str(image)):
            yield f"image {image} is not pinned (a tag other than latest, or @sha256 digest)"


def resource_limits(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER:
        if not r.props.get("memory"):
            yield f"container {r.name} has no memory limit"
        if not r.props.get("cpus") and not r.props.get("cpuShares"):
            yield f"container {r.name} has no CPU limit"
    for c in r.containers():
        limits = (c.get("resources") or {}).get("limits") or {}
        for resource in ("cpu", "memory"):
            if not limits.get(resource):
                yield f"container {c.get('name')} of {r.name} has no {resource} limit"
    if r.postgres_cluster:  # each instance's postgres container gets the Cluster's resources
        limits = ((r.props.get("spec") or {}).get("resources") or {}).get("limits") or {}
        for resource in ("cpu", "memory"):
            if not limits.get(resource):
                yield f"Cluster {r.name} has no {resource} limit for its instances"


def health_checks(r: Resource) -> Iterator[str]:
    if (
        r.type == CONTAINER
        and not _run_once(r)
        and not _config_carrier(r)
        and not _exporter(r)
        and not (r.props.get("healthcheck") or {}).get("tests")
    ):
        yield f"container {r.name} has no healthcheck"
    if r.kubernetes and r.kind in SERVING_KINDS:
        for c in r.pod.get("containers") or [] if r.pod else []:
            if not c.get("readinessProbe") and not c.get("livenessProbe"):
                yield f"container {c.get('name')} of {r.name} has no readiness or liveness probe"


def non_root(r: Resource) -> Iterator[str]:
    """Docker containers and the pods the program declares. A CloudNativePG Cluster's pods are
    the operator's (it runs them as uid 26): not visible here, admitted by Pod Security."""
    if r.type == CONTAINER:
        user = str(r.props.get("user") or "")
        # Exempt: the chown helper (root by need, no network, runs once) and the config carrier
        # (never started: no process runs as anyone; its uploads name their owner).
        if user.split(":")[0] in ("", "0", "root") and not _volume_owner_helper(r) and not _config_carrier(r):
            yield f"container {r.name} runs as root (set user to a non-zero uid)"
    if r.pod is not None:
        pod_ctx = r.pod.get("securityContext") or {}
        for c in r.containers():
            ctx = c.get("securityContext") or {}
            non_root_set = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
            uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            if non_root_set is not True or uid == 0:
                yield f"container {c.get('name')} of {r.name} may run as root (runAsNonRoot, runAsUser)"


def no_privilege_escalation(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER:
        if r.props.get("privileged"):
            yield f"container {r.name} is privileged"
        if not any(str(o).startswith("no-new-privileges") for o in r.props.get("securityOpts") or []):
            yield f"container {r.name} lacks security_opts no-new-privileges:true"
    for c in r.containers():
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged") or ctx.get("allowPrivilegeEscalation") is not False:
            yield f"container {c.get('name')} of {r.name} allows privilege escalation"


def _capabilities(names: Iterable[str]) -> set[str]:
    """Capability names as the runtimes read them: any case, with or without ``CAP_`` (Docker and
    the CRI both accept ``cap_sys_admin``, ``CAP_SYS_ADMIN`` and ``SYS_ADMIN`` alike)."""
    return {str(n).upper().removeprefix("CAP_") for n in names}


def capabilities_dropped(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER:
        caps = r.props.get("capabilities") or {}
        drops, adds = _capabilities(caps.get("drops") or []), _capabilities(caps.get("adds") or [])
        if "ALL" not in drops:
            yield f"container {r.name} does not drop ALL capabilities"
        for cap in sorted(adds & DANGEROUS_CAPABILITIES):
            yield f"container {r.name} adds {cap}"
    for c in r.containers():
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in _capabilities(caps.get("drop") or []):
            yield f"container {c.get('name')} of {r.name} does not drop ALL capabilities"
        for cap in sorted(_capabilities(caps.get("add") or []) & DANGEROUS_CAPABILITIES):
            yield f"container {c.get('name')} of {r.name} adds {cap}"


def no_host_namespaces(r: Resource) -> Iterator[str]:
    """The host's network, PID or IPC namespace: a container there sees and reaches the host's."""
    if r.type == CONTAINER:
        for key in ("networkMode", "pidMode", "ipcMode"):
            if str(r.props.get(key) or "") == "host":
                yield f"container {r.name} uses the host's namespace ({key} host)"
    pod = r.pod or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            yield f"{r.name}: {key} is true"


DOCKER_SOCKET = re.compile(r"(^|/)docker\.sock$")


def no_host_paths(r: Resource) -> Iterator[str]:
    """Host directories in a container (a bind mount, a hostPath volume); the Docker socket is root
    on the host."""
    paths: list[str] = []
    if r.type == CONTAINER:
        paths += [str(v["hostPath"]) for v in r.props.get("volumes") or [] if v.get("hostPath")]
        paths += [str(m.get("source")) for m in r.props.get("mounts") or [] if m.get("type") == "bind"]
    paths += [str(v["hostPath"].get("path")) for v in (r.pod or {}).get("volumes") or [] if v.get("hostPath")]
    for path in paths:
        socket = " (the Docker socket: root on the host)" if DOCKER_SOCKET.search(path) else ""
        yield f"{r.name} mounts the host path {path}{socket}"


def seccomp_confined(r: Resource) -> Iterator[str]:
    """No container without its seccomp (or AppArmor) profile."""
    if r.type == CONTAINER:
        for option in r.props.get("securityOpts") or []:
            name, _, value = str(option).replace("=", ":", 1).partition(":")
            if name in ("seccomp", "apparmor") and value == "unconfined":
                yield f"container {r.name} runs {name}=unconfined"
    contexts = [("the pod", (r.pod or {}).get("securityContext") or {})]
    contexts += [(f"container {c.get('name')}", c.get("securityContext") or {}) for c in r.containers()]
    for who, ctx in contexts:
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"{r.name}: {who} has seccompProfile Unconfined"


def read_only_root(r: Resource) -> Iterator[str]:
    """Root filesystems read-only; what a process writes goes to a volume or a tmpfs."""
    if r.type == CONTAINER and not _helper(r) and r.props.get("readOnly") is not True:
        yield f"container {r.name} has a writable root filesystem"
    for c in r.containers():
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            yield f"container {c.get('name')} of {r.name} has a writable root filesystem"


# The one service clients reach from outside (Docker: published ports; Kubernetes: its Service).
EDGE = "edge"


def only_the_edge_is_exposed(r: Resource) -> Iterator[str]:
    """Only the edge takes traffic from outside: api and web behind it (its TLS, limits and
    headers), never a NodePort, LoadBalancer or published port of their own. The data services'
    own rule (data-services-not-public) covers them."""
    if r.service in (EDGE, *DATA_SERVICES) or _helper(r):
        return
    if r.type == CONTAINER and r.props.get("ports"):
        yield f"container {r.name} publishes ports; only the edge does"
    if r.kind == "Service":
        spec = r.props.get("spec") or {}
        if spec.get("type") in ("LoadBalancer", "NodePort") or spec.get("externalIPs"):
            yield f"Service {r.name} is reachable from outside the cluster ({spec.get('type')}); only the edge is"


CONFIGMAP_SECRET = re.compile(r"(?im)^\s*(?:export\s+)?\w*(PASSWORD|PASSWD|SECRET|TOKEN)\w*\s*[=:]\s*\S+")


def no_secrets_in_configmaps(r: Resource) -> Iterator[str]:
    """A ConfigMap is readable by anyone who may read the namespace's configuration: a password
    assigned in one belongs in a Secret."""
    if r.kind != "ConfigMap":
        return
    for key, content in (r.props.get("data") or {}).items():
        if CONFIGMAP_SECRET.search(str(content)) or re.search(r"(?i)(password|secret|token)", str(key)):
            yield f"ConfigMap {r.name}: {key} holds what looks like a credential; use a Secret"


def no_allow_all_network_policy(r: Resource) -> Iterator[str]:
    """A rule with neither peers nor ports admits everything: beside the default deny, it undoes it."""
    if r.kind != "NetworkPolicy":
        return
    spec = r.props.get("spec") or {}
    for rule in spec.get("ingress") or []:
        if not rule.get("from") and not rule.get("ports"):
            yield f"NetworkPolicy {r.name} admits any source on any port"
    for rule in spec.get("egress") or []:
        if not rule.get("to") and not rule.get("ports"):
            yield f"NetworkPolicy {r.name} allows any destination on any port"


def secrets_by_reference(r: Resource) -> Iterator[str]:
    for c in r.containers():
        for env in c.get("env") or []:
            value = env.get("value")
            if value is None:
                continue
            name = env.get("name", "")
            # `<NAME>_FILE=/path`: the secret is in the file (a Secret's, mounted), not here.
            if name.endswith("_FILE") and str(value).startswith("/"):
                continue
            if SECRET_ENV_NAME.search(name):
                yield f"{r.name}: {env['name']} is set inline; use valueFrom.secretKeyRef"
            elif CREDENTIALS_IN_URL.search(str(value)):
                yield f"{r.name}: {env['name']} carries credentials inline; use valueFrom.secretKeyRef"


def namespace_restricted(r: Resource) -> Iterator[str]:
    if r.kubernetes and r.kind == "Namespace":
        labels = r.labels
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            yield f"namespace {r.name} does not enforce Pod Security `restricted`"


def stateful_protected(r: Resource) -> Iterator[str]:
    """A CloudNativePG Cluster counts: deleting it deletes its instances' PVCs with it (the
    operator owns them), so it is the resource that holds PostgreSQL's data on Kubernetes."""
    if not r.config.get("requireProtect", False):
        return
    stateful = (
        (r.type == VOLUME and not _config_volume(r))
        or (r.kubernetes and r.kind in (*STATEFUL_KINDS, "Namespace"))
        or r.postgres_cluster
    )
    if stateful and not r.protect:
        yield f"{r.kind} {r.name} holds data but is not protected (protect: true)"


def edge_tls_and_hsts(r: Resource) -> Iterator[str]:
    for path, content in r.files():
        if not path.endswith("nginx.conf"):
            continue
        words = directives(content)
        protocols = {p.rstrip(";") for w in words if w[0] == "ssl_protocols" for p in w[1:]}
        if not protocols or protocols - {"TLSv1.2", "TLSv1.3"}:
            yield f"{path}: ssl_protocols must be TLSv1.2/TLSv1.3 only, found {sorted(protocols) or 'none'}"
        if not any(w[0] == "listen" and "ssl" in [x.rstrip(";") for x in w] for w in words):
            yield f"{path}: no TLS listener"
        ages = [int(m) for m in re.findall(r"add_header Strict-Transport-Security \"max-age=(\d+)", content)]
        if not ages or min(ages) < HSTS_MIN_SECONDS:
            yield f"{path}: HSTS missing or max-age below {HSTS_MIN_SECONDS} in some block"
        if "return 301 https://" not in content:
            yield f"{path}: plain HTTP is not redirected to HTTPS"


def edge_sees_the_client(r: Resource) -> Iterator[str]:
    """The edge's rate limit is per client only while it knows the client: a LoadBalancer keeps
    the client's address only with externalTrafficPolicy Local (Cluster reaches the pod through
    another node's SNAT), and nginx may take X-Forwarded-For from named proxies, never from all."""
    if r.kind == "Service" and r.service == EDGE:
        spec = r.props.get("spec") or {}
        if spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") != "Local":
            yield (
                f"Service {r.name} is a LoadBalancer without externalTrafficPolicy Local: the edge sees "
                "a node's address, and every client shares one rate-limit bucket"
            )
    for path, content in r.files():
        if path.endswith("nginx.conf"):
            for words in directives(content):
                source = words[-1].rstrip(";")
                if words[0] == "set_real_ip_from" and _every_address(source):
                    yield f"{path}: set_real_ip_from {source} lets any client choose its address (X-Forwarded-For)"


def _every_address(source: str) -> bool:
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen == 0
    except ValueError:
        return False


def docker_config_delivered(resources: list[Resource]) -> Iterator[str]:
    """Each Docker service reads its files from its own config carrier, and finds them there."""
    containers = [r for r in resources if r.type == CONTAINER]
    fillers: dict[str, list[Resource]] = {}
    for c in containers:
        if c.labels.get(ROLE_LABEL) != CONFIG_CARRIER_ROLE:
            continue
        if not _config_carrier(c):
            yield (
                f"config carrier {c.name} could run: create it only (start false, restart no, must_run "
                "false, network none, ALL capabilities dropped, no port)"
            )
        volumes = [volume for volume, at, _ in c.mounts() if at == CONFIG_DIR]
        if len(volumes) != 1:
            yield f"config carrier {c.name} mounts {len(volumes)} volumes at {CONFIG_DIR} (expected one)"
        for volume in volumes:
            fillers.setdefault(volume, []).append(c)
        for path in c.upload_paths():
            if not path.startswith(f"{CONFIG_DIR}/"):
                yield f"config carrier {c.name} uploads {path} outside its config volume: no service sees it"
    for c in containers:
        for volume, at, read_only in c.mounts():
            if volume in fillers and c not in fillers[volume] and not read_only:
                yield f"{c.name} mounts the config volume {volume} writable: it could rewrite its config"
            if volume in fillers and at != CONFIG_DIR:
                yield f"{c.name} mounts the config volume {volume} at {at}, not {CONFIG_DIR}"
    for c in containers:
        if _helper(c):
            continue  # the carriers above; volume owners take no files
        delivered = list(c.upload_paths())
        for volume, at, _ in c.mounts():
            if at != CONFIG_DIR:
                continue
            carriers = fillers.get(volume, [])
            if len(carriers) != 1:
                yield f"{c.name}'s config volume {volume} is filled by {len(carriers)} config carriers (expected one)"
            for carrier in carriers:
                if carrier.service != c.service:
                    yield f"{c.name} ({c.service}) mounts the config of {carrier.service} ({carrier.name})"
                delivered += carrier.upload_paths()
        words = c.words()
        for word in words:
            named = word.rstrip("/")
            if named.startswith(f"{CONFIG_DIR}/") and not any(
                p == named or p.startswith(f"{named}/") for p in delivered
            ):
                yield f"{c.name} reads {named}, which is not among its files (its config carrier's uploads)"
        certs = _option(words, "--certs-dir") if c.service == "minio" else None
        if certs is not None:
            yield from _certs_missing(certs, delivered)
    for v in resources:
        if not _config_volume(v):
            continue
        try:
            name = str(v.props.get("name"))
        except UnknownValueError:  # a revision not drawn yet (preview): its carrier's is unknown too
            continue
        if name not in fillers:
            yield f"volume {name} is a config volume (unprotected) but no carrier fills it"


# The api's release record (components/releases.py): /etc/aixsss/release.json on Docker (its
# config carrier's upload), the key etc_aixsss_release.json of its ConfigMap on Kubernetes.
RELEASE_RECORD = re.compile(r"(^|[/_])release\.json$")
MIGRATION_JOB_SERVICE = "api-migrate"


_UNKNOWN: dict[str, Any] = {"unknown": True}


def _release_record(r: Resource, *, known: bool = True) -> dict[str, Any] | None:
    """The api's release record this resource carries (an empty one if it does not parse), found
    by path first: the record is plain text, but a carrier's other files (the CA) are unknown in a
    first preview. Unknown content raises, unless ``known`` is False (then _UNKNOWN)."""
    if r.service != "api":
        return None
    sources: list[tuple[Any, Any]] = []
    if r.type == CONTAINER:
        sources = [(u, "content") for u in r.props.get("uploads") or [] if RELEASE_RECORD.search(str(u.get("file")))]
    elif r.kind in ("ConfigMap", "Secret"):
        for section in ("data", "stringData"):
            data = r.props.get(section) or {}
            sources += [(data, key) for key in data if RELEASE_RECORD.search(key)]
    for holder, key in sources:
        try:
            content = holder[key]
        except UnknownValueError:
            if known:
                raise
            return _UNKNOWN
        try:
            record = json.loads(content)
        except (TypeError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}
    return None


def _rollback(record: dict[str, Any]) -> bool:
    """The api's images expect an older schema than the database has: a rollback."""
    return bool(record.get("rollbackFrom")) or record.get("migrationHead") != record.get("schemaHead")


def rollback_crosses_compatible_migrations(r: Resource) -> Iterator[str]:
    """A resource rule, on what carries the record (Docker: the api's config carrier; Kubernetes:
    its ConfigMap): `pulumi up` runs it before that resource changes, so a refused rollback stops
    before the older api is configured."""
    record = _release_record(r)
    if record is None:
        return
    release = record.get("release")
    if not release or "schemaHead" not in record or "migrationHead" not in record:
        yield f"{r.name}: the release record names no release, migration head or schema head"
        return
    if not _rollback(record):
        return
    for step in record.get("appliedSince") or []:
        if not step.get("backwardCompatible"):
            first = (step.get("migrations") or [step.get("head")])[0]
            yield (
                f"rollback to {release} (migration head {record['migrationHead']}): release {step.get('release')} "
                f"applied migration {first}, not declared backward compatible. Restore the database from a "
                "backup taken before it, or roll forward"
            )
            return


def _migration_jobs(resources: list[Resource]) -> list[Resource]:
    """The migration job: Docker's run-once container (not its config carrier), Kubernetes' Job."""
    return [
        r
        for r in resources
        if r.service == MIGRATION_JOB_SERVICE
        and ((r.type == CONTAINER and r.labels.get(ROLE_LABEL) != CONFIG_CARRIER_ROLE) or r.kind == "Job")
    ]


def rollback_runs_no_migrations(resources: list[Resource]) -> Iterator[str]:
    """The api carries a release record, and on a rollback no migration job is declared."""
    records = [(r, record) for r in resources if (record := _release_record(r, known=False)) is not None]
    api = [r for r in resources if r.service == "api" and (r.type == CONTAINER or r.kind in SERVING_KINDS)]
    if api and not records:
        yield "the api carries no release record (/etc/aixsss/release.json): no rollback can be judged"
    for _, record in records:
        # Not known yet (a first preview, which is no rollback): `pulumi up` judges it.
        if record is _UNKNOWN or not _rollback(record):
            continue
        for job in _migration_jobs(resources):
            yield (
                f"rollback to {record.get('release')} declares the migration job {job.name}: a rollback runs no "
                f"migrations (the schema stays at {record.get('schemaHead')})"
            )


def namespaces_default_deny(resources: list[Resource]) -> Iterator[str]:
    namespaces = [r for r in resources if r.kubernetes and r.kind == "Namespace"]
    denies = set()
    for r in resources:
        if r.kubernetes and r.kind == "NetworkPolicy":
            spec = r.props.get("spec") or {}
            empty_selector = not (spec.get("podSelector") or {}).get("matchLabels") and not (
                spec.get("podSelector") or {}
            ).get("matchExpressions")
            both = {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
            if empty_selector and both and not spec.get("ingress") and not spec.get("egress"):
                denies.add((r.props.get("metadata") or {}).get("namespace"))
    for ns in namespaces:
        name = (ns.props.get("metadata") or {}).get("name")
        if name not in denies:
            yield f"namespace {name} has no default-deny NetworkPolicy (all pods, Ingress and Egress, no rules)"


# ----------------------------------------------------------------------------------- rules

RULES: tuple[Rule, ...] = (
    Rule(
        "data-services-not-public",
        "PostgreSQL, Redis and MinIO publish no port on a public address.",
        "Publish data ports only on 127.0.0.1 (dev), never a LoadBalancer/NodePort/hostPort.",
        data_services_not_public,
    ),
    Rule(
        "redis-auth-and-tls",
        "Redis requires a password and serves TLS only.",
        "Start redis-server with the generated redis.conf: default user's passwords, port 0, tls-port, certificates.",
        redis_auth_and_tls,
    ),
    Rule(
        "minio-https-console-private",
        "MinIO serves HTTPS and its console is not public.",
        "Run minio with --certs-dir holding public.crt/private.key; never publish the console port.",
        minio_https_console_private,
    ),
    Rule(
        "images-pinned",
        "Every image is pinned: no `latest`, no missing tag.",
        "Set images.<service> to a release tag or repo@sha256:<digest> in the stack file.",
        images_pinned,
    ),
    Rule(
        "resource-limits",
        "Every container and pod has memory and CPU limits.",
        "Set <service>.memoryMb and <service>.cpuMillis; the platforms turn them into limits.",
        resource_limits,
    ),
    Rule(
        "health-checks",
        "Every long-running container has a healthcheck; every pod readiness or liveness probes.",
        "Give the service spec a Probe; run-once jobs and Docker exporters (no shell in their images; "
        "Prometheus's scrape is their check) are exempt.",
        health_checks,
    ),
    Rule(
        "non-root",
        "Containers run as a non-root user.",
        "Set Security.run_as_user to the image's unprivileged uid.",
        non_root,
    ),
    Rule(
        "no-privilege-escalation",
        "No container is privileged or may gain privileges.",
        "Docker: security_opts no-new-privileges:true; Kubernetes: allowPrivilegeEscalation: false.",
        no_privilege_escalation,
    ),
    Rule(
        "capabilities-dropped",
        "Containers drop ALL capabilities and add none of the dangerous ones (in any spelling: "
        "cap_sys_admin, CAP_SYS_ADMIN, SYS_ADMIN).",
        "Drop ALL; add back only what the process needs (e.g. NET_BIND_SERVICE).",
        capabilities_dropped,
    ),
    Rule(
        "no-host-namespaces",
        "No container shares the host's network, PID or IPC namespace.",
        "Remove network_mode/pid_mode/ipc_mode host, hostNetwork/hostPID/hostIPC.",
        no_host_namespaces,
    ),
    Rule(
        "no-host-paths",
        "No container mounts a host directory, least of all the Docker socket.",
        "Use a named volume (Docker) or a PVC, emptyDir, ConfigMap or Secret (Kubernetes).",
        no_host_paths,
    ),
    Rule(
        "seccomp-confined",
        "No container runs without its seccomp or AppArmor profile.",
        "Drop seccomp=unconfined / apparmor=unconfined; seccompProfile RuntimeDefault.",
        seccomp_confined,
    ),
    Rule(
        "read-only-root",
        "Every container's root filesystem is read-only (helpers that never run excepted).",
        "read_only true / readOnlyRootFilesystem true; give the process a volume or tmpfs for writes.",
        read_only_root,
    ),
    Rule(
        "only-the-edge-is-exposed",
        "Only the edge is reachable from outside: no published port, NodePort or LoadBalancer of another service.",
        "Reach api and web through the edge; remove the ports, or set the Service type to ClusterIP.",
        only_the_edge_is_exposed,
    ),
    Rule(
        "no-secrets-in-configmaps",
        "No ConfigMap assigns a password, secret or token.",
        "Move the value to a Secret and mount or reference it.",
        no_secrets_in_configmaps,
    ),
    Rule(
        "no-allow-all-network-policy",
        "No NetworkPolicy rule admits any peer on any port (it would undo the default deny).",
        "Name the peers (podSelector/namespaceSelector/ipBlock) and the ports of each rule.",
        no_allow_all_network_policy,
    ),
    Rule(
        "kubernetes-secrets-by-reference",
        "Kubernetes secrets reach containers only through Secret references.",
        "Put the value in a Secret and use env[].valueFrom.secretKeyRef (spec.secret_env).",
        secrets_by_reference,
    ),
    Rule(
        "namespace-pod-security-restricted",
        "Every Kubernetes namespace enforces Pod Security `restricted`.",
        "Label the namespace pod-security.kubernetes.io/enforce=restricted.",
        namespace_restricted,
    ),
    Rule(
        "stateful-resources-protected",
        "Volumes, PVCs, StatefulSets, CloudNativePG Clusters and namespaces are protected where the config "
        "requires it.",
        "Protected stacks (staging, prod) set protect=True on stateful resources (config.protect_data).",
        stateful_protected,
    ),
    Rule(
        "edge-tls-and-hsts",
        "The edge serves TLS 1.2/1.3 only, sends HSTS for a year everywhere and redirects HTTP.",
        "Generate nginx.conf with components/conf/nginx.py; do not hand-edit it.",
        edge_tls_and_hsts,
    ),
    Rule(
        "edge-sees-the-client",
        "The edge knows each client's address, the key of its rate limit: its LoadBalancer Service has "
        "externalTrafficPolicy Local, and nginx believes X-Forwarded-For from named proxies only.",
        "Keep the generated edge Service; set kubernetes.gatewayAddresses to the Gateway's own ranges, never a /0.",
        edge_sees_the_client,
    ),
    Rule(
        "rollback-crosses-compatible-migrations",
        "A rollback crosses only migrations declared backward compatible: the api's release record lists "
        "every release applied since the target, and each that moved the schema says compatible=true.",
        "Roll back only past releases whose migrations are compatible=true in aixsss:releases; otherwise "
        "restore the database from a backup taken before them (README: Releases and rollback), or roll forward "
        "with a new release.",
        rollback_crosses_compatible_migrations,
    ),
)

STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "docker-config-delivered",
        "Each Docker service mounts read-only the config volume of its own config carrier (created, never "
        "started), which holds every file under /etc/aixsss its command and health check name, and MinIO's "
        "certificate and key in --certs-dir; only config goes into a config volume.",
        "Declare the service's files as ConfigFiles (components/spec.py); the Docker platform puts them in "
        "the service's carrier. Do not mount a config volume elsewhere or writable.",
        docker_config_delivered,
    ),
    StackRule(
        "rollback-runs-no-migrations",
        "The api carries its release record (/etc/aixsss/release.json), and a rollback (a migration head "
        "older than the schema's) declares no migration job.",
        "Roll back with release.rollbackTo (make rollback), which leaves the migration job out.",
        rollback_runs_no_migrations,
    ),
    StackRule(
        "namespace-default-deny",
        "Every Kubernetes namespace has a default-deny NetworkPolicy.",
        "Declare a NetworkPolicy with an empty podSelector, policyTypes Ingress and Egress, and no rules.",
        namespaces_default_deny,
    ),
)
