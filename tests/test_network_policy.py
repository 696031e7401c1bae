"""Kubernetes NetworkPolicies judged by what they let through, both halves of every flow.

A flow works on Kubernetes only if the server's ingress AND the client's egress allow it, so a
check of one half passes a program whose other half is missing or wrong. Here a small evaluator
of NetworkPolicy semantics (pod/namespace selectors, ipBlock, ports) answers "may A open a TCP
connection to B:port?" from the rendered policies, and the expected answers are written out
literally below, never derived from the program (its ports, its flow list, its helpers).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest
from harness import Deployment, run_program

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKLOAD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
NAME_LABEL = "app.kubernetes.io/name"

# Every connection the stack needs, by pod name: (client, server, TCP port). Written out from
# the design (README picture), not read from the program.
FLOWS = {
    ("api", "postgres", 5432),
    ("worker", "postgres", 5432),
    ("api-migrate", "postgres", 5432),
    ("api", "redis", 6379),
    ("worker", "redis", 6379),
    ("api", "minio", 9000),
    ("worker", "minio", 9000),
    ("minio-bootstrap", "minio", 9000),
    ("edge", "api", 3001),
    ("edge", "web", 8080),
}
PODS = ("postgres", "redis", "minio", "minio-bootstrap", "api", "api-migrate", "worker", "web", "edge")
# Every port any pod listens on, plus a few a wrong policy might open (9001 is the MinIO console).
PROBED_PORTS = (22, 53, 80, 443, 3001, 5432, 5433, 6379, 6380, 8080, 8443, 9000, 9001)
PUBLIC_IP = "203.0.113.10"  # TEST-NET-3: stands for an AI provider or a browser
PRIVATE_IPS = ("10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.9")
INTERNET_CLIENTS = {"api", "worker"}  # the only pods that call out over HTTPS


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: tuple[tuple[str, str], ...]

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class External:
    ip: str


Peer = Pod | External


def pod(namespace: str, **labels: str) -> Pod:
    return Pod(namespace, tuple(sorted(labels.items())))


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector; an empty one selects everything."""
    selector = selector or {}
    assert not selector.get("matchExpressions"), "matchExpressions: extend the evaluator before using them"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        # ipBlock is for cluster-external addresses; pod IPs are not something to rely on.
        if not isinstance(peer, External):
            return False
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        excluded = any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
        return inside and not excluded
    if not isinstance(peer, Pod):
        return False
    if "namespaceSelector" in rule_peer:
        namespace_ok = _selects(rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace})
    else:
        namespace_ok = peer.namespace == policy_namespace
    return namespace_ok and _selects(rule_peer.get("podSelector"), peer.label_map)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        assert not isinstance(entry.get("port"), str), "named ports: extend the evaluator before using them"
        if "port" not in entry:
            return True
        low = int(entry["port"])
        high = int(entry.get("endPort", low))
        if low <= port <= high:
            return True
    return False


def _types(spec: dict[str, Any]) -> list[str]:
    # Kubernetes' default when policyTypes is unset.
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


