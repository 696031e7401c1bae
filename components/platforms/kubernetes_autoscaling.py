"""Autoscaling on Kubernetes: the worker on its queue's backlog (KEDA), the api on CPU (HPA).

Workers mostly wait on Redis and on AI providers, so their CPU says little about the work
waiting: KEDA's ``redis`` scaler (Redis Lists) reads the length of BullMQ's wait list and scales
the worker Deployment between the spec's ``replicas`` and ``max_replicas``. It connects the way
the app does: to the Service ``redis`` (HAProxy's in the HA set), TLS verified against the stack
CA, with the clients' current password. The names below are KEDA v2.20's (keda.sh/v1alpha1):
https://keda.sh/docs/2.20/scalers/redis-lists/ (trigger metadata ``address``, ``listName``,
``listLength``, ``enableTLS``; authentication parameters ``password`` and ``ca``),
https://keda.sh/docs/2.20/concepts/authentication/ (TriggerAuthentication ``secretTargetRef``:
``parameter``, ``name``, ``key``) and https://keda.sh/docs/2.20/reference/scaledobject-spec/;
checked against kedacore/keda v2.20.2's pkg/scalers/redis_scaler.go (its ``keda:"name=…"`` tags)
and its CRDs (tests/crds).

Whoever owns the replica count: the autoscaler. The Deployment leaves ``spec.replicas`` out
(KubernetesPlatform._workload); with pulumi-kubernetes' server-side apply a field the program
does not send is not reset while another manager (the HPA controller) holds it, and a preview
shows no drift on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.platforms.base import FLOW_KEY
from components.platforms.kubernetes import PART_OF
from components.spec import Autoscale, QueueBacklog, ServiceSpec

# The platform's own makers (KubernetesPlatform._custom, ._network_policy, ._meta).
CustomMaker = Callable[..., pulumi.Resource]
PolicyMaker = Callable[..., pulumi.Resource]
MetaMaker = Callable[..., k8s.meta.v1.ObjectMetaArgsDict]

KEDA_API = "keda.sh/v1alpha1"
# How the operator appears in the flow annotations (the audit's and the tests' reading).
KEDA_CLIENT = "keda-operator"


@dataclass(frozen=True)
class ScalerSite:
    """Where a workload's autoscalers are declared, and with what of the platform's."""

    namespace: str
    keda_namespace: str
    custom: CustomMaker
    network_policy: PolicyMaker
    meta: MetaMaker
    provider: k8s.Provider
    parent: pulumi.Resource
    # The workload they scale: each scaler waits for it.
    workload: pulumi.Resource

    @property
    def opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, provider=self.provider, depends_on=[self.workload])


def keda_client(namespace: str) -> str:
    return f"{KEDA_CLIENT} (namespace {namespace})"


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _labels(name: str) -> dict[str, str]:
    return {**_selector(name), **PART_OF}


def _queue_scaler(spec: ServiceSpec, queue: QueueBacklog, auto: Autoscale, site: ScalerSite) -> list[pulumi.Resource]:
    name = f"{spec.name}-queue"
    # The password and the CA as the TriggerAuthentication reads them: a Secret of this namespace.
    secret = k8s.core.v1.Secret(
        f"{name}-auth",
        metadata=site.meta(f"{name}-auth", _labels(spec.name)),
        string_data={"password": pulumi.Output.secret(queue.password), "ca": queue.ca_pem},
        opts=site.opts,
    )
    auth = site.custom(
        name,
        KEDA_API,
        "TriggerAuthentication",
        {
            "secretTargetRef": [
                {"parameter": "password", "name": f"{name}-auth", "key": "password"},
                {"parameter": "ca", "name": f"{name}-auth", "key": "ca"},
            ]
        },
        site.parent,
        [secret],
    )
    scaled = site.custom(
        spec.name,
        KEDA_API,
        "ScaledObject",
        {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicaCount": spec.replicas,
            "maxReplicaCount": auto.max_replicas,
            "triggers": [
                {
                    "type": "redis",
                    # KEDA verifies the certificate against `ca` for this name (one of its SANs).
                    "metadata": {
                        "address": f"{queue.server}.{site.namespace}.svc:{queue.port}",
                        "listName": queue.list_name,
                        "listLength": str(queue.target_length),
                        "enableTLS": "true",
                    },
                    "authenticationRef": {"name": name},
                }
            ],
        },
        site.parent,
        [site.workload, auth],
    )
    keda: k8s.networking.v1.NetworkPolicyPeerArgsDict = {
        "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": site.keda_namespace}}
    }
    flow = {
        "client": keda_client(site.keda_namespace),
        "server": queue.server,
        "ports": [queue.port],
        "tls": True,
        "auth": "password",
    }
    # The operator's own egress is its namespace's business; the stack admits it to Redis only.
    policy = site.network_policy(
        f"{queue.server}-from-keda",
        _selector(queue.server),
        parent=site.parent,
        ingress=[{"from_": [keda], "ports": [{"protocol": "TCP", "port": queue.port}]}],
        annotations={FLOW_KEY: json.dumps([flow])},
    )
    return [secret, auth, scaled, policy]


def _cpu_scaler(spec: ServiceSpec, auto: Autoscale, percent: int, site: ScalerSite) -> pulumi.Resource:
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        spec.name,
        metadata=site.meta(spec.name, _labels(spec.name)),
        spec={
            "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": spec.name},
            "min_replicas": spec.replicas,
            "max_replicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "average_utilization": percent}},
                }
            ],
        },
        opts=site.opts,
    )


def place_autoscaler(spec: ServiceSpec, site: ScalerSite) -> list[pulumi.Resource]:
    auto = spec.autoscale
    if auto is None:
        return []
    made: list[pulumi.Resource] = []
    if auto.queue is not None:
        made += _queue_scaler(spec, auto.queue, auto, site)
    if auto.cpu_percent is not None:
        made.append(_cpu_scaler(spec, auto, auto.cpu_percent, site))
    return made
