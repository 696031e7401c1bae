"""The static Vite build, served by an unprivileged web server; the browser calls /api."""

from __future__ import annotations

import pulumi

from components.app_images import AppImage
from components.conf import web_server
from components.conf.nginx_base import workers_for
from components.config import StackConfig
from components.platforms.base import Platform
from components.service import Service
from components.spec import CONFIG_DIR, ConfigFile, Handover, Port, Probe, Security, ServiceSpec, Zone

NAME = "web"
PORT = 8080
UID = 101  # nginx-unprivileged, the base of the web image
# A page or asset still being sent when an old web server is asked to stop (nginx SIGQUIT, the
# image's STOPSIGNAL: it finishes responses in flight and accepts no new connection).
DRAIN_SECONDS = 30
CONF_PATH = f"{CONFIG_DIR}/web.conf"


class Web(Service):
    tls = "behind the edge (TLS terminated there)"
    auth = "none (public static files)"

    def __init__(
        self, config: StackConfig, platform: Platform, image: AppImage, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("Web", NAME, opts)
        self.image = image
        self.conf = web_server.render(
            web_server.WebServerSettings(port=PORT, workers=workers_for(config.web.cpu_millis))
        )
        spec = ServiceSpec(
            name=NAME,
            image=image.ref,
            resources=config.web,
            security=Security(run_as_user=UID, run_as_group=UID, tmpfs=("/tmp",)),
            # curl ships with the nginx images; wget does not.
            probe=Probe(
                command=["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{PORT}/"], http_path="/", port=PORT
            ),
            # The image's own config is replaced by the program's (SPA fallback, caching).
            command=["nginx", "-c", CONF_PATH, "-g", "daemon off;"],
            files=[ConfigFile(CONF_PATH, self.conf)],
            ports=[Port("http", PORT)],
            replicas=config.web.replicas,
            zones=frozenset({Zone.FRONTEND}),
            handover=Handover(drain_seconds=DRAIN_SECONDS),
        )
        self._place(platform, spec, [])
