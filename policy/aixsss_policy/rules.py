"""The rules: each a description, a remediation hint and a check that names what is wrong.

A check takes one Resource (or, for a stack rule, all of them) and yields one message per
violation. The checks are plain functions so tests call them through the same
ResourceValidationArgs/StackValidationArgs the engine uses (see pack.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from aixsss_policy.resources import (
    CONTAINER,
    DATA_SERVICES,
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


def _helper(r: Resource) -> bool:
    """A container with a declared helper role (volume owner): not the service itself."""
    return ROLE_LABEL in r.labels


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


def redis_auth_and_tls(r: Resource) -> Iterator[str]:
    for path, content in r.files():
        if not path.endswith("redis.conf"):
            continue
        settings = {words[0].lower(): words[1:] for words in directives(content)}
        if not settings.get("requirepass"):
            yield f"{path}: no requirepass: any client may run commands"
        if settings.get("port") != ["0"]:
            yield f"{path}: the plain-text port is open (set `port 0`)"
        if not settings.get("tls-port") or not settings.get("tls-cert-file") or not settings.get("tls-key-file"):
            yield f"{path}: TLS is not configured (tls-port, tls-cert-file, tls-key-file)"
        if r.kind == "ConfigMap" and settings.get("requirepass"):
            yield f"{path}: the Redis password sits in a ConfigMap; use a Secret"
    if r.service == "redis" and not _helper(r) and (r.type == CONTAINER or r.kind in SERVING_KINDS):
        args = [a for c in r.containers() for a in [*(c.get("args") or []), *(c.get("command") or [])]]
        args += list(r.props.get("command") or []) + list(r.props.get("entrypoints") or [])
        if not any(str(a).endswith("redis.conf") for a in args):
            yield "redis starts without the generated redis.conf (no auth, no TLS)"


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
        files = [path for path, _ in r.files()] + [
            m.get("mountPath", "") for c in r.containers() for m in c.get("volumeMounts") or []
        ]
        for name in ("public.crt", "private.key"):
            if not any(f.startswith(certs) and f.endswith(name) for f in files):
                yield f"minio has no {name} in {certs}"
    if console is not None and r.type == CONTAINER:
        console_port = int(console.rsplit(":", 1)[-1])
        for port in r.props.get("ports") or []:
            if int(port.get("internal", 0)) == console_port:
                yield f"the MinIO console (port {console_port}) is published"


def images_pinned(r: Resource) -> Iterator[str]:
    images = []
    if r.type == REMOTE_IMAGE:
        images = [r.props.get("name")]
    images += [c.get("image") for c in r.containers()]
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


def health_checks(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER and not _run_once(r) and not (r.props.get("healthcheck") or {}).get("tests"):
        yield f"container {r.name} has no healthcheck"
    if r.kubernetes and r.kind in SERVING_KINDS:
        for c in r.pod.get("containers") or [] if r.pod else []:
            if not c.get("readinessProbe") and not c.get("livenessProbe"):
                yield f"container {c.get('name')} of {r.name} has no readiness or liveness probe"


def non_root(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER:
        user = str(r.props.get("user") or "")
        if user.split(":")[0] in ("", "0", "root") and not _volume_owner_helper(r):
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


def capabilities_dropped(r: Resource) -> Iterator[str]:
    if r.type == CONTAINER:
        caps = r.props.get("capabilities") or {}
        drops, adds = caps.get("drops") or [], caps.get("adds") or []
        if "ALL" not in drops:
            yield f"container {r.name} does not drop ALL capabilities"
        for cap in set(adds) & DANGEROUS_CAPABILITIES:
            yield f"container {r.name} adds {cap}"
    for c in r.containers():
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"container {c.get('name')} of {r.name} does not drop ALL capabilities"
        for cap in set(caps.get("add") or []) & DANGEROUS_CAPABILITIES:
            yield f"container {c.get('name')} of {r.name} adds {cap}"


def secrets_by_reference(r: Resource) -> Iterator[str]:
    for c in r.containers():
        for env in c.get("env") or []:
            value = env.get("value")
            if value is None:
                continue
            if SECRET_ENV_NAME.search(env.get("name", "")):
                yield f"{r.name}: {env['name']} is set inline; use valueFrom.secretKeyRef"
            elif CREDENTIALS_IN_URL.search(str(value)):
                yield f"{r.name}: {env['name']} carries credentials inline; use valueFrom.secretKeyRef"


def namespace_restricted(r: Resource) -> Iterator[str]:
    if r.kubernetes and r.kind == "Namespace":
        labels = r.labels
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            yield f"namespace {r.name} does not enforce Pod Security `restricted`"


def stateful_protected(r: Resource) -> Iterator[str]:
    if not r.config.get("requireProtect", False):
        return
    stateful = r.type == VOLUME or (r.kubernetes and r.kind in (*STATEFUL_KINDS, "Namespace"))
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
        "Start redis-server with the generated redis.conf: requirepass, port 0, tls-port and certificates.",
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
        "Give the service spec a Probe; run-once jobs are exempt.",
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
        "Containers drop ALL capabilities and add none of the dangerous ones.",
        "Drop ALL; add back only what the process needs (e.g. NET_BIND_SERVICE).",
        capabilities_dropped,
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
        "Volumes, PVCs, StatefulSets and namespaces are protected where the config requires it.",
        "Protected stacks (staging, prod) set protect=True on stateful resources (config.protect_data).",
        stateful_protected,
    ),
    Rule(
        "edge-tls-and-hsts",
        "The edge serves TLS 1.2/1.3 only, sends HSTS for a year everywhere and redirects HTTP.",
        "Generate nginx.conf with components/conf/nginx.py; do not hand-edit it.",
        edge_tls_and_hsts,
    ),
)

STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "namespace-default-deny",
        "Every Kubernetes namespace has a default-deny NetworkPolicy.",
        "Declare a NetworkPolicy with an empty podSelector, policyTypes Ingress and Egress, and no rules.",
        namespaces_default_deny,
    ),
)
