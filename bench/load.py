"""The load generators, with fixed settings, and what each run measured.

wrk (HTTP/1.1) and h2load (HTTP/2) keep their connections open, so they measure requests;
`openssl s_time` opens a new TLS connection per handshake, full or resumed. Every response's
status is counted: a run reports the expected responses per second and how many were not.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK_CONNECTIONS = 32
H2_CONNECTIONS = 8
H2_STREAMS = 16  # concurrent streams per HTTP/2 connection: 128 requests in flight, as wrk's 32 x 1 ... x 4

# wrk counts statuses >= 400 as errors.status; done() reports them without a per-response Lua
# hook, which would copy every body into Lua and slow wrk down more than the proxies.
WRK_SUMMARY = """
function done(summary, latency, requests)
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, '
    .. '"socket_errors": %d}\\n', summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""
# The rate-limit runs count each status (their rate is low, the hook costs nothing there).
WRK_STATUSES = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do table.insert(parts, string.format('"%d": %d', status, n)) end
  end
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "statuses": {%s}}\\n', summary.requests, summary.duration, summary.bytes,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class Sample:
    rate: float  # expected responses (or handshakes) per second
    unexpected: int  # responses with another status, failed requests or handshakes, socket errors
    bytes_per_response: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    note: str = ""  # what makes the rate mean something else than it says
    completed: int = 0  # responses (or connections) the run got, whatever their status
    cpu_seconds: float | None = None  # what the server's own processes spent meanwhile (bench.cpu)
    cpu_window_seconds: float | None = None  # from just before the load generator started to its end

    @property
    def cpu_us(self) -> float | None:
        """The server's CPU microseconds per response (or connection)."""
        if self.cpu_seconds is None or not self.completed:
            return None
        return self.cpu_seconds / self.completed * 1e6


@dataclass(frozen=True)
class Loader:
    """How to start a load generator: on its own core where there is one (``pin``)."""

    pin: list[str]
    work: Path

    def script(self, name: str, text: str) -> Path:
        path = self.work / name
        if not path.exists():
            path.write_text(text)
        return path

    def wrk(self, url: str, seconds: int, headers: dict[str, str], *, connections: int = WRK_CONNECTIONS,
            count_statuses: bool = False) -> Sample:  # fmt: skip
        script = self.script(*(("statuses.lua", WRK_STATUSES) if count_statuses else ("summary.lua", WRK_SUMMARY)))
        command = [*self.pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
        command += [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
        out = _run([*command, url], seconds)
        found = re.search(r"^BENCH (.*)$", out, re.M)
        assert found, out
        r = json.loads(found.group(1))
        good = r["requests"] - r["status_errors"]
        statuses = {str(k): v for k, v in r.get("statuses", {}).items()}
        unexpected = r["status_errors"] + r["socket_errors"]
        rate = good / (r["duration_us"] / 1e6)
        return Sample(rate, unexpected, r["bytes"] / max(r["requests"], 1), statuses, completed=r["requests"])

    def h2load(self, url: str, seconds: int, headers: dict[str, str]) -> Sample:
        command = [*self.pin, "h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", "-D", str(seconds)]
        command += [arg for name, value in headers.items() for arg in ("-H", f"{name.lower()}: {value}")]
        out = _run([*command, url], seconds)
        finished = re.search(r"finished in ([\d.]+)(m?s),", out)
        requests = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                             r"(\d+) errored, (\d+) timeout", out)  # fmt: skip
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        traffic = re.search(r"traffic: .*?\((\d+)\) total", out)
        assert finished and requests and codes and traffic, out
        elapsed = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
        ok = int(codes.group(1))
        # Every answer that is not a 2xx; and requests that got no answer (errored, timed out)
        # beyond those in flight when h2load stops them at the end of the run.
        in_flight = H2_CONNECTIONS * H2_STREAMS
        lost = int(requests.group(5)) + int(requests.group(6))
        unexpected = sum(int(codes.group(n)) for n in (2, 3, 4)) + max(0, lost - in_flight)
        statuses = {f"{n}xx": int(codes.group(n - 1)) for n in (2, 3, 4, 5)}
        # h2load never reconnects: a server that closes a connection (nginx after
        # keepalive_requests) leaves it idle for the rest of the run. Each client's own req/s is
        # over its lifetime; their sum far above the run's rate means they died early.
        per_client = re.search(r"req/s\s*:\s*[\d.]+\s+[\d.]+\s+([\d.]+)", out)
        alive = float(per_client.group(1)) * H2_CONNECTIONS if per_client else 0.0
        note = ""
        if alive > 1.5 * int(requests.group(2)) / elapsed:
            note = "the server closed h2load's connections before the run ended (h2load does not reconnect)"
        answered = sum(statuses.values())
        return Sample(ok / elapsed, unexpected, int(traffic.group(1)) / max(ok, 1), statuses, note, answered)

    def handshakes(self, port: int, path: str, seconds: int, *, resume: bool, response_bytes: int) -> Sample:
        """New TLS connections, one after another, each sending one request (`GET path HTTP/1.0`)
        and reading the answer: full handshakes, or each resuming the first session (TLS 1.3
        hands out its session after the handshake, so a client that reads nothing never resumes).
        s_time reports no status: every connection must have read exactly ``response_bytes``, the
        size of one expected answer to that request from that server."""
        command = [*self.pin, "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-www", path, "-time", str(seconds)]
        start = time.monotonic()
        out = _run([*command, "-reuse" if resume else "-new"], seconds)
        elapsed = time.monotonic() - start
        found = re.search(r"(\d+) connections in \d+ real seconds, (\d+) bytes read per connection", out)
        assert found and "ERROR" not in out, out
        total, per_connection = int(found.group(1)), int(found.group(2))
        unexpected = 0 if per_connection == response_bytes else total
        if not resume:
            return Sample(total / elapsed, unexpected, per_connection, {"full": total}, completed=total)
        # One mark per connection after the first: 'r' resumed its session, '*' a full handshake.
        marks = re.search(r"starting\s*\n([r*]*)", out)
        resumed = marks.group(1).count("r") if marks else 0
        return Sample(resumed / elapsed, unexpected + total - resumed, per_connection,
                      {"resumed": resumed, "full": total - resumed}, completed=total)  # fmt: skip


def _run(command: list[str], seconds: int) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout
