"""nginx stream config for a TLS client tunnel: plain text on loopback, verified TLS onwards.

The application's Redis client cannot speak TLS (APP.md: api and worker pass only host, port and
password to BullMQ), while Redis listens on TLS only. So each api and worker gets this tunnel
beside it, in its network namespace (a Kubernetes native sidecar; on Docker a container whose
namespace the app joins): the app connects to 127.0.0.1 in plain text, and nginx's stream module
opens TLS to the server, checking its certificate against the stack's CA and its name. Plain
text never leaves the namespace.

Why nginx: its stream module (`proxy_ssl_verify`, `proxy_ssl_trusted_certificate`,
`proxy_ssl_name`) is in the edge's image already, which is pinned, runs unprivileged on a
read-only root, and is patched with the edge; stunnel, ghostunnel or HAProxy would be one more
image to pin and patch for the same job. `resolve` (nginx >= 1.27.3) follows a replaced server's
new address, as the edge's upstreams do.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.conf.nginx_base import main_context


@dataclass(frozen=True)
class TunnelSettings:
    listen_port: int  # on 127.0.0.1 only
    server_host: str  # resolvable name of the TLS server
    server_port: int
    server_name: str  # the name its certificate must carry (SNI and verification)
    ca_path: str
    resolver: str = "127.0.0.11"
    resolver_valid_seconds: int = 5
    temp_dir: str = "/tmp"
    # BullMQ holds blocking commands and pub/sub connections open; an idle connection is closed
    # only after this long without a byte either way (ioredis reconnects if it is).
    idle_timeout_seconds: int = 600


def render(s: TunnelSettings) -> str:
    return "\n".join(
        [
            *main_context(s.temp_dir, workers=1, connections=512),
            "stream {",
            f"  resolver {s.resolver} valid={s.resolver_valid_seconds}s ipv6=off;",
            "  resolver_timeout 5s;",
            "  upstream server {",
            "    zone tunnel_upstream 64k;",
            f"    server {s.server_host}:{s.server_port} resolve;",
            "  }",
            "  server {",
            # Loopback only: reachable from the namespace it shares with the app, from nowhere else.
            f"    listen 127.0.0.1:{s.listen_port};",
            "    proxy_pass server;",
            "    proxy_connect_timeout 5s;",
            f"    proxy_timeout {s.idle_timeout_seconds}s;",
            "    proxy_ssl on;",
            "    proxy_ssl_protocols TLSv1.2 TLSv1.3;",
            "    proxy_ssl_verify on;",
            "    proxy_ssl_verify_depth 2;",
            f"    proxy_ssl_trusted_certificate {s.ca_path};",
            f"    proxy_ssl_name {s.server_name};",
            "    proxy_ssl_server_name on;",
            "    proxy_ssl_session_reuse on;",
            "  }",
            "}",
            "",
        ]
    )
