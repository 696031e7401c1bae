"""Kubernetes NetworkPolicies judged by what they let through, both halves of every flow.

A flow works on Kubernetes only if the server's ingress AND the client's egress allow it, so a
check of one half passes a program whose other half is missing or wrong. Here a small evaluator
of NetworkPolicy semantics (pod/namespace selectors, ipBlock, ports) answers "may A open a TCP
connection to B:port?" from the rendered policies, and the expected answers are written out
literally below, never derived from the program (its ports, its flow list, its helpers).

The pods are the ones the rendered objects would make: each Deployment, StatefulSet and Job's
pod template, and PostgreSQL's instances, which CloudNativePG creates from the `Cluster`: as
many as its `spec.instances`, each labelled with the Cluster's `spec.inheritedMetadata.labels`
plus the operator's own `cnpg.io/*` labels. The operator itself is a pod in its namespace
(`cnpg-system`), outside the stack's.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest
from harness import GATEWAY_ADDRESSES, Deployment, run_program

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKLOAD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
CNPG_CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
NAME_LABEL = "app.kubernetes.io/name"
OPERATOR_TRAFFIC = "aixsss.io/operator-traffic"

# Every connection the stack's own services need: (client, server, TCP port). Written out from
# the design (README picture), not read from the program.
APP_FLOWS = {
    ("api", "postgres", 5432),
    ("worker", "postgres", 5432),
    ("api-migrate", "postgres", 5432),
    # The run-once Job that has the new login role's sessions act as the owner (issue 12).
    ("postgres-act-as-owner", "postgres", 5432),
    ("api", "redis", 6379),
    ("worker", "redis", 6379),
    ("edge", "api", 3001),
    ("edge", "web", 8080),
}
# ... and to the bundled object store (objectStore.mode bundled).
STORE_FLOWS = {
    ("api", "minio", 9000),
    ("worker", "minio", 9000),
    ("minio-bootstrap", "minio", 9000),
}
# cache.highAvailability (prod): HAProxy (Service `redis`, the pods api and worker reach) in front
# of three Redis nodes and three Sentinels, each a StatefulSet member with its own pod.
REDIS_HA_FLOWS = {
    ("redis", "redis-node", 6379),  # HAProxy -> the primary, and its role checks of every node
    ("redis-node", "redis-node", 6379),  # replication
    ("redis-node", "redis-sentinel", 26379),  # a starting node asks the Sentinels for the primary
    ("redis-sentinel", "redis-node", 6379),  # Sentinel watches and reconfigures the nodes
    ("redis-sentinel", "redis-sentinel", 26379),  # hello messages and failover votes
}
REDIS_HA_MEMBERS = {"redis-node": 3, "redis-sentinel": 3}
# CloudNativePG's Barman Cloud sidecar archives WAL and base backups to the bundled store.
BACKUP_FLOW = ("postgres", "minio", 9000)
# The operator polls each instance's manager (8000) and connects to PostgreSQL (5432); a standby
# streams from the primary on 5432 and its manager talks to its peers' on 8000.
CNPG_PORTS = (5432, 8000)
OPERATOR_NAMESPACE = "cnpg-system"
# CloudNativePG's operator pod, as its Helm chart labels it.
OPERATOR_LABELS = {NAME_LABEL: "cloudnative-pg", "app.kubernetes.io/instance": "cnpg"}

SERVICES = (
    "postgres",
    "postgres-act-as-owner",
    "redis",
    "minio",
    "minio-bootstrap",
    "api",
    "api-migrate",
    "worker",
    "web",
    "edge",
)
# Every port any pod listens on, plus a few a wrong policy might open (9001 is the MinIO console,
# 9187 CloudNativePG's metrics exporter, 6443 an API server's port).
PROBED_PORTS = (22, 53, 80, 443, 3001, 5432, 5433, 6379, 6380, 6443, 8000, 8080, 8443, 9000, 9001, 9187, 26379)
PUBLIC_IP = "203.0.113.10"  # TEST-NET-3: stands for an AI provider, a browser or an S3 service
PRIVATE_IPS = ("10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.9")
# The edge's listeners admit every peer, in the cluster or not: the stack's public entrance.
PUBLIC_LISTENERS = {("edge", 8080), ("edge", 8443)}
INTERNET_CLIENTS = {"api", "worker"}  # the only pods that call out over HTTPS for the application
# A narrowed kubernetes.apiServerCidr: a control plane's address (as minikube's), and its neighbour.
API_SERVER = "192.168.49.2"
API_SERVER_NEIGHBOUR = "192.168.49.3"

EXTERNAL_S3 = {"objectStore.mode": "external", "objectStore.endpoint": "https://s3.eu.example.net"}
EXTERNAL_S3_KEYS = {
    "secrets.minioAppAccessKey": "AKIAEXTERNAL0001",
    "secrets.minioAppSecretKey": "s" * 40,
    "secrets.backupAccessKey": "AKIABACKUPS00001",
    "secrets.backupSecretKey": "b" * 40,
}


@dataclass(frozen=True)
class Case:
    overrides: dict[str, Any]
    instances: int  # PostgreSQL instances (Pulumi.<stack>.yaml or the override)
    store: bool = True  # the bundled object store
    backups: bool = True
    api_server_cidr: str = "0.0.0.0/0"  # Pulumi.yaml's default
    secrets: dict[str, str] | None = None
    redis_ha: bool = False  # cache.highAvailability (Pulumi.prod.yaml)
    gateway_proxies: str = ""  # kubernetes.exposure gateway: the namespace of the Gateway's proxies

    def public(self, namespace: str | None) -> set[tuple[str, int]]:
        """The edge listeners a peer in ``namespace`` (None: outside the cluster) may reach: all of
        them behind a LoadBalancer; behind a Gateway, the HTTPRoute's port from its proxies only."""
        if not self.gateway_proxies:
            return PUBLIC_LISTENERS
        return {("edge", 8080)} if namespace == self.gateway_proxies else set()

    @property
    def external_backups(self) -> bool:
        return self.backups and not self.store

    @property
    def flows(self) -> set[tuple[str, str, int]]:
        flows = set(APP_FLOWS)
        if self.store:
            flows |= STORE_FLOWS
            if self.backups:
                flows.add(BACKUP_FLOW)
        if self.redis_ha:
            flows |= REDIS_HA_FLOWS
        return flows

    @property
    def services(self) -> tuple[str, ...]:
        services = SERVICES if self.store else tuple(s for s in SERVICES if s not in ("minio", "minio-bootstrap"))
        return services + (tuple(REDIS_HA_MEMBERS) if self.redis_ha else ())