class Cluster:
    """The stack's namespace with its policies, plus a few pods and addresses outside it."""

    def __init__(self, policies: dict[str, dict[str, Any]], namespace: str) -> None:
        self.policies = policies  # name -> rendered object (metadata + spec)
        self.namespace = namespace

    @classmethod
    def of(cls, d: Deployment) -> Cluster:
        policies = {p.name: p.plain for p in d.of_type(NETWORK_POLICY)}
        namespaces = {p["metadata"]["namespace"] for p in policies.values()}
        assert len(namespaces) == 1, namespaces
        return cls(policies, namespaces.pop())

    def pod(self, name: str) -> Pod:
        return pod(self.namespace, **{NAME_LABEL: name, "app.kubernetes.io/part-of": "aixsss"})

    def _allowed(self, direction: str, subject: Pod, peer: Peer, port: int, protocol: str) -> bool:
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        selecting = [
            p["spec"]
            for p in self.policies.values()
            if p["metadata"]["namespace"] == subject.namespace
            and direction in _types(p["spec"])
            and _selects(p["spec"].get("podSelector"), subject.label_map)
        ]
        if not selecting:
            return True  # a pod no policy selects for this direction is not isolated
        for spec in selecting:
            for rule in spec.get(rules_key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(_peer_matches(rp, peer, subject.namespace) for rp in peers)
                if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                    return True
        return False

    def ingress_allows(self, server: Pod, client: Peer, port: int, protocol: str = "TCP") -> bool:
        return self._allowed("Ingress", server, client, port, protocol)

    def egress_allows(self, client: Pod, server: Peer, port: int, protocol: str = "TCP") -> bool:
        return self._allowed("Egress", client, server, port, protocol)

    def connects(self, client: Peer, server: Peer, port: int, protocol: str = "TCP") -> bool:
        out = not isinstance(client, Pod) or self.egress_allows(client, server, port, protocol)
        into = not isinstance(server, Pod) or server.namespace != self.namespace
        into = into or self.ingress_allows(server, client, port, protocol)
        return out and into

    def in_namespace_matrix(self) -> set[tuple[str, str, int]]:
        return {
            (a, b, port)
            for a in PODS
            for b in PODS
            if a != b
            for port in PROBED_PORTS
            if self.connects(self.pod(a), self.pod(b), port)
        }


KUBERNETES_CASES = {
    "dev": {"target": "kubernetes"},
    "staging": {},
    "prod": {},
    "prod-gateway": {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public"},
    "staging-own-namespace": {"kubernetes.namespace": "team-a9"},
}


@functools.cache
def deployed(case: str) -> Deployment:
    stack = case.split("-")[0]
    return run_program(stack, overrides=KUBERNETES_CASES[case])


@pytest.fixture(params=list(KUBERNETES_CASES))
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return Cluster.of(deployed(request.param))


@pytest.mark.parametrize("flow", sorted(FLOWS), ids=[f"{c}-{s}-{p}" for c, s, p in sorted(FLOWS)])
def test_server_admits_its_client_on_the_port(cluster: Cluster, flow: tuple[str, str, int]) -> None:
    client, server, port = flow
    assert cluster.ingress_allows(cluster.pod(server), cluster.pod(client), port), "ingress half missing"
    assert not cluster.ingress_allows(cluster.pod(server), cluster.pod(client), port + 1)


@pytest.mark.parametrize("flow", sorted(FLOWS), ids=[f"{c}-{s}-{p}" for c, s, p in sorted(FLOWS)])
def test_client_may_reach_its_server_on_the_port(cluster: Cluster, flow: tuple[str, str, int]) -> None:
    client, server, port = flow
    assert cluster.egress_allows(cluster.pod(client), cluster.pod(server), port), "egress half missing"
    assert not cluster.egress_allows(cluster.pod(client), cluster.pod(server), port + 1)


def test_exactly_the_needed_flows_connect_inside_the_namespace(cluster: Cluster) -> None:
    assert cluster.in_namespace_matrix() == FLOWS


def test_every_pod_resolves_names_and_nothing_else_in_kube_system(cluster: Cluster) -> None:
    dns = pod("kube-system", **{"k8s-app": "kube-dns"})
    other = pod("kube-system", **{"k8s-app": "metrics-server"})
    # A pod labelled like kube-dns in a namespace anyone may create is not the cluster's DNS.
    impostor = pod("intruder", **{"k8s-app": "kube-dns"})
    for name in PODS:
        me = cluster.pod(name)
        assert cluster.connects(me, dns, 53, "UDP") and cluster.connects(me, dns, 53, "TCP"), name
        assert not cluster.connects(me, dns, 443), name
        assert not cluster.connects(me, other, 53, "UDP"), name
        assert not cluster.connects(me, impostor, 53, "UDP"), name


def test_same_labels_in_another_namespace_get_nowhere(cluster: Cluster) -> None:
    for client, server, port in FLOWS:
        impostor = pod("intruder", **{NAME_LABEL: client, "app.kubernetes.io/part-of": "aixsss"})
        assert not cluster.connects(impostor, cluster.pod(server), port), (client, server)
        # and no pod of the stack opens connections into another namespace
        elsewhere = pod("intruder", **{NAME_LABEL: server})
        assert not cluster.egress_allows(cluster.pod(client), elsewhere, port), (client, server)


def test_only_api_and_worker_reach_the_internet_and_only_over_https(cluster: Cluster) -> None:
    public = External(PUBLIC_IP)
    for name in PODS:
        me = cluster.pod(name)
        assert cluster.connects(me, public, 443) == (name in INTERNET_CLIENTS), name
        for port in (80, 22, 5432, 8443):
            assert not cluster.connects(me, public, port), (name, port)
        for private in PRIVATE_IPS:
            assert not cluster.connects(me, External(private), 443), (name, private)


def test_the_world_reaches_only_the_edge_listeners(cluster: Cluster) -> None:
    world = External(PUBLIC_IP)
    for name in PODS:
        for port in PROBED_PORTS:
            expected = name == "edge" and port in (8080, 8443)
            assert cluster.connects(world, cluster.pod(name), port) == expected, (name, port)


def test_default_deny_isolates_every_pod_both_ways(cluster: Cluster) -> None:
    deny = cluster.policies["default-deny"]["spec"]
    assert deny.get("podSelector") in ({}, None)
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")


# ------------------------------------------------------------------- negative controls
# The evaluator must notice each kind of mistake; otherwise the tests above prove nothing.


def _edited(cluster: Cluster, name: str, edit: Any) -> Cluster:
    policies = copy.deepcopy(cluster.policies)
    edit(policies[name]["spec"])
    return Cluster(policies, cluster.namespace)


@pytest.fixture
def staging() -> Cluster:
    return Cluster.of(deployed("staging"))


def test_control_egress_port_changed_is_caught(staging: Cluster) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["ports"] = [{"protocol": "TCP", "port": 5433}]

    broken = _edited(staging, "api-to-postgres", edit)
    assert not broken.egress_allows(broken.pod("api"), broken.pod("postgres"), 5432)
    assert broken.in_namespace_matrix() == FLOWS - {("api", "postgres", 5432)}


def test_control_egress_half_removed_is_caught(staging: Cluster) -> None:
    policies = {k: v for k, v in staging.policies.items() if k != "worker-to-redis"}
    broken = Cluster(policies, staging.namespace)
    assert broken.ingress_allows(broken.pod("redis"), broken.pod("worker"), 6379)
    assert not broken.connects(broken.pod("worker"), broken.pod("redis"), 6379)


def test_control_egress_peer_changed_is_caught(staging: Cluster) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["to"] = [{"podSelector": {"matchLabels": {NAME_LABEL: "redis"}}}]

    broken = _edited(staging, "api-to-minio", edit)
    assert not broken.egress_allows(broken.pod("api"), broken.pod("minio"), 9000)


def test_control_ingress_from_selector_changed_is_caught(staging: Cluster) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["ingress"][0]["from"] = [{"podSelector": {"matchLabels": {NAME_LABEL: "web"}}}]

    broken = _edited(staging, "postgres-from-api", edit)
    assert not broken.ingress_allows(broken.pod("postgres"), broken.pod("api"), 5432)
    assert ("api", "postgres", 5432) not in broken.in_namespace_matrix()


def test_control_any_namespace_is_caught(staging: Cluster) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["ingress"][0]["from"][0]["namespaceSelector"] = {}

    broken = _edited(staging, "postgres-from-api", edit)
    impostor = pod("intruder", **{NAME_LABEL: "api"})
    assert broken.ingress_allows(broken.pod("postgres"), impostor, 5432)


def test_control_default_deny_removed_is_caught(staging: Cluster) -> None:
    policies = {k: v for k, v in staging.policies.items() if k != "default-deny"}
    broken = Cluster(policies, staging.namespace)
    # Pods with no allow-ingress policy of their own (the worker) become open to the world.
    assert broken.connects(External(PUBLIC_IP), broken.pod("worker"), 9229)


def test_control_https_egress_to_private_ranges_is_caught(staging: Cluster) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["to"][0]["ipBlock"].pop("except", None)

    broken = _edited(staging, "api-https-egress", edit)
    assert broken.connects(broken.pod("api"), External("169.254.169.254"), 443)
