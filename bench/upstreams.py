"""The upstreams every proxy forwards to, both nginx on loopback so they are never the bottleneck:

- api: a small JSON answer at /api/health (the app's own api is Node; what is measured here is
  the proxy in front of it, so the stub must be cheaper than any proxy);
- web: the web image's own generated nginx.conf (components/conf/web_server.py: gzip_static)
  over a ~100 KB hashed JavaScript asset with its .gz beside it, made as the image makes it
  (gzip -k -9 -n).
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.conf import web_server
from tests.servers import LOOPBACK, relocate

# The edge treats /assets/<name>-<8+ chars>.<ext> as a hashed, immutable asset.
ASSET_PATH = "/assets/index-B4xK9q2Z.js"
ASSET_SIZE = 100 * 1024
API_PATH = "/api/health"
API_BODY = '{"ok":true,"service":"api"}'


@dataclass(frozen=True)
class Upstreams:
    api_port: int
    web_port: int
    asset: Path


def asset_text(size: int = ASSET_SIZE, seed: int = 14) -> str:
    """Minified-looking JavaScript that gzips about as well as a real bundle (3-4x), fixed by the
    seed so every run serves the same bytes."""
    rng = random.Random(seed)
    names = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$", k=rng.randint(1, 3)))
             for _ in range(400)]  # fmt: skip
    words = ["return", "const", "function", "if", "else", "null", "this", "new", "typeof", "undefined"]
    parts: list[str] = []
    length = 0
    while length < size:
        a, b, c = rng.sample(names, 3)
        part = (f"{rng.choice(words)} {a}=function({b},{c}){{return {b}.{rng.choice(names)}"
                f"({c},{rng.randint(0, 99999)})||\"{rng.choice(names)}-{rng.randint(0, 999)}\"}};")  # fmt: skip
        parts.append(part)
        length += len(part)
    return "".join(parts)[:size]


def write_assets(root: Path) -> Path:
    """The web root: index.html and the hashed asset, each with its .gz, world-readable (nginx's
    workers run as nobody under a root master)."""
    asset = root / ASSET_PATH.lstrip("/")
    asset.parent.mkdir(parents=True)
    asset.write_text(asset_text())
    (root / "index.html").write_text("<!doctype html><title>aixsss</title>")
    subprocess.run(["gzip", "-k", "-9", "-n", str(asset), str(root / "index.html")], check=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return asset


def web_conf(root: Path, work: Path, port: int) -> str:
    """The web image's nginx.conf as the program renders it, moved onto loopback ``port``."""
    generated = web_server.render(web_server.WebServerSettings())
    edits = {"listen 8080;": f"listen {LOOPBACK}:{port};", "root /usr/share/nginx/html;": f"root {root};",
             " /tmp/": f" {work}/"}  # fmt: skip
    return relocate(generated, {}, edits)


def api_conf(work: Path, port: int) -> str:
    """The stub api: one small JSON answer, HTTP/1.1 keepalive as Node's server offers it."""
    return f"""worker_processes 1;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path {work}/client_temp;
  server {{
    listen {LOOPBACK}:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{API_BODY}'; }}
  }}
}}
"""