KUBERNETES_CASES = {
    "dev": Case({"target": "kubernetes"}, instances=1),
    "staging": Case({}, instances=1),
    "prod": Case({}, instances=3, redis_ha=True),
    "prod-gateway": Case(
        {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES},
        instances=3,
        redis_ha=True,
        gateway_proxies="aixsss-prod",  # no gatewayNamespace: the Gateway is in the stack's
    ),
    # Envoy Gateway runs a Gateway's proxies in its own namespace, not the Gateway's.
    "staging-gateway-proxies": Case(
        {
            "kubernetes.exposure": "gateway",
            "kubernetes.gatewayName": "public",
            "kubernetes.gatewayNamespace": "gateways",
            "kubernetes.gatewayProxyNamespace": "envoy-gateway-system",
            **GATEWAY_ADDRESSES,
        },
        instances=1,
        gateway_proxies="envoy-gateway-system",
    ),
    "staging-own-namespace": Case({"kubernetes.namespace": "team-a9"}, instances=1),
    "staging-api-server-cidr": Case({"kubernetes.apiServerCidr": f"{API_SERVER}/32"}, 1, api_server_cidr=API_SERVER),
    "staging-no-backups": Case({"backup.enabled": False}, instances=1, backups=False),
    "staging-external-store": Case(EXTERNAL_S3, instances=1, store=False, secrets=EXTERNAL_S3_KEYS),
    "staging-external-store-api-server-cidr": Case(
        {**EXTERNAL_S3, "kubernetes.apiServerCidr": f"{API_SERVER}/32"},
        instances=1,
        store=False,
        secrets=EXTERNAL_S3_KEYS,
        api_server_cidr=API_SERVER,
    ),
}


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


