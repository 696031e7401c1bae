"""The real web build behind the rendered edge, on loopback, as headless Chromium sees it.

Three servers run on 127.0.0.1, each started by the tests and stopped after them:

- the web server: Debian's nginx running the web image's generated config over a copy of the
  app's ``apps/web/dist``, precompressed as the image does it;
- a stub api answering ``/api/health`` with ``{"ok":true}``;
- the edge: nginx running the rendered ``nginx.conf`` with its upstreams pointed at those two.

Every generated file is run as generated except for where things are on this machine
(servers.relocate: file paths, loopback ports, the resolver) and the two spellings Debian 12's
nginx 1.22 lacks (``http2 on;`` and ``resolve`` on upstream servers: servers.edge_conf).
Headers and the CSP are never edited, except in the negative controls, which say so.

Chromium (Debian's package, driven through Playwright with the system binary; nothing is
downloaded) trusts the stack's CA through its own NSS database, exactly as a user's browser
would after importing it: no certificate error is ignored.

Chromium runs in a network namespace of its own whose only link is loopback, with the edge's
port forwarded into it (isolated_network.py): the Docker bridges that the real-daemon tier adds
and removes beside this suite made it abort page loads at random.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Request, Route
from servers import (
    LOOPBACK,
    nginx_running,
    relocate,
    serving,
)

from components.conf.nginx import API_HEADERS

# What the web image precompresses, and how (images/app/Dockerfile, stage web-build): the
# original is kept beside its .gz, which carries no name or timestamp.
PRECOMPRESSED = (".html", ".js", ".mjs", ".css", ".svg", ".json", ".webmanifest", ".txt", ".xml", ".map")
GZIP = ["gzip", "-k", "-9", "-n"]
CSP_HEADER = re.compile(r'add_header Content-Security-Policy "([^"]*)" always;')


# --------------------------------------------------------------------------- servers


def precompressed_copy(dist: Path, into: Path) -> Path:
    """A copy of ``dist`` with a ``.gz`` beside each text file, made as the web image makes them
    (its build runs ``find ... -exec gzip -k -9 -n {} +`` over these suffixes).

    ``into`` must be readable by nginx's workers (``nobody`` under a root master): the copy is
    made world-readable.
    """
    html = into / "html"
    shutil.copytree(dist, html)
    for path in [html, *html.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    files = [str(p) for p in html.rglob("*") if p.is_file() and p.suffix in PRECOMPRESSED]
    subprocess.run([*GZIP, *files], check=True)
    for path in html.rglob("*.gz"):
        path.chmod(0o644)
    return html


def web_conf(generated: str, root: Path, work: Path, port: int) -> str:
    """The web image's nginx.conf, serving ``root`` on a loopback port, temp files in ``work``."""
    return relocate(
        generated,
        {},
        {
            "listen 8080;": f"listen {LOOPBACK}:{port};",
            "root /usr/share/nginx/html;": f"root {root};",
            " /tmp/": f" {work}/",
        },
    )


def content_security_policy(conf: str) -> str:
    """The one CSP an nginx.conf sends with pages (every add_header block repeats it; /api/
    answers with API_HEADERS' own, which allows nothing)."""
    found = set(CSP_HEADER.findall(conf)) - {dict(API_HEADERS)["Content-Security-Policy"]}
    assert len(found) == 1, f"expected one Content-Security-Policy in the edge config, found {found}"
    return found.pop()


def without_source(conf: str, directive: str, source: str) -> str:
    """A negative control: ``conf`` whose CSP no longer allows ``source`` in ``directive``.
    The only edit beyond relocation any test makes to a generated header."""
    policy = content_security_policy(conf)
    directives = [d.split() for d in policy.split(";")]
    changed = []
    for words in directives:
        if words and words[0] == directive:
            assert source in words[1:], f"{source} is not in {directive}: {policy}"
            words = [w for w in words if w != source]
        changed.append(" ".join(words))
    mutated = "; ".join(changed)
    assert mutated != policy
    return conf.replace(f'Content-Security-Policy "{policy}"', f'Content-Security-Policy "{mutated}"')


@contextlib.contextmanager
def nginx(binary: str, work: Path, conf: str, port: int) -> Iterator[None]:
    """nginx running ``conf`` (after `nginx -t` accepted it) until the block ends."""
    with nginx_running(binary, work, conf, port):
        yield


class _StubApi(BaseHTTPRequestHandler):
    """The api's health endpoint and nothing else (the app makes no other call before login)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list[dict[str, str]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "proto": self.headers.get("X-Forwarded-Proto", "")})
        ok = self.path == "/api/health"
        body = json.dumps({"ok": True} if ok else {"statusCode": 404}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def stub_api(port: int) -> Iterator[list[dict[str, str]]]:
    """The stub api on ``port``; yields the list of requests it received."""
    seen: list[dict[str, str]] = []
    handler = type("StubApi", (_StubApi,), {"seen": seen})
    with serving(handler, port):
        yield seen


def world_readable_dir(prefix: str) -> Path:
    """A scratch directory nginx's ``nobody`` workers can read (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- the browser


