"""The three TLS proxies under test, each as a config text for loopback ports.

- edge: the dev stack's rendered nginx.conf, relocated by the tests' own helpers
  (tests/servers.py: file paths, loopback ports, the resolver, Debian 12's nginx 1.22 spellings);
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

from tests.servers import LOOPBACK, deployed_copy, exporter_edits, nginx_version, relocate

EDGE_DIR = "config/aixsss-dev-edge"
RATE_ZONE = re.compile(r"limit_req_zone \$binary_remote_addr zone=api:\S+ rate=\d+r/s;")
# Far above anything one core serves, so the zone never refuses in a throughput run (nginx counts
# rates in requests per millisecond; what the burst still does within one millisecond is shown).
THROUGHPUT_RATE = "1000000r/s"
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
    """The rendered edge nginx.conf relocated into ``work``, and the rate-limit edit made (or "")."""
    paths = deployed_copy(rendered_out / EDGE_DIR, work / "files")
    text = paths["/etc/aixsss/nginx.conf"].read_text()
    edits = {
        **exporter_edits(text, status_log=status_log),
        "listen 8080;": f"listen {LOOPBACK}:{ports.http};",
        "listen 8443 ssl;": f"listen {LOOPBACK}:{ports.https} ssl;",
        "server api:3001 resolve ": f"server {LOOPBACK}:{ports.api} resolve ",
        "server web:8080 resolve ": f"server {LOOPBACK}:{ports.web} resolve ",
        "resolver 127.0.0.11 ": f"resolver {LOOPBACK} ",
        " /tmp/": f" {work}/",
    }
    version = nginx_version(binary)
    if version < (1, 25, 1):  # Debian 12's 1.22: the older spelling of `http2 on;`
        edits["    http2 on;\n"] = ""
        edits["listen 8443 ssl;"] = f"listen {LOOPBACK}:{ports.https} ssl http2;"
    if version < (1, 27, 3):  # no `resolve` on upstream servers; the upstreams are literal here
        edits["server api:3001 resolve "] = f"server {LOOPBACK}:{ports.api} "
        edits["server web:8080 resolve "] = f"server {LOOPBACK}:{ports.web} "
    rate_edit = ""
    if raise_rate:
        found = RATE_ZONE.search(text)
        assert found, "the edge's api rate-limit zone is not in the rendered nginx.conf"
        raised = re.sub(r"rate=\d+r/s", f"rate={THROUGHPUT_RATE}", found.group(0))
        edits[found.group(0)] = raised
        rate_edit = f"{found.group(0)} -> {raised}"
    return relocate(text, paths, edits), rate_edit


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