def operator_pod(namespace: str = OPERATOR_NAMESPACE) -> Pod:
    return Pod(namespace, tuple(sorted(OPERATOR_LABELS.items())))


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


def _cnpg_instances(cluster: dict[str, Any]) -> dict[str, Pod]:
    """The pods CloudNativePG makes of a Cluster: `<name>-<n>` for n in 1..instances, labelled
    with spec.inheritedMetadata.labels and the operator's own labels (primary: the first)."""
    name = cluster["metadata"]["name"]
    namespace = cluster["metadata"]["namespace"]
    spec = cluster["spec"]
    inherited = dict((spec.get("inheritedMetadata") or {}).get("labels") or {})
    pods = {}
    for n in range(1, int(spec["instances"]) + 1):
        role = "primary" if n == 1 else "replica"
        own = {
            "cnpg.io/cluster": name,
            "cnpg.io/instanceName": f"{name}-{n}",
            "cnpg.io/podRole": "instance",
            "cnpg.io/instanceRole": role,
            "role": role,
        }
        pods[f"{name}-{n}"] = Pod(namespace, tuple(sorted({**inherited, **own}.items())))
    return pods


class Network:
    """The stack's namespace with its policies and its pods, plus pods and addresses outside it."""

    def __init__(
        self,
        policies: dict[str, dict[str, Any]],
        namespace: str,
        pods: dict[str, tuple[str, Pod]],
        clusters: list[dict[str, Any]],
    ) -> None:
        self.policies = policies  # name -> rendered object (metadata + spec)
        self.namespace = namespace
        self.pods = pods  # pod name -> (the service it belongs to, the pod)
        self.clusters = clusters  # the rendered CloudNativePG Clusters the instances come from

    @classmethod
    def of(cls, d: Deployment, clusters: list[dict[str, Any]] | None = None) -> Network:
        policies = {p.name: p.plain for p in d.of_type(NETWORK_POLICY)}
        namespaces = {p["metadata"]["namespace"] for p in policies.values()}
        assert len(namespaces) == 1, namespaces
        namespace = namespaces.pop()
        pods: dict[str, tuple[str, Pod]] = {}
        for w in d.registrations:
            if w.type in WORKLOAD_TYPES:
                labels = w.plain["spec"]["template"]["metadata"]["labels"]
                member = Pod(namespace, tuple(sorted(labels.items())))
                replicas = int(w.plain["spec"].get("replicas", 1))
                if w.type == "kubernetes:apps/v1:StatefulSet" and replicas > 1:
                    # Each member is a pod of its own (<set>-<ordinal>): they talk to each other.
                    pods |= {f"{w.name}-{i}": (w.name, member) for i in range(replicas)}
                else:
                    pods[w.name] = (w.name, member)
        if clusters is None:
            clusters = [c.plain for c in d.of_type(CNPG_CLUSTER)]
        for cluster in clusters:
            assert cluster["metadata"]["namespace"] == namespace
            for name, instance in _cnpg_instances(cluster).items():
                pods[name] = (cluster["metadata"]["name"], instance)
        return cls(policies, namespace, pods, clusters)

    def edited(self, name: str, edit: Any) -> Network:
        policies = copy.deepcopy(self.policies)
        edit(policies[name]["spec"])
        return Network(policies, self.namespace, self.pods, self.clusters)

    def without(self, name: str) -> Network:
        policies = {k: v for k, v in self.policies.items() if k != name}
        return Network(policies, self.namespace, self.pods, self.clusters)

    def pods_of(self, service: str) -> list[Pod]:
        found = [p for s, p in self.pods.values() if s == service]
        assert found, f"no pod of {service}"
        return found

    def pod(self, service: str) -> Pod:
        """The one pod of a single-pod service (the primary, for PostgreSQL)."""
        return self.pods_of(service)[0]

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
        """(client pod, server pod, port) for every pair of distinct pods that connects."""
        return {
            (a, b, port)
            for a, (_, client) in self.pods.items()
            for b, (_, server) in self.pods.items()
            if a != b
            for port in PROBED_PORTS
            if self.connects(client, server, port)
        }


