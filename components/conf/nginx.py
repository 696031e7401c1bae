"""nginx.conf for the edge: TLS termination, routing, headers, limits and caching."""

from __future__ import annotations

from dataclasses import dataclass

from components.conf import exporters as exporter_conf
from components.conf.nginx_base import http_preamble, main_context

# Vite names built assets `assets/<name>-<hash>.<ext>`; only those may be cached for a year.
HASHED_ASSET = r"^/assets/.+-[A-Za-z0-9_-]{8,}\.(?:js|mjs|css|woff2?|ttf|svg|png|jpe?g|gif|webp|avif|ico)$"
# What the web app loads (APP.md; headless Chromium checks it in tests/appcode): its index.html
# links stylesheets from Google Fonts and jsDelivr (LXGW WenKai), whose fonts come from
# fonts.gstatic.com and jsDelivr; generated images are data: URIs or provider URLs, and generated
# videos play from provider URLs, so img-src and media-src allow https: (the providers are the
# user's choice) but no plain http:. In the default api data mode every call is same-origin
# (/api); a build with VITE_DATA_MODE=local calls AI providers from the browser, which
# connect-src 'self' refuses. Inline style attributes (React) and index.html's <style> need
# 'unsafe-inline' for styles only. One thing is refused on purpose: 'unsafe-eval'. The settings
# dialog's structured-output check compiles a JSON Schema with ajv (new Function), so that check
# reports "Schema compile failed"; allowing eval app-wide for one diagnostic would weaken every
# page against injected code (README: the CSP and the app).
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline' https://fonts.googleapis.com https://cdn.jsdelivr.net",
    "font-src": "'self' data: https://fonts.gstatic.com https://cdn.jsdelivr.net",
    "img-src": "'self' data: blob: https:",
    "media-src": "'self' blob: https:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}
KEEPALIVE_REQUESTS = 10000
# The longest an api request may take through the edge (nginx's default, made explicit): an old
# api instance being replaced finishes its requests within this (api.py: its Handover).
API_READ_TIMEOUT_SECONDS = 60
# How long the edge reuses one kept-alive connection to an api or web instance. A connection
# outlives its instance's removal from DNS or a Service's endpoints (kube-proxy picks the pod
# per connection), so an instance being replaced still gets requests on it until then: the
# platforms keep an old instance serving at least this long (spec.Handover).
UPSTREAM_KEEPALIVE_TIME_SECONDS = 10
# A refused or unanswered connection goes to the next instance (nginx retries that for any
# method, nothing having been sent): an instance that crashed, or behind a Kubernetes Service a
# pod that left its endpoints a moment before the edge noticed. Each instance is tried at most
# once per request (nginx's default number of tries: all of them), within a bound. A failure
# after the request was sent is retried for idempotent methods only (never `non_idempotent`: a
# POST must not run twice).
UPSTREAM_RETRY_BOUND_SECONDS = 10
# How long the edge keeps the addresses it looked up for api and web (`resolver ... valid=`).
RESOLVER_VALID_SECONDS = 5
# Each connect, by platform (EdgeSettings.connect_timeout_seconds). On one Docker host the edge
# lists every instance's address; a live one answers a connect at once, a gone one (a container
# that crashed and came back elsewhere, for up to resolver_valid_seconds) never: 1 s, then the
# next. Behind a Kubernetes Service it has one address, the ClusterIP, and no next one; there a
# dropped SYN (a full accept queue) is sent again after Linux's initial 1 s timeout: 3 s lets
# that retransmission count.
UPSTREAM_CONNECT_TIMEOUT_SECONDS = {"docker": 1, "kubernetes": 3}
# One upstream instance (an api or web container, or the Service in front of them): its name is
# looked up again every resolver_valid_seconds (`resolve`, nginx >= 1.27.3, which needs the
# upstream's `zone`), and one failure (nginx's default max_fails) takes it out for 10 s, so a
# crashed instance costs one request's connect, not every request's.
UPSTREAM_SERVER = "server {address} resolve max_fails=1 fail_timeout=10s;"
# Where the platform's routes (spec.Routes) have not arrived yet (a first deploy on Docker), an
# upstream still needs a server to be valid: this one is never chosen (`down`), so nginx answers
# 502 until they arrive, as it does while the instances start.
NO_INSTANCE_YET = "server 127.0.0.1:9 down;"
SECURITY_HEADERS = (
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Content-Security-Policy", "; ".join(f"{k} {v}".strip() for k, v in CONTENT_SECURITY_POLICY.items())),
)

# JSON, never a document: OWASP's REST Security Cheat Sheet's set. A CSP that allows nothing and
# no framing; the page-only headers (Referrer-Policy, Permissions-Policy, the app's CSP) mean
# nothing on an API response, and dropping them took 0.5 KB off each (make bench).
API_SECURITY_HEADER_NAMES = {"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"}
API_HEADERS = (
    *(h for h in SECURITY_HEADERS if h[0] in API_SECURITY_HEADER_NAMES),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)


@dataclass(frozen=True)
class EdgeSettings:
    server_name: str
    api_upstream: str  # host:port
    web_upstream: str
    certificate_path: str
    key_path: str
    http_port: int = 8080
    https_port: int = 8443
    client_max_body_size_mb: int = 10
    # limit_req on /api (edge.apiRatePerSecond, .apiRateBurst, .apiRateDelay; the config model
    # says why these values).
    api_rate_per_second: int = 10
    api_rate_burst: int = 120
    api_rate_delay: int = 20
    # Where HTTP-01 tokens are served from; None: no such location (no ACME client fills one).
    acme_webroot: str | None = "/var/www/acme"
    # Behind a TLS-terminating Gateway the HTTP listener serves the app when the gateway says
    # the client used HTTPS; otherwise that listener only redirects.
    trust_forwarded_proto: bool = False
    # The gateway's addresses (CIDRs): only a peer in them is believed about the client
    # (X-Forwarded-For, for the rate limit's key) and the scheme (X-Forwarded-Proto). Required
    # with trust_forwarded_proto; any other peer's headers count for nothing.
    trusted_proxies: tuple[str, ...] = ()
    # The DNS server nginx asks, every `resolver_valid_seconds`, for the upstreams' addresses (a
    # container that restarts may get a new one).
    resolver: str = "127.0.0.11"
    resolver_valid_seconds: int = RESOLVER_VALID_SECONDS
    connect_timeout_seconds: int = UPSTREAM_CONNECT_TIMEOUT_SECONDS["docker"]
    # Docker: the instances of api and web come from the files the platform's watcher writes
    # under `<routes_dir>/live/<upstream>/` once a new set is healthy (spec.Routes), not from
    # their names.
    # None: api_upstream and web_upstream are the instances (a Kubernetes Service each).
    routes_dir: str | None = None
    temp_dir: str = "/tmp"
    # The hashed-asset cache: a writable directory of its own (a tmpfs on Docker's read-only root,
    # an emptyDir on Kubernetes), so a full cache never leaves temp files without room.
    cache_dir: str = "/var/cache/aixsss"
    mime_types: str = "/etc/nginx/mime.types"
    workers: int = 1  # nginx_base.workers_for(the edge's CPU limit)
    # Exporters beside the edge (monitoring.enabled): each 5xx answer's status and each probe to
    # mtail over loopback syslog, and stub_status on a loopback listener of its own. Off: the
    # file is exactly what it was before monitoring (the Docker tiers compare it).
    exporters: bool = False


def _upstream(s: EdgeSettings, name: str, address: str, *, keepalive: int) -> list[str]:
    """The upstream ``name``: its instances (UPSTREAM_SERVER, or the routes' files), kept-alive
    connections per worker, each reused for UPSTREAM_KEEPALIVE_TIME_SECONDS at most."""
    if s.routes_dir is None:
        servers = [UPSTREAM_SERVER.format(address=address)]
    else:
        servers = [NO_INSTANCE_YET, f"include {s.routes_dir}/live/{name}/*.conf;"]
    return [
        f"  upstream {name} {{",
        # `resolve` keeps the upstream in shared memory; the keepalive cache stays per worker.
        f"    zone upstream_{name} 64k;",
        *(f"    {line}" for line in servers),
        f"    keepalive {keepalive};",
        f"    keepalive_time {UPSTREAM_KEEPALIVE_TIME_SECONDS}s;",
        "  }",
    ]


