"""The three TLS proxies under test, each as a config text for loopback ports.

- edge: the dev stack's rendered nginx.conf, relocated by the tests' own helpers
  (tests/servers.py: file paths, loopback ports, the resolver, the asset cache's directory,
  Debian 12's nginx 1.22 spellings);
  for throughput runs one more edit, the api zone's rate, so the limit is not what is measured;
- stock: nginx as tutorials write it: Debian's default nginx.conf http settings (gzip on,
  gzip_types left at its default) and a server block with proxy_pass, no upstream keepalive;
- haproxy: Debian's HAProxy terminating TLS with keepalive to the backends (its default
  http-reuse safe), logging each request like the other two, tuned as its documentation says
  (threads left to match the CPUs it may use, Mozilla's intermediate TLS settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.servers import LOOPBACK, EdgePorts
from tests.servers import edge_conf as edge_conf_on_loopback

EDGE_DIR = "config/aixsss-dev-edge"
RATE_ZONE = re.compile(r"limit_req_zone \$binary_remote_addr zone=api:\S+ rate=\d+r/s;")
RATE_LIMIT = re.compile(r"limit_req zone=api burst=\d+")
# Far above anything one core serves, so the zone never refuses in a throughput run. nginx counts
# in milliseconds: within one, more than `burst` requests from one address are refused whatever
# the rate, and HTTP/2's 128 streams in flight do arrive within one event loop's millisecond. So
# the burst is raised too (the rate limit as configured is measured in the rate runs).
THROUGHPUT_RATE = "1000000r/s"
THROUGHPUT_BURST = 1000000
# Mozilla's intermediate TLS 1.2 ciphers, what HAProxy's documentation points to.
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    f"ECDHE-{key}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for key in ("ECDSA", "RSA")
)


@dataclass(frozen=True)
class Ports:
    https: int
    http: int
    api: int
    web: int


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def edge_tls(rendered_out: Path) -> Tls:
    tls = rendered_out / EDGE_DIR / "etc/aixsss/tls"
    return Tls(tls / "tls.crt", tls / "tls.key")


def edge_conf(rendered_out: Path, binary: str, work: Path, ports: Ports, *, raise_rate: bool,
              status_log: str | None = None) -> tuple[str, str]:  # fmt: skip
    """The rendered edge nginx.conf relocated into ``work`` as the tests relocate it (its asset
    cache too: the edge is measured as rendered), and the rate-limit edit made (or "")."""
    rate_edit: dict[str, str] = {}
    if raise_rate:
        rendered = (rendered_out / EDGE_DIR / "etc/aixsss/nginx.conf").read_text()
        found, limit = RATE_ZONE.search(rendered), RATE_LIMIT.search(rendered)
        assert found and limit, "the edge's api limit_req_zone or limit_req is not in the rendered nginx.conf"
        rate_edit[found.group(0)] = re.sub(r"rate=\d+r/s", f"rate={THROUGHPUT_RATE}", found.group(0))
        rate_edit[limit.group(0)] = f"limit_req zone=api burst={THROUGHPUT_BURST}"
    edge_ports = EdgePorts(http=ports.http, https=ports.https, api=ports.api, web=ports.web)
    conf = edge_conf_on_loopback(
        rendered_out / EDGE_DIR, binary, work, edge_ports, status_log=status_log, extra=rate_edit
    )
    return conf, "; ".join(f"{old} -> {new}" for old, new in rate_edit.items())


def stock_conf(work: Path, tls: Tls, ports: Ports) -> str:
    """A TLS reverse proxy as tutorials write it, on Debian's default http settings."""
    headers = """      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;"""
    return f"""worker_processes auto;
pid {work}/nginx.pid;
error_log stderr;
events {{ worker_connections 768; }}
http {{
  sendfile on;
  tcp_nopush on;
  types_hash_max_size 2048;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_prefer_server_ciphers on;
  access_log {work}/access.log;
  gzip on;
  client_body_temp_path {work}/client_temp;
  proxy_temp_path {work}/proxy_temp;
  fastcgi_temp_path {work}/fastcgi_temp;
  uwsgi_temp_path {work}/uwsgi_temp;
  scgi_temp_path {work}/scgi_temp;
  server {{
    listen {LOOPBACK}:{ports.https} ssl http2;
    server_name aixsss.localhost;
    ssl_certificate {tls.cert};
    ssl_certificate_key {tls.key};
    location /api/ {{
      proxy_pass http://{LOOPBACK}:{ports.api};
{headers}
    }}
    location / {{
      proxy_pass http://{LOOPBACK}:{ports.web};
{headers}
    }}
  }}
}}
"""


def haproxy_conf(pem: Path, ports: Ports) -> str:
    """HAProxy 2.6 terminating TLS (cert and key in one PEM, as it wants them) with keepalive
    to both backends."""
    return f"""global
  log stdout format raw local0
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
  ssl-default-bind-ciphers {MOZILLA_INTERMEDIATE_CIPHERS}
  ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets

defaults
  mode http
  log global
  option httplog
  option forwardfor
  http-reuse safe
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 65s

frontend tls
  bind {LOOPBACK}:{ports.https} ssl crt {pem} alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  use_backend api if {{ path_beg /api/ }}
  default_backend web

backend api
  server api {LOOPBACK}:{ports.api}

backend web
  server web {LOOPBACK}:{ports.web}
"""
