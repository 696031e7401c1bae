"""What every platform offers the service components."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pulumi

from components.spec import Flow, ServiceSpec

if TYPE_CHECKING:
    from components.monitoring import MonitoringSpec

# Where a platform records each declared flow (client, server, ports, TLS, auth) as JSON: a
# Docker container label, a Kubernetes NetworkPolicy annotation. Reviews and diagrams read it.
FLOW_KEY = "aixsss.io/flows"
# Likewise each served port: number, published, TLS, auth (on the server's container / Service).
PORTS_KEY = "aixsss.io/ports"
# On a NetworkPolicy that admits an operator's own traffic (CloudNativePG: the API server,
# replication, the operator's polling), with what it is for; reviews read it as such, not as a flow.
OPERATOR_TRAFFIC = "aixsss.io/operator-traffic"


def ports_record(spec: ServiceSpec) -> str:
    return json.dumps(
        [{"name": p.name, "port": p.port, "published": p.published, "tls": p.tls, "auth": p.auth} for p in spec.ports]
    )


def flows_of(spec: ServiceSpec, placed: dict[str, ServiceSpec]) -> list[Flow]:
    """The connections ``spec`` opens: to each server it talks to, that server's non-admin ports."""
    return [Flow(spec.name, target, tuple(p for p in placed[target].ports if not p.admin)) for target in spec.talks_to]


@dataclass
class Placement:
    """What a placed service gives to others: readiness to wait on, and facts for auditors."""

    spec: ServiceSpec
    # Resources that are ready only when the service is healthy (or the job has finished).
    ready: list[pulumi.Resource]
    networks: list[str]
    exposed: list[str]
    non_root: bool
    read_only_root: bool
    resources: list[pulumi.Resource] = field(default_factory=list[pulumi.Resource])


class Platform(Protocol):
    name: str
    # Whether PostgreSQL runs as an operator-managed cluster here (ServiceSpec.cluster): its
    # clients then use the cluster's read-write Service, `<name>-rw`.
    runs_postgres_clusters: bool
    # The DNS server a proxy asks to re-resolve service names while it runs.
    resolver: str
    # Whether a proxy learns its upstreams' instances from the platform (spec.Routes: Docker),
    # not from their names (a Kubernetes Service).
    announces_routes: bool

    @property
    def namespace_name(self) -> str | None:
        """The namespace the stack's objects live in (Kubernetes); None where there is none."""
        ...

    def resolvable_name(self, service: str) -> str:
        """The name of ``service`` that ``resolver`` answers as it is (no search domains)."""
        ...

    def dns_names(self, service: str) -> list[str]:
        """Names clients may use for ``service``; the first is the one the stack uses."""
        ...

    def place(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement: ...

    def build_image(
        self,
        name: str,
        context: str,
        dockerfile: str,
        target: str | None,
        version: str,
        args: dict[str, str] | None = None,
    ) -> pulumi.Output[str]:
        """Build ``target`` (None: the last stage) of ``dockerfile`` from ``context`` with build
        arguments ``args``; the reference services deploy."""
        ...

    def monitor(self, spec: MonitoringSpec, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """What the platform declares for ``spec``'s scrape targets and rules (Kubernetes: the
        Prometheus Operator's objects; Docker: nothing, the outputs carry them)."""
        ...