def pod_names(case: Case) -> dict[str, list[str]]:
    """Service -> the names of its pods, written out: PostgreSQL's are CloudNativePG's instances."""
    members = {"postgres": [f"postgres-{n}" for n in range(1, case.instances + 1)]}
    members |= {s: [f"{s}-{i}" for i in range(n)] for s, n in REDIS_HA_MEMBERS.items()}
    return {s: members.get(s, [s]) for s in case.services}


def expected_matrix(case: Case) -> set[tuple[str, str, int]]:
    names = pod_names(case)
    matrix = {
        (a, b, port) for client, server, port in case.flows for a in names[client] for b in names[server] if a != b
    }
    # The instances among themselves: replication and the instance managers.
    matrix |= {(a, b, port) for a in names["postgres"] for b in names["postgres"] if a != b for port in CNPG_PORTS}
    return matrix


@functools.cache
def deployed(case: str) -> Deployment:
    stack = case.split("-")[0]
    c = KUBERNETES_CASES[case]
    return run_program(stack, overrides=c.overrides, secret_config=c.secrets)


@pytest.fixture(params=list(KUBERNETES_CASES))
def case(request: pytest.FixtureRequest) -> tuple[Case, Network]:
    return KUBERNETES_CASES[request.param], Network.of(deployed(request.param))


def test_the_modelled_pods_are_the_stacks(case: tuple[Case, Network]) -> None:
    c, net = case
    # Every service's pods, PostgreSQL's as many as the Cluster's instances (written out per case).
    assert sorted(net.pods) == sorted(name for names in pod_names(c).values() for name in names)
    # Each instance carries the labels the stack's policies select a service's pods by.
    for instance in net.pods_of("postgres"):
        labels = instance.label_map
        assert labels[NAME_LABEL] == "postgres" and labels["app.kubernetes.io/part-of"] == "aixsss"
        assert instance.namespace == net.namespace


def test_server_admits_its_clients_on_the_port(case: tuple[Case, Network]) -> None:
    c, net = case
    for client, server, port in sorted(c.flows):
        for b in net.pods_of(server):
            for a in net.pods_of(client):
                assert net.ingress_allows(b, a, port), ("ingress half missing", client, server, port)
                assert not net.ingress_allows(b, a, port + 1), (client, server, port + 1)


def test_client_may_reach_its_servers_on_the_port(case: tuple[Case, Network]) -> None:
    c, net = case
    for client, server, port in sorted(c.flows):
        for a in net.pods_of(client):
            for b in net.pods_of(server):
                assert net.egress_allows(a, b, port), ("egress half missing", client, server, port)
                assert not net.egress_allows(a, b, port + 1), (client, server, port + 1)


def test_exactly_the_needed_flows_connect_inside_the_namespace(case: tuple[Case, Network]) -> None:
    c, net = case
    assert net.in_namespace_matrix() == expected_matrix(c)


def test_instances_reach_each_other_on_5432_and_8000_only(case: tuple[Case, Network]) -> None:
    # Also with one instance: a standby (or the join job that clones it) carries the same labels.
    _c, net = case
    (cluster,) = net.clusters
    two = dict(cluster)
    two["spec"] = {**cluster["spec"], "instances": 2}
    primary, standby = _cnpg_instances(two).values()
    for a, b in ((primary, standby), (standby, primary)):
        for port in PROBED_PORTS:
            assert net.connects(a, b, port) == (port in CNPG_PORTS), port


def test_the_operator_reaches_the_instances_and_nothing_else(case: tuple[Case, Network]) -> None:
    c, net = case
    operator = operator_pod()
    for name, (service, server) in net.pods.items():
        for port in PROBED_PORTS:
            expected = (service == "postgres" and port in CNPG_PORTS) or (service, port) in c.public(OPERATOR_NAMESPACE)
            assert net.connects(operator, server, port) == expected, (name, port)
    # The rule admits its namespace, whatever the pod (the Barman Cloud plugin's runs there too):
    # cnpg-system is the cluster administrator's, like kube-system.
    plugin = pod(OPERATOR_NAMESPACE, **{NAME_LABEL: "plugin-barman-cloud"})
    assert net.connects(plugin, net.pod("postgres"), 8000)
    assert not net.connects(plugin, net.pod("api"), 3001) and not net.connects(plugin, net.pod("redis"), 6379)
    # The operator's labels anywhere else open nothing: not in another namespace, not in the stack's.
    for namespace in ("intruder", "cnpg-system-2", net.namespace):
        impostor = operator_pod(namespace)
        for name, (service, server) in net.pods.items():
            for port in PROBED_PORTS:
                expected = (service, port) in c.public(namespace) and namespace != net.namespace
                assert net.connects(impostor, server, port) == expected, (namespace, name, port)


