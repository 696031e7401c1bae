"""The real web build, behind the rendered edge, loaded by headless Chromium over HTTPS.

The app's own ``apps/web/dist`` (the ``built_app`` fixture), precompressed as the web image does
it, is served by nginx running the web server's generated config; the dev stack's rendered
edge runs in front of it and of a stub api, on loopback (see browser.py for what is relocated
and what is not). Chromium trusts the stack's CA and reaches ``https://aixsss.localhost:<port>``
with that Host and SNI. Every test reads what the browser itself saw.

- The edge's CSP lets the app load with no violation, counted on four channels at once (the
  document's ``securitypolicyviolation`` events, CSP console messages, DevTools "security" log
  entries, requests failed as blocked by CSP). The third-party stylesheets and fonts the app's
  index.html asks for are answered by stand-ins (browser.ThirdParty), so every hop a user's
  browser takes is checked against the policy; network errors are not counted as violations.
  Controls: the same page behind a copy of the edge whose CSP drops one source the app needs
  is reported on every channel, so a zero means the detector saw nothing, not that it is blind.
- A deep link (a BrowserRouter route) gets index.html and the app boots and routes; a missing
  hashed asset is a 404, never index.html.
- ``/api/health`` reaches the api through the edge, also as the app's own code calls it (a
  same-origin fetch, under connect-src).
- Caching and encoding headers: index.html ``no-cache``, hashed assets ``immutable``, the
  image's precompressed ``.gz`` served byte for byte with ``Content-Encoding: gzip``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from rendering import config_file, rendered, tool
from servers import LOOPBACK, EdgePorts, edge_conf, free_port

from offline.render import Rendered

from .browser import (
    PageWatch,
    ThirdParty,
    launch,
    nginx,
    precompressed_copy,
    stub_api,
    trusting_home,
    watched_page,
    web_conf,
    without_source,
    world_readable_dir,
)
from .conftest import _not_here
from .isolated_network import IsolatedNetwork, isolated_network

STACK = "dev"
DOMAIN_KEY = "aixsss:domain"
IMMUTABLE = "public, max-age=31536000, immutable"
# Routes the app defines (apps/web/src/App.tsx, under BrowserRouter in main.tsx). Signed out,
# the app itself sends each of them to /login: a rendered /login after a deep link proves the
# app booted from that URL and routed it.
DEEP_LINKS = ["/projects/some-id", "/projects/some-id/legacy", "/system-prompts", "/login"]
SIGNED_OUT_ROUTE = "/login"
# A stand-in font body: the browser applies font-src before fetching, which is what is checked;
# it then fails to decode these bytes (a console warning, not a violation).
FONT_BYTES = b"wOF2 stand-in, not a font"
TIMEOUT_MS = 20_000
SETTLE_MS = 250


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return rendered(tmp_path_factory.mktemp("browser"), STACK, "docker", show_secrets=True)


@dataclass(frozen=True)
class Tools:
    nginx: str
    chromium: str
    certutil: str


@pytest.fixture(scope="module")
def tools() -> Tools:
    return Tools(
        nginx=tool("nginx", "/usr/sbin/nginx"),
        chromium=tool("chromium", "/usr/bin/chromium"),
        certutil=tool("certutil", "/usr/bin/certutil"),  # Debian: libnss3-tools
    )


def generated_web_conf(dev: Rendered) -> str:
    """The web server's nginx.conf as the program delivers it (``/etc/aixsss/web.conf`` of the
    web workload)."""
    return config_file(dev, f"aixsss-{STACK}-web", "web.conf").read_text()


@dataclass
class Upstreams:
    html: Path  # the served copy of apps/web/dist, with its .gz files
    web_port: int
    api_port: int
    api_seen: list[dict[str, str]]


@pytest.fixture(scope="module")
def upstreams(dev: Rendered, tools: Tools, built_app: Path) -> Iterator[Upstreams]:
    """The web server (the app's dist, the generated web config) and the stub api, on loopback."""
    work = world_readable_dir("aixsss-web-")
    try:
        html = precompressed_copy(built_app / "apps" / "web" / "dist", work)
        web_port, api_port = free_port(), free_port()
        conf = web_conf(generated_web_conf(dev), html, work, web_port)
        with stub_api(api_port) as seen, nginx(tools.nginx, work, conf, web_port):
            yield Upstreams(html, web_port, api_port, seen)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def network() -> Iterator[IsolatedNetwork]:
    """Chromium's own network namespace (isolated_network.py says why): the edges it visits
    are forwarded into it."""
    if os.geteuid() != 0:
        _not_here("Chromium runs in a network namespace of its own, which needs root")
    with isolated_network(f"aixsss-browser-{os.getpid()}") as isolated:
        yield isolated


@dataclass
class Edge:
    domain: str
    port: int
    ca: Path
    conf: str

    @property
    def origin(self) -> str:
        return f"https://{self.domain}:{self.port}"


@contextlib.contextmanager
def running_edge(dev: Rendered, tools: Tools, upstreams: Upstreams, network: IsolatedNetwork,
                 mutate: tuple[str, str] | None = None) -> Iterator[Edge]:  # fmt: skip
    """The rendered edge in front of ``upstreams``, reachable from the browser's ``network``
    too; ``mutate`` (directive, source) makes it a negative control whose CSP no longer allows
    that source (browser.without_source)."""
    work = world_readable_dir("aixsss-edge-")  # its workers may buffer responses in temp files
    try:
        ports = EdgePorts(free_port(), free_port(), upstreams.api_port, upstreams.web_port)
        conf = edge_conf(dev.out / "config" / f"aixsss-{STACK}-edge", tools.nginx, work, ports)
        if mutate:
            conf = without_source(conf, *mutate)
        with nginx(tools.nginx, work, conf, ports.https), network.forwarding(ports.https):
            yield Edge(dev.deployment.config[DOMAIN_KEY], ports.https, dev.out / "certs" / "ca.crt", conf)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def edge(dev: Rendered, tools: Tools, upstreams: Upstreams, network: IsolatedNetwork) -> Iterator[Edge]:
    with running_edge(dev, tools, upstreams, network) as running:
        yield running


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(
    playwright: Playwright, tools: Tools, edge: Edge, network: IsolatedNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    scratch = tmp_path_factory.mktemp("chromium")
    home = trusting_home(scratch / "home", edge.ca, tools.certutil)
    instance = launch(playwright, network.wrapper(tools.chromium, scratch), home, edge.domain)
    yield instance
    instance.close()


@dataclass
class Visit:
    page: Page
    watch: PageWatch
    response: Response
    third_party: ThirdParty
    responses: list[Response] = field(default_factory=list)
    health: Any = None


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()  # ignore_https_errors stays False: the certificate is verified
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def wait_for_render(page: Page, watch: PageWatch) -> None:
    """Until the app has rendered into #root. A selector, not wait_for_function: when its first
    check is false, Playwright polls the predicate with eval inside the page, which the edge's CSP
    (script-src 'self', no 'unsafe-eval') refuses; on a loaded machine the app renders after that
    first check and the test failed on the refusal, not on the app. A failure names everything
    the page reported."""
    try:
        page.locator("#root > *").first.wait_for(state="attached")
    except PlaywrightTimeoutError:
        raise AssertionError(f"the app did not render into #root:\n{watch.summary()}") from None


def visit(context: BrowserContext, url: str) -> Visit:
    """Open ``url`` as a user would and let the app settle: the document loads, the app renders
    into #root, the network goes quiet; then the page calls the api as the app's code does."""
    third_party = ThirdParty(FONT_BYTES)
    third_party.install(context)
    page, watch = watched_page(context)
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    response = page.goto(url, wait_until="load")
    assert response is not None
    wait_for_render(page, watch)
    page.wait_for_load_state("networkidle")
    health = page.evaluate("fetch('/api/health').then(r => r.json()).catch(e => String(e))")
    page.wait_for_load_state("networkidle")
    # A violation is reported asynchronously: its event is a queued task in the page, then a
    # binding call to Python. A timer in the page that fires later, awaited through the same
    # DevTools connection, comes back after those reports (without it, the connect-src
    # control's event arrived too late to be counted).
    page.evaluate(f"new Promise(resolve => setTimeout(resolve, {SETTLE_MS}))")
    return Visit(page, watch, response, third_party, responses, health)


def app_title(html: Path) -> str:
    found = re.search(r"<title>(.*?)</title>", (html / "index.html").read_text(encoding="utf-8"), re.S)
    assert found, "the app's index.html has no <title>"
    return found.group(1).strip()


# --------------------------------------------------------------------------- CSP


def test_the_app_loads_with_no_csp_violation(context: BrowserContext, edge: Edge, upstreams: Upstreams) -> None:
    loaded = visit(context, edge.origin + "/")
    found = loaded.watch.violations()
    assert all(not v for v in found.values()), loaded.watch.summary()
    # The app booted (no uncaught error) and rendered its signed-out route.
    assert loaded.watch.errors == []
    assert urlsplit(loaded.page.url).path == SIGNED_OUT_ROUTE
    assert loaded.page.title() == app_title(upstreams.html)
    # Every hop the CSP governs was taken, so the zero above covers each of them: the app's own
    # scripts and stylesheets (script-src, style-src 'self'), index.html's <style>
    # ('unsafe-inline'), both third-party stylesheets and the @import (style-src), a font from
    # each font host (font-src) and the api call (connect-src).
    own = [r for r in loaded.responses if r.url.startswith(edge.origin + "/assets/")]
    assert {Path(urlsplit(r.url).path).suffix for r in own} >= {".js", ".css"}
    assert all(r.status == 200 for r in own), [(r.url, r.status) for r in own]
    hosts_and_kinds = {
        (urlsplit(u).hostname, Path(urlsplit(u).path).suffix or "css") for u in loaded.third_party.requested
    }
    assert hosts_and_kinds >= {
        ("fonts.googleapis.com", "css"),
        ("fonts.gstatic.com", ".woff2"),
        ("cdn.jsdelivr.net", ".css"),
        ("cdn.jsdelivr.net", ".woff2"),
    }, loaded.third_party.requested
    assert loaded.health == {"ok": True}
    # Nothing of the app's own origin failed; only the stand-in fonts' bodies are not fonts.
    assert not [url for url, _ in loaded.watch.failed if url.startswith(edge.origin)], loaded.watch.failed


# Each control drops one source the app needs from the rendered CSP and nothing else; the
# browser must report it on every channel, naming the directive and what it blocked.
# The last column: whether the blocked thing is a request the page makes as an element's load
# (a stylesheet, a font), which Chromium also fails as "csp"; an inline <style> is no request,
# and a blocked fetch() rejects before any request exists.
CONTROLS = [
    ("style-src", "https://fonts.googleapis.com", "style-src-elem", "https://fonts.googleapis.com/css2", True),
    (
        "style-src",
        "https://cdn.jsdelivr.net",
        "style-src-elem",
        "https://cdn.jsdelivr.net/npm/lxgw-wenkai-webfont",
        True,
    ),
    ("style-src", "'unsafe-inline'", "style-src-elem", "inline", False),
    ("font-src", "https://fonts.gstatic.com", "font-src", "https://fonts.gstatic.com/", True),
    ("font-src", "https://cdn.jsdelivr.net", "font-src", "https://cdn.jsdelivr.net/", True),
    ("connect-src", "'self'", "connect-src", "/api/health", False),
]


@pytest.mark.parametrize(
    ("directive", "source", "reported", "blocked", "as_request"), CONTROLS, ids=[f"{c[0]}-{c[1]}" for c in CONTROLS]
)
def test_control_a_csp_without_a_source_the_app_needs_is_reported(
    directive: str, source: str, reported: str, blocked: str, as_request: bool, dev: Rendered, tools: Tools,
    upstreams: Upstreams, network: IsolatedNetwork, context: BrowserContext,
) -> None:  # fmt: skip
    with running_edge(dev, tools, upstreams, network, mutate=(directive, source)) as control:
        loaded = visit(context, control.origin + "/")
    found = loaded.watch.violations()
    channels = ["securitypolicyviolation events", "CSP console messages", "DevTools security log entries"]
    if as_request:
        channels.append("requests blocked by CSP")
    assert all(found[c] for c in channels), loaded.watch.summary()
    assert any(e["directive"] == reported and blocked in e["blocked"] for e in loaded.watch.events), loaded.watch.events


# The app's AI settings dialog (ConfigDialog) has a "structured output test": it checks a model's
# JSON answer against the user's JSON Schema in the browser, with ajv, loaded on demand as its own
# chunk. ajv compiles each schema to a function with `new Function`, which the edge's
# `script-src 'self'` (no 'unsafe-eval') forbids: the dialog reports a schema compile failure (EvalError).
# Whether to allow 'unsafe-eval' for the whole app for this one check is the CSP owner's call
# (components/conf/nginx.py); until it changes, this test says the check does not work.
RUN_APP_AJV = """chunk => new Promise(resolve => setTimeout(() => {
  // A task of the page's own, as the dialog runs it: not inside the DevTools evaluation, which
  // may compile strings whatever the CSP says.
  import('/assets/' + chunk).then(m => m.a).then(mod => {
    const Ajv = mod.default ?? mod;
    const validate = new Ajv({allErrors: true, strict: false}).compile({type: 'object', required: ['a']});
    resolve({compiled: true, valid: validate({a: 1}) && !validate({})});
  }).catch(error => resolve({compiled: false, error: String(error)}));
}, 0))"""


@pytest.mark.xfail(
    reason="refused on purpose (components/conf/nginx.py, README: the CSP and the app): the edge's script-src "
    "has no 'unsafe-eval', which ajv's schema compiler needs; the app can precompile its schemas (ajv standalone)",
    raises=AssertionError,
    strict=True,
)
def test_the_settings_dialog_s_schema_check_works_under_the_csp(context: BrowserContext, edge: Edge,
                                                                 upstreams: Upstreams) -> None:  # fmt: skip
    dialog = next((upstreams.html / "assets").glob("ConfigDialog-*.js")).read_text(encoding="utf-8")
    found = re.search(r'import\("\./(ajv-[^"]+\.js)"\)', dialog)
    if not found:
        pytest.fail("ConfigDialog no longer loads an ajv chunk: revisit this test")
    loaded = visit(context, edge.origin + "/")
    result = loaded.page.evaluate(RUN_APP_AJV, found.group(1))
    loaded.page.evaluate(f"new Promise(resolve => setTimeout(resolve, {SETTLE_MS}))")
    # Only the CSP's refusal counts as the expected failure (an AssertionError, below): an
    # EvalError with a reported violation of script-src for "eval". Anything else fails.
    if not result["compiled"]:
        refused = [e for e in loaded.watch.events if e["directive"] == "script-src" and e["blocked"] == "eval"]
        if "EvalError" not in result["error"] or not refused:
            pytest.fail(f"the schema check failed, but not by the CSP: {result}\n{loaded.watch.summary()}")
    assert result == {"compiled": True, "valid": True}, result


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("path", DEEP_LINKS)
def test_a_deep_link_and_its_reload_get_the_app(
    path: str, context: BrowserContext, edge: Edge, upstreams: Upstreams
) -> None:
    index = (upstreams.html / "index.html").read_bytes()
    loaded = visit(context, edge.origin + path)
    page = loaded.page

    def got_the_app(response: Response | None) -> None:
        assert response is not None
        assert response.status == 200
        assert response.body() == index
        assert response.header_value("cache-control") == "no-cache"
        wait_for_render(page, loaded.watch)
        page.wait_for_url(f"**{SIGNED_OUT_ROUTE}")
        assert page.title() == app_title(upstreams.html)

    got_the_app(loaded.response)
    got_the_app(page.goto(edge.origin + path))  # the deep link loaded again from the server
    got_the_app(page.reload())  # and the page the app routed it to, reloaded
    assert all(not v for v in loaded.watch.violations().values()), loaded.watch.summary()


MISSING_ASSETS = [
    "/assets/index-Zz9Zz9Zz.js",  # the shape the edge caches for a year (nginx.HASHED_ASSET)
    "/assets/index-Zz9Zz9Zz.css",
    "/assets/not-hashed.js",
]


@pytest.mark.parametrize("path", MISSING_ASSETS)
def test_a_missing_asset_is_a_404_not_the_app(
    path: str, context: BrowserContext, edge: Edge, upstreams: Upstreams
) -> None:
    page = context.new_page()
    response = page.goto(edge.origin + path)
    assert response is not None
    assert response.status == 404
    assert response.body() != (upstreams.html / "index.html").read_bytes()
    assert b'id="root"' not in response.body()


# --------------------------------------------------------------------------- the api


def test_api_health_reaches_the_api_through_the_edge(context: BrowserContext, edge: Edge, upstreams: Upstreams) -> None:
    page = context.new_page()
    before = len(upstreams.api_seen)
    response = page.goto(edge.origin + "/api/health")
    assert response is not None
    assert response.status == 200
    assert response.json() == {"ok": True}
    assert upstreams.api_seen[before:] == [{"path": "/api/health", "proto": "https"}]


# --------------------------------------------------------------------------- headers


def test_index_is_revalidated_and_hashed_assets_are_immutable_and_gzipped(
    context: BrowserContext, edge: Edge, upstreams: Upstreams
) -> None:
    loaded = visit(context, edge.origin + "/")
    assert loaded.response.header_value("cache-control") == "no-cache"
    own = [r for r in loaded.responses if r.url.startswith(edge.origin + "/assets/")]
    assert own
    for response in own:
        headers = response.all_headers()
        assert headers.get("cache-control") == IMMUTABLE, (response.url, headers)
        assert headers.get("content-encoding") == "gzip", (response.url, headers)


def _https_get(edge: Edge, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A GET to the edge verifying its certificate for the domain (Python's client: it shows
    the bytes on the wire, which the browser decodes before a test can see them)."""
    ctx = ssl.create_default_context(cafile=str(edge.ca))
    raw = socket.create_connection((LOOPBACK, edge.port), timeout=10)
    conn = http.client.HTTPSConnection(edge.domain, edge.port, timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname=edge.domain)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_precompressed_gz_is_what_the_browser_gets(edge: Edge, upstreams: Upstreams) -> None:
    """The web image's own .gz, byte for byte: neither nginx compressed it again on the way."""
    index = (upstreams.html / "index.html").read_text(encoding="utf-8")
    entry = re.search(r'<script type="module" crossorigin src="(/assets/[^"]+\.js)"', index)
    style = re.search(r'<link rel="stylesheet" crossorigin href="(/assets/[^"]+\.css)"', index)
    assert entry and style, "the app's index.html names no entry script or stylesheet"
    for path in (entry.group(1), style.group(1), "/"):
        served = upstreams.html / (path.lstrip("/") or "index.html")
        status, headers, body = _https_get(edge, path, {"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers.get("content-encoding") == "gzip", headers
        assert body == served.with_name(served.name + ".gz").read_bytes(), path
        # Without gzip in Accept-Encoding the original is served as it is.
        status, headers, body = _https_get(edge, path, {"Accept-Encoding": "identity"})
        assert (status, headers.get("content-encoding"), body) == (200, None, served.read_bytes())


# --------------------------------------------------------------------------- isolation


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def test_chromium_runs_in_its_own_network_with_only_loopback(browser: Browser, network: IsolatedNetwork) -> None:
    """What keeps the Docker bridges of the tier beside this suite from aborting page loads
    (isolated_network.py): every Chromium process is in the namespace, whose only link is lo."""
    ours = f"net:[{os.stat(network.path).st_ino}]"
    chromium = {}
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").resolve().name == "chromium":
                chromium[pid] = os.readlink(f"/proc/{pid}/ns/net")
    assert chromium, "no Chromium process under this test run"
    assert set(chromium.values()) == {ours}, chromium
    links = subprocess.run(["ip", "-n", network.name, "-o", "link"], check=True, capture_output=True, text=True)
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"], links.stdout


# --------------------------------------------------------------------------- trust


def test_control_a_browser_without_the_stack_ca_refuses_the_edge(
    playwright: Playwright, tools: Tools, edge: Edge, network: IsolatedNetwork, tmp_path: Path
) -> None:
    """The CA in the NSS database is what makes the edge trusted: nothing else is ignored."""
    empty = tmp_path / "home"
    (empty / ".pki" / "nssdb").mkdir(parents=True)
    untrusting = launch(playwright, network.wrapper(tools.chromium, tmp_path), empty, edge.domain)
    try:
        page = untrusting.new_page()
        with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(edge.origin + "/")
    finally:
        untrusting.close()