def _headers(
    indent: str, extra: tuple[tuple[str, str], ...] = (), base: tuple[tuple[str, str], ...] = SECURITY_HEADERS
) -> list[str]:
    # add_header in a block replaces (not extends) the inherited ones, so every block that
    # adds a header repeats the security headers.
    return [f'{indent}add_header {name} "{value}" always;' for name, value in base + extra]


def _app_locations(s: EdgeSettings, *, require_forwarded_https: bool = False) -> list[str]:
    # Behind a Gateway the check sits in each app location, so /healthz still answers 200.
    guard = ['if ($gateway_proto != "https") { return 301 https://$host$request_uri; }']
    proxy = [
        *(guard if require_forwarded_https else []),
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        # Only the address the edge established (the peer, or behind the gateway the client it
        # names): a client's own X-Forwarded-For would otherwise reach the app unchecked.
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto https;",
        f"proxy_connect_timeout {s.connect_timeout_seconds}s;",
        f"proxy_next_upstream_timeout {UPSTREAM_RETRY_BOUND_SECONDS}s;",
    ]
    lines = [*_headers("    ")]
    lines += [
        "    location /api/ {",
        # Per client address: the first `delay`+1 requests of a burst go through at once, the next
        # up to `burst` are held and released at `rate` (the api never sees more than that), only
        # beyond them 429 (EdgeSettings; the values are explained in the config model).
        f"      limit_req zone=api burst={s.api_rate_burst} delay={s.api_rate_delay};",
        *_headers("      ", base=API_HEADERS),
        "      proxy_pass http://api;",
        f"      proxy_read_timeout {API_READ_TIMEOUT_SECONDS}s;",
        *(f"      {p}" for p in proxy),
        "    }",
        # Quoted: the regex's `{8,}` would otherwise open an nginx block.
        f'    location ~* "{HASHED_ASSET}" {{',
        "      proxy_pass http://web;",
        *(f"      {p}" for p in proxy),
        *(f"      {c}" for c in ASSET_CACHE),
        "      proxy_hide_header Cache-Control;",
        *_headers("      ", (("Cache-Control", "public, max-age=31536000, immutable"),)),
        "    }",
        "    location / {",
        "      proxy_pass http://web;",
        *(f"      {p}" for p in proxy),
        "    }",
    ]
    return lines


# A hashed name never changes content, so the edge keeps each asset and web serves it once per
# encoding. Web (web_server.py) serves the `.gz` the image ships when asked for gzip; the edge asks
# for exactly gzip or nothing ($asset_encoding) and keys the cache on that, so a gzip client and an
# identity client each get their own body, and browsers' many Accept-Encoding spellings make no
# more than two copies (Vary is therefore ignored for storage, yet still sent to the browser).
# Only 200 is kept: a 404 from an old web replica mid-rollout must not stick. Cache-Control and
# Expires from web do not decide it either: the name is the version (the browser gets "immutable"
# below). No cache-status header: tests count web's hits, and clients have no use for it.
ASSET_CACHE = (
    "proxy_cache assets;",
    'proxy_cache_key "$uri $asset_encoding";',
    "proxy_set_header Accept-Encoding $asset_encoding;",
    "proxy_ignore_headers Cache-Control Expires Vary;",
    "proxy_cache_valid 200 365d;",
    # Concurrent misses (a release's first page loads) wait for one fetch instead of each going to web.
    "proxy_cache_lock on;",
    "proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;",
    # Compressed by web ahead of time (gzip_static) or not compressible (images, woff2): the edge
    # never spends CPU compressing an asset per request.
    "gzip off;",
)


def _asset_cache_zone(s: EdgeSettings) -> list[str]:
    """The cache's storage, and the one encoding each client gets (gzip unless refused, ;q=0)."""
    return [
        "  map $http_accept_encoding $asset_encoding {",
        '    default "";',
        '    "~*gzip\\s*;\\s*q=0+(\\.0*)?\\s*(,|$)" "";',
        '    "~*gzip" gzip;',
        "  }",
        # 1 MB of keys holds about 8,000 entries; a release is a few hundred files, two encodings
        # each. 32 MB of bodies holds several releases (the build is about 2.5 MB plus its .gz)
        # and stays well inside the directory's 64 MB (the manager trims to max_size after the
        # fact); an asset nobody asked for in a week (an old release) goes first.
        f"  proxy_cache_path {s.cache_dir} levels=1:2 keys_zone=assets:1m max_size=32m inactive=7d use_temp_path=off;",
    ]