def test_behind_a_gateway_only_its_proxies_reach_the_edge() -> None:
    for name in ("prod-gateway", "staging-gateway-proxies"):
        c, net = KUBERNETES_CASES[name], Network.of(deployed(name))
        proxy = pod(c.gateway_proxies, **{NAME_LABEL: "envoy"})
        edge = net.pod("edge")
        # The HTTPRoute's port only: the HTTPS listener is not the gateway's, nor any other pod.
        assert [p for p in PROBED_PORTS if net.ingress_allows(edge, proxy, p)] == [8080], name
        assert not any(net.ingress_allows(net.pod(s), proxy, p) for s in ("api", "web") for p in PROBED_PORTS)
        for elsewhere in ("gateways", "intruder", "ingress-nginx"):
            if elsewhere != c.gateway_proxies:
                assert not net.ingress_allows(edge, pod(elsewhere, **{NAME_LABEL: "envoy"}), 8080), (name, elsewhere)
        assert not net.ingress_allows(edge, External(PUBLIC_IP), 8080) and not net.ingress_allows(
            edge, External("10.244.1.7"), 8080
        ), name


def test_every_pod_resolves_names_and_nothing_else_in_kube_system(case: tuple[Case, Network]) -> None:
    _c, net = case
    dns = pod("kube-system", **{"k8s-app": "kube-dns"})
    other = pod("kube-system", **{"k8s-app": "metrics-server"})
    # A pod labelled like kube-dns in a namespace anyone may create is not the cluster's DNS.
    impostor = pod("intruder", **{"k8s-app": "kube-dns"})
    for name, (_service, me) in net.pods.items():
        assert net.connects(me, dns, 53, "UDP") and net.connects(me, dns, 53, "TCP"), name
        assert not net.connects(me, dns, 443), name
        assert not net.connects(me, other, 53, "UDP"), name
        assert not net.connects(me, impostor, 53, "UDP"), name


def test_same_labels_in_another_namespace_get_nowhere(case: tuple[Case, Network]) -> None:
    c, net = case
    for client, server, port in c.flows:
        impostor = pod("intruder", **{NAME_LABEL: client, "app.kubernetes.io/part-of": "aixsss"})
        for b in net.pods_of(server):
            assert not net.connects(impostor, b, port), (client, server)
        # and no pod of the stack opens connections into another namespace
        elsewhere = pod("intruder", **{NAME_LABEL: server})
        for a in net.pods_of(client):
            assert not net.egress_allows(a, elsewhere, port), (client, server)
    # nor do the instances, on their own ports
    elsewhere = pod("intruder", **{NAME_LABEL: "postgres"})
    for a in net.pods_of("postgres"):
        for port in CNPG_PORTS:
            assert not net.connects(a, elsewhere, port)


def _postgres_may_reach(c: Case, ip: str, port: int) -> bool:
    """What the instances' egress opens outside the cluster, as designed: the API server's range
    (kubernetes.apiServerCidr) on 443 and 6443, and public addresses on 443 when the backups go
    to an external S3 service."""
    address = ipaddress.ip_address(ip)
    if port in (443, 6443) and address in ipaddress.ip_network(c.api_server_cidr):
        return True
    return c.external_backups and port == 443 and ip == PUBLIC_IP  # the others probed are private


def test_only_api_worker_and_postgres_reach_outside_and_only_as_designed(case: tuple[Case, Network]) -> None:
    c, net = case
    addresses = (PUBLIC_IP, *PRIVATE_IPS, API_SERVER, API_SERVER_NEIGHBOUR)
    for name, (service, me) in net.pods.items():
        for ip in addresses:
            for port in (22, 80, 443, 5432, 6443, 8443):
                if service == "postgres":
                    expected = _postgres_may_reach(c, ip, port)
                else:
                    # api and worker: HTTPS to public addresses only (an AI provider, external S3).
                    expected = service in INTERNET_CLIENTS and port == 443 and ip == PUBLIC_IP
                assert net.connects(me, External(ip), port) == expected, (name, ip, port)


