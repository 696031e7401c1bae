"""The static Vite build, served by an unprivileged web server; the browser calls /api."""

from __future__ import annotations

import pulumi

from components.config import StackConfig
from components.platforms.base import Platform
from components.service import Service
from components.spec import Port, Probe, Security, ServiceSpec, Zone

NAME = "web"
PORT = 8080
UID = 101  # nginx-unprivileged, the base of the web image


class Web(Service):
    tls = "behind the edge (TLS terminated there)"
    auth = "none (public static files)"

    def __init__(self, config: StackConfig, platform: Platform, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("Web", NAME, opts)
        spec = ServiceSpec(
            name=NAME,
            image=config.images.web,
            resources=config.web,
            security=Security(run_as_user=UID, run_as_group=UID, tmpfs=("/tmp",)),
            probe=Probe(command=["wget", "-q", "--spider", f"http://127.0.0.1:{PORT}/"], http_path="/", port=PORT),
            env={"VITE_API_BASE_PATH": "/api"},
            ports=[Port("http", PORT)],
            replicas=config.web.replicas,
            zones=frozenset({Zone.FRONTEND}),
        )
        self._place(platform, spec, [])