def _gateway_trust(s: EdgeSettings) -> list[str]:
    """Behind a Gateway every connection comes from its proxies: the client is the address they
    add to X-Forwarded-For (realip: the rightmost one not theirs, so $remote_addr and the rate
    limit's $binary_remote_addr are the client's), and the scheme is theirs to say. Both are
    believed only from the gateway's own addresses ($realip_remote_addr is the peer itself)."""
    if not s.trust_forwarded_proto:
        return []
    if not s.trusted_proxies:
        raise ValueError("an edge behind a gateway needs the gateway's addresses (trusted_proxies)")
    return [
        *(f"  set_real_ip_from {cidr};" for cidr in s.trusted_proxies),
        "  real_ip_header X-Forwarded-For;",
        "  real_ip_recursive on;",
        "  geo $realip_remote_addr $from_gateway {",
        "    default 0;",
        *(f"    {cidr} 1;" for cidr in s.trusted_proxies),
        "  }",
        '  map "$from_gateway:$http_x_forwarded_proto" $gateway_proto {',
        '    default "";',
        '    "1:https" https;',
        "  }",
    ]


def _healthz(s: EdgeSettings) -> str:
    # Probes are not traffic: not in the access log; with exporters, one status-log line each so
    # the 5xx alert can take them out of stub_status's request count (exporters.probe_log).
    log = exporter_conf.probe_log() if s.exporters else "access_log off;"
    return f'    location = /healthz {{ {log} return 200 "ok\\n"; }}'


def render(s: EdgeSettings) -> str:
    lines = [
        *main_context(s.temp_dir, workers=s.workers),
        *http_preamble(s.temp_dir, s.mime_types),
        *(exporter_conf.status_log() if s.exporters else []),
        "  keepalive_timeout 65s;",
        # One browser tab keeps one HTTP/2 connection for everything it does; nginx's default
        # (1,000 requests) closes it mid-session, and the tab pays a new TLS handshake while its
        # requests in flight race the GOAWAY. The limit exists to free a connection's memory now
        # and then, so it is raised tenfold, not removed (the web server behind allows as many).
        f"  keepalive_requests {KEEPALIVE_REQUESTS};",
        f"  client_max_body_size {s.client_max_body_size_mb}m;",
        "  gzip on;",
        "  gzip_vary on;",
        "  gzip_proxied any;",
        "  gzip_min_length 256;",
        "  gzip_types text/plain text/css application/javascript text/javascript application/json image/svg+xml;",
        *_gateway_trust(s),
        *_asset_cache_zone(s),
        f"  limit_req_zone $binary_remote_addr zone=api:10m rate={s.api_rate_per_second}r/s;",
        "  limit_req_status 429;",
        f"  resolver {s.resolver} valid={s.resolver_valid_seconds}s ipv6=off;",
        "  resolver_timeout 5s;",
        *_upstream(s, "api", s.api_upstream, keepalive=32),
        *_upstream(s, "web", s.web_upstream, keepalive=16),
        "  server {",
        f"    listen {s.http_port};",
        "    server_name _;",
        *([f"    location /.well-known/acme-challenge/ {{ root {s.acme_webroot}; }}"] if s.acme_webroot else []),
        _healthz(s),
    ]
    if s.trust_forwarded_proto:
        lines += [
            *_app_locations(s, require_forwarded_https=True),
        ]
    else:
        lines += ["    location / { return 301 https://$host$request_uri; }"]
    lines += [
        "  }",
        "  server {",
        f"    listen {s.https_port} ssl;",
        "    http2 on;",
        f"    server_name {s.server_name};",
        f"    ssl_certificate {s.certificate_path};",
        f"    ssl_certificate_key {s.key_path};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:TLS:10m;",
        "    ssl_session_timeout 1d;",
        "    ssl_session_tickets off;",
        _healthz(s),
        *_app_locations(s),
        "  }",
        *(exporter_conf.stub_status_server() if s.exporters else []),
        "}",
    ]
    return "\n".join(lines) + "\n"