def test_the_default_api_server_range_opens_443_and_6443_to_every_ipv4_address() -> None:
    # kubernetes.apiServerCidr 0.0.0.0/0 (Pulumi.yaml's default): each instance may open 443 and
    # 6443 to any IPv4 address, public, private and link-local (the cloud metadata address)
    # included; no other port; the application's pods are unaffected.
    net = Network.of(deployed("staging"))
    for instance in net.pods_of("postgres"):
        for ip in ("8.8.8.8", PUBLIC_IP, *PRIVATE_IPS, API_SERVER, "0.0.0.1", "255.255.255.254"):
            assert net.connects(instance, External(ip), 443) and net.connects(instance, External(ip), 6443), ip
            for port in (22, 80, 444, 5432, 6444, 8000, 10250):
                assert not net.connects(instance, External(ip), port), (ip, port)
    for ip in (*PRIVATE_IPS, API_SERVER):
        for port in (443, 6443):
            assert not net.connects(net.pod("api"), External(ip), port), (ip, port)


def test_narrowing_the_api_server_range_narrows_the_instances_egress() -> None:
    wide, narrow = Network.of(deployed("staging")), Network.of(deployed("staging-api-server-cidr"))
    for instance in narrow.pods_of("postgres"):
        assert narrow.connects(instance, External(API_SERVER), 443)
        assert narrow.connects(instance, External(API_SERVER), 6443)
        for ip in (API_SERVER_NEIGHBOUR, PUBLIC_IP, *PRIVATE_IPS):
            for port in (443, 6443):
                assert not narrow.connects(instance, External(ip), port), (ip, port)
    for instance in wide.pods_of("postgres"):
        assert wide.connects(instance, External(API_SERVER_NEIGHBOUR), 6443)
    # Everything else is the same: the narrowing touches the instances' API server rule alone.
    assert narrow.in_namespace_matrix() == wide.in_namespace_matrix()
    changed = {n for n in wide.policies if wide.policies[n]["spec"] != narrow.policies[n]["spec"]}
    assert changed == {"postgres-cluster-egress"}


def test_backups_to_an_external_store_open_public_https_only() -> None:
    # With a narrowed API server range the backups' own rule shows: HTTPS to public addresses.
    net = Network.of(deployed("staging-external-store-api-server-cidr"))
    for instance in net.pods_of("postgres"):
        assert net.connects(instance, External(PUBLIC_IP), 443)
        assert not net.connects(instance, External(PUBLIC_IP), 6443)
        for ip in (*PRIVATE_IPS, API_SERVER_NEIGHBOUR):
            assert not net.connects(instance, External(ip), 443), ip
    # With the bundled store, WAL goes to minio inside the namespace: no public HTTPS at all.
    bundled = Network.of(deployed("staging-api-server-cidr"))
    assert not bundled.connects(bundled.pod("postgres"), External(PUBLIC_IP), 443)
    assert bundled.connects(bundled.pod("postgres"), bundled.pod("minio"), 9000)
    # Without backups, the instances do not reach the store.
    off = Network.of(deployed("staging-no-backups"))
    assert not off.connects(off.pod("postgres"), off.pod("minio"), 9000)


def test_the_world_reaches_only_the_edge_listeners(case: tuple[Case, Network]) -> None:
    c, net = case
    world = External(PUBLIC_IP)
    for name, (service, server) in net.pods.items():
        for port in PROBED_PORTS:
            expected = (service, port) in c.public(None)
            assert net.connects(world, server, port) == expected, (name, port)


def test_default_deny_isolates_every_pod_both_ways(case: tuple[Case, Network]) -> None:
    _c, net = case
    deny = net.policies["default-deny"]["spec"]
    assert deny.get("podSelector") in ({}, None)
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")