def trusting_home(home: Path, ca: Path, certutil: str) -> Path:
    """A HOME whose NSS database (``~/.pki/nssdb``, where Chromium on Linux keeps the user's
    certificates) trusts ``ca`` to identify web sites (trust flags ``C,,``) and nothing else."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{db}", "-n", "aixsss test CA", "-t", "C,,", "-i", str(ca)],
        check=True,
        capture_output=True,
    )
    return home


def launch(playwright: Playwright, chromium: str, home: Path, domain: str) -> Browser:
    """Headless Chromium (the system binary) with ``home``'s certificates, ``domain`` on loopback."""
    return playwright.chromium.launch(
        executable_path=chromium,
        args=[
            # The tests run as root (CI runs as root), and Chromium refuses to start its
            # sandbox as root; the pages it loads are the app under test, on loopback.
            "--no-sandbox",
            # Shared memory in the temp dir, not /dev/shm, which is small in many containers
            # (Debian's launcher means to add this when it is, but its test breaks when findmnt
            # prints more than one line).
            "--disable-dev-shm-usage",
            # The stack's domain goes to the loopback edge with its real name, so the Host
            # header and SNI are what a user's browser sends; every other host fails to
            # resolve at once (no internet here, and none wanted elsewhere): the third-party
            # hosts the app uses are stood in for by routes (ThirdParty), before any lookup.
            f"--host-resolver-rules=MAP {domain} {LOOPBACK}, MAP * ~NOTFOUND",
        ],
        # Chromium reads its NSS database from $HOME; the CA is trusted there, so no
        # certificate error needs to be ignored (ignore_https_errors stays False).
        env={**os.environ, "HOME": str(home)},
    )


# Stand-ins for what the app's index.html loads from third parties, in the shape those hosts
# serve (Google Fonts' css2 answers @font-face rules whose fonts are on fonts.gstatic.com; the
# lxgw-wenkai-webfont package's style.css @imports sibling stylesheets whose fonts are relative
# ./files/ URLs on jsDelivr). They exist so the browser applies the CSP to every hop a user's
# browser takes: style-src for the two stylesheets and the @import, font-src for both font hosts.
GOOGLE_CSS = """\
@font-face { font-family: 'Noto Serif SC'; font-style: normal; font-weight: 400; font-display: swap;
  src: url(https://fonts.gstatic.com/s/notoserifsc/v1/stand-in-400.woff2) format('woff2'); }
@font-face { font-family: 'JetBrains Mono'; font-style: normal; font-weight: 400; font-display: swap;
  src: url(https://fonts.gstatic.com/s/jetbrainsmono/v1/stand-in-400.woff2) format('woff2'); }
"""
JSDELIVR_STYLE = '@import url("./lxgwwenkai-regular.css");\n'
JSDELIVR_REGULAR = """\
@font-face { font-family: 'LXGW WenKai'; font-weight: 400; font-display: swap;
  src: url(./files/lxgwwenkai-regular-subset-1.woff2) format('woff2'); }
"""


@dataclass
class ThirdParty:
    """Routes that answer the app's third-party requests; records what the browser asked for."""

    font: bytes
    requested: list[str] = field(default_factory=list)

    def install(self, context: BrowserContext) -> None:
        context.route("https://fonts.googleapis.com/**", self._google_css)
        context.route("https://fonts.gstatic.com/**", self._font)
        context.route("https://cdn.jsdelivr.net/**", self._jsdelivr)

    def _fulfil(self, route: Route, body: str | bytes, content_type: str) -> None:
        self.requested.append(route.request.url)
        headers = {"Access-Control-Allow-Origin": "*"}
        route.fulfill(status=200, body=body, content_type=content_type, headers=headers)

    def _google_css(self, route: Route) -> None:
        self._fulfil(route, GOOGLE_CSS, "text/css; charset=utf-8")

    def _font(self, route: Route) -> None:
        self._fulfil(route, self.font, "font/woff2")

    def _jsdelivr(self, route: Route) -> None:
        url = route.request.url
        if url.endswith("/style.css"):
            self._fulfil(route, JSDELIVR_STYLE, "text/css; charset=utf-8")
        elif url.endswith(".css"):
            self._fulfil(route, JSDELIVR_REGULAR, "text/css; charset=utf-8")
        else:
            self._fulfil(route, self.font, "font/woff2")


# Installed before any of the page's own code runs (through the DevTools protocol, which a
# page's CSP does not govern); reports every violation the page's document sees.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.__aixsssViolation({directive: e.effectiveDirective, blocked: e.blockedURI,
                            disposition: e.disposition, sample: e.sample});
});
"""


@dataclass
class PageWatch:
    """What a page reported while it loaded, by channel (see ``violations``). Network failures
    (a host that cannot be reached) are recorded too, apart: they are not CSP violations."""

    events: list[dict[str, Any]] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def violations(self) -> dict[str, list[Any]]:
        """Every channel on which Chromium reports a CSP violation, with what it reported: the
        document's ``securitypolicyviolation`` events; console messages about the CSP (Chromium
        156 words them "... violates the following Content Security Policy directive ...",
        older ones "Refused to ..."); DevTools Log entries from the "security" source; requests
        that failed as blocked by the CSP."""
        return {
            "securitypolicyviolation events": self.events,
            "CSP console messages": [
                text for _, text in self.console if "Content Security Policy" in text or text.startswith("Refused to")
            ],
            "DevTools security log entries": [entry for entry in self.log if entry.get("source") == "security"],
            "requests blocked by CSP": [url for url, failure in self.failed if "csp" in failure.lower()],
        }

    def summary(self) -> str:
        report = {**self.violations(), "failed requests": self.failed, "uncaught errors": self.errors}
        return json.dumps(report, indent=1, ensure_ascii=False)


def watched_page(context: BrowserContext) -> tuple[Page, PageWatch]:
    """A new page in ``context`` whose CSP violations, console, log and failures are recorded."""
    watch = PageWatch()
    context.expose_function("__aixsssViolation", lambda violation: watch.events.append(violation))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.on("Log.entryAdded", lambda event: watch.log.append(event["entry"]))
    cdp.send("Log.enable")

    def on_console(message: ConsoleMessage) -> None:
        watch.console.append((message.type, message.text))

    def on_failed(request: Request) -> None:
        watch.failed.append((request.url, request.failure or ""))

    page.on("console", on_console)
    page.on("requestfailed", on_failed)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    return page, watch
