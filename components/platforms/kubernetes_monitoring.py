"""Monitoring on Kubernetes: a PodMonitor per scrape target, one PrometheusRule, and the
NetworkPolicies that admit Prometheus's namespace, and nothing else, to the metrics ports.

For a Prometheus Operator already in the cluster (e.g. kube-prometheus-stack): its CRDs
(monitoring.coreos.com/v1; tests/crds holds v0.93.0's) are a prerequisite, like cert-manager's.
The monitors and the rule carry ``monitoring.selectorLabels``, which its Prometheus selects by.
CloudNativePG's ``spec.monitoring.enablePodMonitor`` is deprecated (docs/src/monitoring.md): the
program declares the instances' PodMonitor itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi_kubernetes.networking.v1 import NetworkPolicyPeerArgsDict

from components.monitoring import SCRAPER, MonitoringSpec, ScrapeTarget
from components.platforms.base import FLOW_KEY

# The platform's own makers (KubernetesPlatform._custom, ._network_policy): namespace, provider,
# labels and the policy shape stay decided in one place.
CustomMaker = Callable[..., pulumi.Resource]
PolicyMaker = Callable[..., pulumi.Resource]

MONITORING_API = "monitoring.coreos.com/v1"
# Scrapes are plain HTTP inside the cluster: the NetworkPolicies below are what limits them.
SCRAPE_INTERVAL = "30s"


def prometheus_client(namespace: str) -> str:
    return f"{SCRAPER} (namespace {namespace})"


def _pod_monitor(
    custom: CustomMaker, target: ScrapeTarget, spec: MonitoringSpec, parent: pulumi.Resource
) -> pulumi.Resource:
    labels = {"app.kubernetes.io/name": target.service, **_part_of(), **spec.selector_labels}
    return custom(
        f"{target.service}-metrics",
        MONITORING_API,
        "PodMonitor",
        {
            "selector": {"matchLabels": dict(target.pod_labels)},
            "podMetricsEndpoints": [
                {"port": name, "path": "/metrics", "interval": SCRAPE_INTERVAL} for name, _port in target.ports
            ],
        },
        parent,
        [],
        labels=labels,
    )


def _scrape_policy(
    network_policy: PolicyMaker, target: ScrapeTarget, spec: MonitoringSpec, parent: pulumi.Resource
) -> pulumi.Resource:
    prometheus: NetworkPolicyPeerArgsDict = {
        "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": spec.prometheus_namespace}}
    }
    ports = [number for _name, number in target.ports]
    flow = {
        "client": prometheus_client(spec.prometheus_namespace),
        "server": target.service,
        "ports": ports,
        "tls": False,
        "auth": "none",
    }
    return network_policy(
        f"{target.service}-metrics-from-prometheus",
        {"app.kubernetes.io/name": target.service},
        parent=parent,
        ingress=[{"from_": [prometheus], "ports": [{"protocol": "TCP", "port": p} for p in ports]}],
        annotations={FLOW_KEY: json.dumps([flow])},
    )


def _part_of() -> dict[str, str]:
    from components.platforms.kubernetes import PART_OF

    return PART_OF


def place_monitoring(
    spec: MonitoringSpec, parent: pulumi.Resource, *, custom: CustomMaker, network_policy: PolicyMaker
) -> list[pulumi.Resource]:
    made: list[pulumi.Resource] = []
    for target in spec.targets:
        made.append(_pod_monitor(custom, target, spec, parent))
        made.append(_scrape_policy(network_policy, target, spec, parent))
    rules: Any = spec.rules  # an Input of the spec: the certificates' expiry is rendered in
    made.append(
        custom(
            "aixsss-alerts",
            MONITORING_API,
            "PrometheusRule",
            rules,
            parent,
            [],
            labels={**_part_of(), **spec.selector_labels},
        )
    )
    return made