def test_the_operators_policies_say_what_they_are_for(case: tuple[Case, Network]) -> None:
    c, net = case
    annotated = {
        name: p["metadata"]["annotations"][OPERATOR_TRAFFIC]
        for name, p in net.policies.items()
        if OPERATOR_TRAFFIC in (p["metadata"].get("annotations") or {})
    }
    assert set(annotated) == {"postgres-cluster-ingress", "postgres-cluster-egress"}
    for name, why in annotated.items():
        assert why.startswith("CloudNativePG: "), name
        for part in ("the operator polls and connects to each instance", "standbys stream from the primary"):
            assert part in why, (name, part)
        assert "each instance manager talks to the API server" in why, name
        assert ("WAL and base backups to the external bucket on 443" in why) == c.external_backups, name
    for name in annotated:
        assert net.policies[name]["spec"]["podSelector"] == {"matchLabels": {NAME_LABEL: "postgres"}}


# ------------------------------------------------------------------- negative controls
# The evaluator must notice each kind of mistake; otherwise the tests above prove nothing.


@pytest.fixture
def staging() -> Network:
    return Network.of(deployed("staging"))


def test_control_egress_port_changed_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["ports"] = [{"protocol": "TCP", "port": 5433}]

    broken = staging.edited("api-to-postgres", edit)
    assert not broken.egress_allows(broken.pod("api"), broken.pod("postgres"), 5432)
    assert broken.in_namespace_matrix() == expected_matrix(KUBERNETES_CASES["staging"]) - {("api", "postgres-1", 5432)}


def test_control_egress_half_removed_is_caught(staging: Network) -> None:
    broken = staging.without("worker-to-redis")
    assert broken.ingress_allows(broken.pod("redis"), broken.pod("worker"), 6379)
    assert not broken.connects(broken.pod("worker"), broken.pod("redis"), 6379)


def test_control_egress_peer_changed_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["to"] = [{"podSelector": {"matchLabels": {NAME_LABEL: "redis"}}}]

    broken = staging.edited("api-to-minio", edit)
    assert not broken.egress_allows(broken.pod("api"), broken.pod("minio"), 9000)


def test_control_ingress_from_selector_changed_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["ingress"][0]["from"] = [{"podSelector": {"matchLabels": {NAME_LABEL: "web"}}}]

    broken = staging.edited("postgres-from-api", edit)
    assert not broken.ingress_allows(broken.pod("postgres"), broken.pod("api"), 5432)
    assert ("api", "postgres-1", 5432) not in broken.in_namespace_matrix()


def test_control_any_namespace_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["ingress"][0]["from"][0]["namespaceSelector"] = {}

    broken = staging.edited("postgres-from-api", edit)
    impostor = pod("intruder", **{NAME_LABEL: "api"})
    assert broken.ingress_allows(broken.pod("postgres"), impostor, 5432)


def test_control_default_deny_removed_is_caught(staging: Network) -> None:
    broken = staging.without("default-deny")
    # Pods with no allow-ingress policy of their own (the worker) become open to the world.
    assert broken.connects(External(PUBLIC_IP), broken.pod("worker"), 9229)


def test_control_https_egress_to_private_ranges_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][0]["to"][0]["ipBlock"].pop("except", None)

    broken = staging.edited("api-https-egress", edit)
    assert broken.connects(broken.pod("api"), External("169.254.169.254"), 443)


def test_control_instances_without_the_inherited_labels_are_caught() -> None:
    # CloudNativePG labels its pods with inheritedMetadata only: without it, no policy of the
    # stack selects them, and no client, peer or the operator gets through default-deny.
    d = deployed("prod")
    (cluster,) = [copy.deepcopy(c.plain) for c in d.of_type(CNPG_CLUSTER)]
    del cluster["spec"]["inheritedMetadata"]
    broken = Network.of(d, [cluster])
    for instance in broken.pods_of("postgres"):
        assert not broken.connects(broken.pod("api"), instance, 5432)
        assert not broken.connects(operator_pod(), instance, 8000)
        assert not broken.connects(instance, broken.pod("minio"), 9000)
    assert not {flow for flow in broken.in_namespace_matrix() if "postgres" in flow[0] + flow[1]}


