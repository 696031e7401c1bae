"""What every platform offers the service components."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pulumi

from components.spec import ServiceSpec


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
    resources: list[pulumi.Resource] = field(default_factory=list)


class Platform(Protocol):
    name: str

    def dns_names(self, service: str) -> list[str]:
        """Names clients may use for ``service``; the first is the one the stack uses."""
        ...

    def place(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement: ...
