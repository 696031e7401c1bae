"""The services and the flows between them, read back from the resources a stack declares.

Flows come from what the platforms recorded on the resources that enforce them (NetworkPolicy
annotations, container labels), exposure from published ports, LoadBalancers and routes: the
picture shows what would be deployed, not a hand-written list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from components.monitoring import SCRAPER
from components.platforms.base import FLOW_KEY, OPERATOR_TRAFFIC, PORTS_KEY
from offline.engine import Deployment, reveal

WORLD = "internet"
HOST = "host loopback"
EGRESS = "internet (HTTPS)"


@dataclass(frozen=True)
class Edge:
    client: str
    server: str
    ports: tuple[int, ...]
    tls: bool
    auth: str

    @property
    def label(self) -> str:
        return f"{','.join(map(str, self.ports))} {'TLS' if self.tls else 'plain'} {self.auth}"


@dataclass
class Node:
    name: str
    kind: str  # Deployment, StatefulSet, Job, container, or external
    replicas: int = 1


@dataclass
class Topology:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def add_edge(self, edge: Edge) -> None:
        if edge not in self.edges:
            self.edges.append(edge)

    def external(self, name: str) -> None:
        self.nodes.setdefault(name, Node(name, "external"))


def _recorded_flows(record: str | None) -> list[Edge]:
    return [
        Edge(f["client"], f["server"], tuple(f["ports"]), bool(f["tls"]), str(f["auth"]))
        for f in json.loads(record or "[]")
    ]


def from_kubernetes(deployment: Deployment) -> Topology:
    # Each target's module here, not at the top: reading one target loads no other's SDK.
    from components.platforms.kubernetes_autoscaling import KEDA_CLIENT

    topo = Topology()
    for reg in deployment.registrations:
        obj: dict[str, Any] = reveal(reg.inputs)
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if kind in ("Deployment", "StatefulSet", "Job"):
            name = meta["labels"]["app.kubernetes.io/name"]
            topo.nodes[name] = Node(name, str(kind), int((obj.get("spec") or {}).get("replicas") or 1))
        elif kind == "Cluster":  # CloudNativePG: its instances carry the service's labels
            name = meta["labels"]["app.kubernetes.io/name"]
            topo.nodes[name] = Node(name, "Cluster", int((obj.get("spec") or {}).get("instances") or 1))
        elif kind == "NetworkPolicy":
            for edge in _recorded_flows((meta.get("annotations") or {}).get(FLOW_KEY)):
                if edge.client.startswith(f"{SCRAPER} ("):
                    continue  # Prometheus's scrapes of metrics ports: monitoring, not an app flow
                if edge.client.startswith(f"{KEDA_CLIENT} ("):
                    topo.external(edge.client)  # worker.autoscale: KEDA reads the queue from outside
                topo.add_edge(edge)
            if OPERATOR_TRAFFIC in (meta.get("annotations") or {}):
                continue  # an operator's own traffic (API server, replication), not an app flow
            spec = obj["spec"]
            selected = (spec.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for rule in spec.get("egress") or []:
                if any("ipBlock" in peer for peer in rule.get("to") or []) and selected:
                    topo.external(EGRESS)
                    ports = tuple(int(p["port"]) for p in rule.get("ports") or [])
                    topo.add_edge(Edge(selected, EGRESS, ports, True, "provider"))
        elif kind == "Service":
            served = {p["port"]: p for p in json.loads((meta.get("annotations") or {}).get(PORTS_KEY) or "[]")}
            if (obj.get("spec") or {}).get("type") == "LoadBalancer":
                topo.external(WORLD)
                for port in obj["spec"]["ports"]:
                    fact = next(f for f in served.values() if f["name"] == port["targetPort"])
                    topo.add_edge(Edge(WORLD, meta["name"], (int(port["port"]),), fact["tls"], fact["auth"]))
        elif kind == "HTTPRoute":
            topo.external(WORLD)
            for rule in obj["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    # The Gateway terminates TLS; it reaches the edge's HTTP listener.
                    topo.add_edge(Edge(f"{WORLD} (Gateway)", ref["name"], (int(ref["port"]),), False, "none"))
    if any(e.client == f"{WORLD} (Gateway)" for e in topo.edges):
        topo.nodes.pop(WORLD, None)
        topo.external(f"{WORLD} (Gateway)")
    return topo


def from_docker(deployment: Deployment) -> Topology:
    from components.platforms.docker import ROLE_KEY  # as in from_kubernetes

    topo = Topology()
    egress_networks = {
        reveal(r.inputs["name"])
        for r in deployment.of_type("docker:index/network:Network")
        if r.name.startswith("egress")
    }
    for reg in deployment.of_type("docker:index/container:Container"):
        plain = reveal(reg.inputs)
        labels = {item["label"]: item["value"] for item in plain.get("labels") or []}
        service = labels.get("aixsss.service", reg.name)
        if plain.get("networkMode") == "none" and ROLE_KEY in labels:
            continue  # a volume's owner or a config carrier: a helper with no flows
        # (A service's own container on no network, PostgreSQL's credentials jobs, is drawn.)
        node = topo.nodes.setdefault(service, Node(service, "Job" if plain.get("attach") else "container", 0))
        if ROLE_KEY not in labels:
            node.replicas += 1  # the service's own containers; not its sidecars, companions, exporters
        for edge in _recorded_flows(labels.get(FLOW_KEY)):
            if edge.client.startswith(f"{SCRAPER} ("):
                continue  # Prometheus's scrapes of the exporters: monitoring, not an app flow
            topo.add_edge(edge)
        served = {p["port"]: p for p in json.loads(labels.get(PORTS_KEY) or "[]")}
        for port in plain.get("ports") or []:
            source = HOST if port.get("ip") == "127.0.0.1" else WORLD
            topo.external(source)
            fact = served[int(port["internal"])]
            topo.add_edge(Edge(source, service, (int(port["external"]),), fact["tls"], fact["auth"]))
        if any(n["name"] in egress_networks for n in plain.get("networksAdvanced") or []):
            topo.external(EGRESS)
            topo.add_edge(Edge(service, EGRESS, (443,), True, "provider"))
    return topo


def of(deployment: Deployment) -> Topology:
    """The topology, in a stable order (resources register concurrently, in any order)."""
    kubernetes = any(r.type.startswith("kubernetes:") for r in deployment.registrations)
    topo = from_kubernetes(deployment) if kubernetes else from_docker(deployment)
    topo.nodes = dict(sorted(topo.nodes.items()))
    topo.edges.sort(key=lambda e: (e.client, e.server, e.ports))
    return topo
