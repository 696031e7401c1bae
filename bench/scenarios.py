"""What is measured, against which servers, and what a response must be."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.upstreams import API_PATH, ASSET_PATH

TARGETS = ("edge", "stock", "haproxy", "direct")
GZIP = {"Accept-Encoding": "gzip"}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    tool: str  # wrk (HTTP/1.1), h2load (HTTP/2), handshake (openssl s_time)
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    direct: str = ""  # the upstream (api, web) the "direct" column asks without a proxy; "" none
    resume: bool = False
    unit: str = "req/s"

    @property
    def targets(self) -> tuple[str, ...]:
        return TARGETS if self.direct else TARGETS[:3]


SCENARIOS = (
    Scenario("api", "API call, HTTP/1.1", "wrk", API_PATH, direct="api"),
    Scenario("asset_gzip", "hashed 100 KB asset, gzip, HTTP/1.1", "wrk", ASSET_PATH, GZIP, direct="web"),
    Scenario("asset_identity", "hashed 100 KB asset, no gzip, HTTP/1.1", "wrk", ASSET_PATH, direct="web"),
    Scenario("api_h2", "API call, HTTP/2", "h2load", API_PATH),
    Scenario("asset_gzip_h2", "hashed 100 KB asset, gzip, HTTP/2", "h2load", ASSET_PATH, GZIP),
    # One request per connection, so TLS 1.3 hands out the session the next one resumes.
    Scenario(
        "tls_full", "new TLS connection + 1 API call, full handshake", "handshake", API_PATH, unit="connections/s"
    ),
    Scenario(
        "tls_resumed",
        "new TLS connection + 1 API call, resumed",
        "handshake",
        API_PATH,
        resume=True,
        unit="connections/s",
    ),
)


@dataclass(frozen=True)
class RateCase:
    """The edge as configured (its own rate and burst): what clients on one address get."""

    name: str
    title: str
    connections: int


RATE_CASES = (
    RateCase("rate_1_client", "one client, back to back", 1),
    RateCase("rate_100_clients", "100 clients from one address", 100),
)
