"""nginx.conf for the web image: the Vite build as a single-page app.

The browser app uses BrowserRouter, so a deep link (`/projects/42`) must get index.html; only
`/assets/` (Vite's hashed, immutable files) may 404. index.html is never cached, so a release
reaches browsers on their next load; hashed assets are cached for a year. Assets are served
precompressed where the image has a `.gz` beside them (gzip_static), so nothing is compressed
per request. TLS, security headers and the CSP belong to the edge in front of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.conf.nginx_base import http_preamble, main_context


@dataclass(frozen=True)
class WebServerSettings:
    port: int = 8080
    root: str = "/usr/share/nginx/html"
    temp_dir: str = "/tmp"
    mime_types: str = "/etc/nginx/mime.types"
    workers: int = 1  # nginx_base.workers_for(the web server's CPU limit)


def render(s: WebServerSettings) -> str:
    no_cache = 'add_header Cache-Control "no-cache" always;'
    return "\n".join(
        [
            *main_context(s.temp_dir, workers=s.workers),
            *http_preamble(s.temp_dir, s.mime_types),
            "  tcp_nopush on;",
            "  keepalive_timeout 65s;",
            # The edge talks HTTP/1.1 with keepalive to this server.
            "  keepalive_requests 10000;",
            "  gzip_static on;",
            # Files without a precompressed copy (a prebuilt image may ship none) are compressed
            # here; anything already encoded is passed through as it is.
            "  gzip on;",
            "  gzip_vary on;",
            "  gzip_proxied any;",
            "  gzip_min_length 256;",
            "  gzip_types text/plain text/css application/javascript text/javascript application/json image/svg+xml;",
            "  server {",
            f"    listen {s.port};",
            "    server_name _;",
            f"    root {s.root};",
            "    absolute_redirect off;",
            "    location = /index.html {",
            f"      {no_cache}",
            "    }",
            "    location /assets/ {",
            # A missing hashed asset is a 404, never index.html served as JavaScript.
            "      try_files $uri =404;",
            '      add_header Cache-Control "public, max-age=31536000, immutable" always;',
            "    }",
            "    location / {",
            # A deep link gets the app, which routes in the browser.
            "      try_files $uri /index.html;",
            f"      {no_cache}",
            "    }",
            "  }",
            "}",
            "",
        ]
    )
