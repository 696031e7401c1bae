"""The base of the seven service components: build a spec, let the platform place it."""

from __future__ import annotations

import pulumi

from components.platforms.base import Placement, Platform
from components.spec import CONFIG_DIR, ServiceSpec

TLS_DIR = f"{CONFIG_DIR}/tls"
CA_PATH = f"{TLS_DIR}/ca.crt"


class Service(pulumi.ComponentResource):
    """A ComponentResource holding one service's spec and what its platform made of it."""

    spec: ServiceSpec
    placement: Placement
    tls: str = "none"
    auth: str = "none"

    def __init__(self, type_name: str, name: str, opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(f"aixsss:service:{type_name}", name, None, opts)

    def _place(self, platform: Platform, spec: ServiceSpec, depends_on: list[pulumi.Resource]) -> Placement:
        self.spec = spec
        self.placement = platform.place(spec, self, depends_on)
        self.register_outputs({"image": spec.image})
        return self.placement

    @property
    def ready(self) -> list[pulumi.Resource]:
        return self.placement.ready
