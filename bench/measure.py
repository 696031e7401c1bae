"""The runs: every scenario against every server, repeats interleaved (one pass over everything,
then the next), so a slow moment on a shared machine spreads over all servers alike."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass, field

from bench import cpu
from bench.load import Loader, Sample
from bench.scenarios import RATE_CASES, SCENARIOS, Scenario
from bench.stack import DOMAIN, Stack
from bench.upstreams import API_PATH
from tests.servers import LOOPBACK


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)
    probe: dict[str, object] = field(default_factory=dict)


def probe(stack: Stack, scenario: Scenario, target: str) -> dict[str, object]:
    """One request as a browser makes it (the certificate verified for the domain): its status,
    encoding and body size, recorded beside the rates so a faster server is not one that sends
    less or something else."""
    if target == "direct":
        conn = http.client.HTTPConnection(LOOPBACK, _direct_port(stack, scenario), timeout=10)
    else:
        context = ssl.create_default_context(cafile=str(stack.ca))
        raw = socket.create_connection((LOOPBACK, stack.https[target]), timeout=10)
        conn = http.client.HTTPSConnection(DOMAIN, stack.https[target], timeout=10, context=context)
        conn.sock = context.wrap_socket(raw, server_hostname=DOMAIN)
    conn.request("GET", scenario.path, headers={"Host": DOMAIN, **scenario.headers})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return {"status": response.status, "content_encoding": response.getheader("Content-Encoding") or "identity",
            "body_bytes": len(body)}  # fmt: skip


def raw_probe(stack: Stack, scenario: Scenario, target: str) -> dict[str, object]:
    """The request `openssl s_time -www` sends, on one TLS connection: its answer's status and
    total size (what each of s_time's connections must read)."""
    context = ssl.create_default_context(cafile=str(stack.ca))
    raw = socket.create_connection((LOOPBACK, stack.https[target]), timeout=10)
    with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        tls.sendall(f"GET {scenario.path} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return {"status": int(answer.split(b" ", 2)[1]), "response_bytes": len(answer)}


def _direct_port(stack: Stack, scenario: Scenario) -> int:
    return stack.api_port if scenario.direct == "api" else stack.web_port


def _url(stack: Stack, scenario: Scenario, target: str) -> str:
    if target == "direct":
        return f"http://{LOOPBACK}:{_direct_port(stack, scenario)}{scenario.path}"
    return f"https://{LOOPBACK}:{stack.https[target]}{scenario.path}"


def one(loader: Loader, stack: Stack, s: Scenario, target: str, seconds: int, probed: dict[str, object]) -> Sample:
    """One run, and for a proxy the CPU its own processes spent during it (the load generator's
    start and end included: an idle server spends next to none)."""
    if target == "direct":
        return _load(loader, stack, s, target, seconds, probed)
    sample, used = cpu.spent([stack.pids[target]], lambda: _load(loader, stack, s, target, seconds, probed))
    sample.cpu_seconds, sample.cpu_window_seconds = used.cpu_seconds, used.wall_seconds
    return sample


def _load(loader: Loader, stack: Stack, s: Scenario, target: str, seconds: int, probed: dict[str, object]) -> Sample:
    if s.tool == "wrk":
        return loader.wrk(_url(stack, s, target), seconds, s.headers)
    if s.tool == "h2load":
        return loader.h2load(_url(stack, s, target), seconds, s.headers)
    size = int(str(probed["response_bytes"]))
    return loader.handshakes(stack.https[target], s.path, seconds, resume=s.resume, response_bytes=size)


Results = dict[str, dict[str, Series]]  # scenario -> server -> its runs


def run(loader: Loader, stack: Stack, seconds: int, repeats: int) -> tuple[Results, dict[str, Series]]:
    results = {s.name: {t: Series() for t in s.targets} for s in SCENARIOS}
    rates = {c.name: Series() for c in RATE_CASES}
    last_used: dict[str, float] = {}
    for s in SCENARIOS:
        for target in s.targets:
            results[s.name][target].probe = (raw_probe if s.tool == "handshake" else probe)(stack, s, target)
            assert results[s.name][target].probe["status"] == 200, (s.name, target, results[s.name][target].probe)
    for repeat in range(repeats):
        for s in SCENARIOS:
            for target in s.targets:
                sample = one(loader, stack, s, target, seconds, results[s.name][target].probe)
                results[s.name][target].samples.append(sample)
                cost = f"  {sample.cpu_us:8.1f} us CPU each" if sample.cpu_us is not None else ""
                print(f"  [{repeat + 1}/{repeats}] {s.name:15} {target:8} {sample.rate:10.0f} {s.unit}{cost}"
                      + (f"  {sample.unexpected} unexpected" if sample.unexpected else ""), flush=True)  # fmt: skip
        for case in RATE_CASES:
            # Each case has an edge of its own; its earlier runs must not count against this one:
            # wait until its zone has forgotten them (burst / rate), if they are that recent.
            time.sleep(max(0.0, stack.drain_seconds - (time.monotonic() - last_used.get(case.name, -1e9))))
            url = f"https://{LOOPBACK}:{stack.https[case.name]}{API_PATH}"
            sample = loader.wrk(url, seconds, {}, connections=case.connections, count_statuses=True)
            last_used[case.name] = time.monotonic()
            # Here 429 is an expected answer; anything but 200 and 429 is not.
            sample.unexpected = sum(n for status, n in sample.statuses.items() if status not in ("200", "429"))
            rates[case.name].samples.append(sample)
            print(f"  [{repeat + 1}/{repeats}] {case.name:15} edge     {sample.rate:10.1f} 2xx/s  {sample.statuses}",
                  flush=True)  # fmt: skip
    return results, rates