def test_control_fewer_instances_are_caught() -> None:
    # The instance count is the Cluster's: prod's three pods are three in the model.
    d = deployed("prod")
    (cluster,) = [copy.deepcopy(c.plain) for c in d.of_type(CNPG_CLUSTER)]
    cluster["spec"]["instances"] = 2
    assert Network.of(d, [cluster]).in_namespace_matrix() != expected_matrix(KUBERNETES_CASES["prod"])


def test_control_operator_ingress_removed_is_caught(staging: Network) -> None:
    broken = staging.without("postgres-cluster-ingress")
    assert not broken.connects(operator_pod(), broken.pod("postgres"), 8000)
    assert broken.connects(broken.pod("api"), broken.pod("postgres"), 5432)


def test_control_operator_from_any_namespace_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["ingress"][0]["from"][0]["namespaceSelector"] = {}

    broken = staging.edited("postgres-cluster-ingress", edit)
    assert broken.connects(operator_pod("intruder"), broken.pod("postgres"), 5432)


def test_control_api_server_rule_on_every_port_is_caught(staging: Network) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["egress"][1].pop("ports")

    broken = staging.edited("postgres-cluster-egress", edit)
    assert broken.connects(broken.pod("postgres"), External(PUBLIC_IP), 80)


def test_another_operator_namespace_moves_the_admission() -> None:
    d = run_program("staging", overrides={"kubernetes.cnpgNamespace": "postgres-operator"})
    net = Network.of(d)
    assert net.connects(operator_pod("postgres-operator"), net.pod("postgres"), 8000)
    assert not net.connects(operator_pod(OPERATOR_NAMESPACE), net.pod("postgres"), 8000)


# worker.autoscale: the KEDA operator (namespace kubernetes.kedaNamespace, "keda" by default)
# reads the queue's length from Redis on its TLS port; with the HA set, from HAProxy's pods, the
# Service `redis` the app dials. That flow, and nothing else, opens for it.
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR = {NAME_LABEL: "keda-operator"}  # as KEDA's Helm chart labels it
KEDA_CASES = {
    "staging-keda": Case({"worker.autoscale": True}, instances=1),
    "prod-keda": Case({"worker.autoscale": True}, instances=3, redis_ha=True),
}


@functools.cache
def keda_network(name: str) -> Network:
    c = KEDA_CASES[name]
    return Network.of(run_program(name.split("-")[0], overrides=c.overrides))


@pytest.mark.parametrize("name", list(KEDA_CASES))
def test_keda_reaches_redis_on_6379_and_nothing_else(name: str) -> None:
    c, net = KEDA_CASES[name], keda_network(name)
    keda = pod(KEDA_NAMESPACE, **KEDA_OPERATOR)
    reached = {
        (service, port)
        for _, (service, server) in net.pods.items()
        for port in PROBED_PORTS
        if net.connects(keda, server, port)
    }
    assert reached == {("redis", 6379)} | c.public(KEDA_NAMESPACE)
    # The stack's own flows are those of the same stack without the autoscaler.
    assert net.in_namespace_matrix() == expected_matrix(c)
    # Another namespace with the operator's labels gets nowhere but the public listeners.
    impostor = pod("keda-2", **KEDA_OPERATOR)
    for _, (service, server) in net.pods.items():
        for port in PROBED_PORTS:
            assert net.connects(impostor, server, port) == ((service, port) in c.public("keda-2"))


def test_without_the_autoscaler_keda_reaches_nothing(case: tuple[Case, Network]) -> None:
    c, net = case
    keda = pod(KEDA_NAMESPACE, **KEDA_OPERATOR)
    for _, (service, server) in net.pods.items():
        for port in PROBED_PORTS:
            assert net.connects(keda, server, port) == ((service, port) in c.public(KEDA_NAMESPACE))


def test_keda_namespace_follows_the_config() -> None:
    net = Network.of(run_program("staging", overrides={"worker.autoscale": True, "kubernetes.kedaNamespace": "ops"}))
    redis = net.pod("redis")
    assert net.connects(pod("ops", **KEDA_OPERATOR), redis, 6379)
    assert not net.connects(pod(KEDA_NAMESPACE, **KEDA_OPERATOR), redis, 6379)
