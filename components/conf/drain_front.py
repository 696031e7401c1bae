"""nginx config for a draining front: the proxy that takes a service's port on Docker when the
service cannot finish its requests by itself once asked to stop (spec.Handover, drains_itself
False: the api exits at once on SIGTERM).

It runs in the service's network namespace and forwards to the app on loopback. Being created
after the service and depending on it, it is the first of the old set that `pulumi up` deletes;
nginx stops on SIGQUIT (the image's STOPSIGNAL) by closing its listener and idle connections and
finishing every request in flight, so the app, stopped next, has none left. New connections to
the old address are refused meanwhile, and the edge tries the next instance (nginx.py
UPSTREAM_CONNECT_TIMEOUT_SECONDS): nothing was sent, so that is safe for any method.

It only relays: the edge already terminated TLS, limited rates and sizes, and logged the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.conf.nginx_base import http_preamble, main_context


@dataclass(frozen=True)
class FrontSettings:
    listen_port: int  # the service's port, on the namespace's addresses
    app_port: int  # where the app listens, on 127.0.0.1
    # As long as the edge lets a request run (nginx.API_READ_TIMEOUT_SECONDS for the api).
    read_timeout_seconds: int
    workers: int = 1
    temp_dir: str = "/tmp"
    mime_types: str = "/etc/nginx/mime.types"


def render(s: FrontSettings) -> str:
    return "\n".join(
        [
            *main_context(s.temp_dir, workers=s.workers),
            *http_preamble(s.temp_dir, s.mime_types),
            # The edge writes the access log; a second line per request would only cost.
            "  access_log off;",
            # The edge enforces the body size; here any body is relayed as it arrives.
            "  client_max_body_size 0;",
            "  keepalive_timeout 65s;",
            "  upstream app {",
            f"    server 127.0.0.1:{s.app_port};",
            "    keepalive 16;",
            "  }",
            "  server {",
            f"    listen {s.listen_port};",
            "    location / {",
            "      proxy_pass http://app;",
            "      proxy_http_version 1.1;",
            '      proxy_set_header Connection "";',
            # The edge's headers pass unchanged (Host, X-Forwarded-*, X-Real-IP).
            "      proxy_set_header Host $http_host;",
            "      proxy_pass_header Server;",
            "      proxy_request_buffering off;",
            "      proxy_buffering off;",
            f"      proxy_read_timeout {s.read_timeout_seconds}s;",
            "    }",
            "  }",
            "}",
            "",
        ]
    )
