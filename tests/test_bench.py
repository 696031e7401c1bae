"""`make bench` in a tiny configuration (a second per run, one pass), so it cannot rot.

It runs what `make bench` runs (python -m bench) against the real servers and load generators,
then checks what it measured is what it says: every scenario against every server, each answer
of the expected kind (the edge passes the precompressed asset through, the rate limit holds),
the exit status agreeing with the responses it counted, the chart a PNG. No rate is asserted: on
a shared CI machine a second's figures say nothing; `make bench` is for those.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rendering import tool

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        message = "matplotlib is not installed (requirements-dev.txt pins it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    env = {**os.environ, "NGINX": tool("nginx", "/usr/sbin/nginx"), "HAPROXY": tool("haproxy", "/usr/sbin/haproxy")}
    for name in ("wrk", "h2load", "openssl", "taskset"):
        tool(name)
    _matplotlib()
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench", "--seconds", str(SECONDS), "--repeats", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done, json.loads((out / "results.json").read_text()), out


def test_every_scenario_ran_against_every_server_and_the_table_prints_the_ratios(bench: Any) -> None:
    done, data, _ = bench
    header = next(line for line in done.stdout.splitlines() if line.startswith("scenario"))
    assert header.split()[-3:] == ["edge/stock", "edge/haproxy", "edge/direct"]
    for name, scenario in data["scenarios"].items():
        expected = {"edge", "stock", "haproxy"} | (
            {"direct"} if name.startswith(("api", "asset")) and "h2" not in name else set()
        )
        assert set(scenario["targets"]) == expected, name
        for target, t in scenario["targets"].items():
            assert len(t["runs"]) == 1 and t["median"] > 0, (name, target, t)
            assert t["probe"]["status"] == 200, (name, target, t)
        assert set(scenario["ratios"]) == {f"edge/{t}" for t in expected - {"edge"}}
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"{name} "))
        assert len(re.findall(r"\d+\.\d\d", row)) == len(expected) - 1, row


def test_the_exit_status_names_exactly_the_runs_with_unexpected_responses(bench: Any) -> None:
    done, data, _ = bench
    bad = {f"{n}/{t}" for n, s in data["scenarios"].items() for t, v in s["targets"].items() if v["unexpected"]}
    bad |= {n for n, c in data["rate_limit"].items() if c["unexpected"]}
    assert done.returncode == (1 if bad else 0)
    named = set(re.findall(r"^  (\S+): \d+$", done.stderr, re.M))
    assert named == bad, done.stderr
    # Without a limit of their own, the other servers answer every request with a 200.
    assert not {b for b in bad if b.split("/")[-1] in ("stock", "haproxy", "direct")}, bad


def test_the_edge_passes_the_precompressed_asset_through(bench: Any) -> None:
    _, data, _ = bench
    gzip, identity = data["scenarios"]["asset_gzip"]["targets"], data["scenarios"]["asset_identity"]["targets"]
    assert gzip["direct"]["probe"]["content_encoding"] == "gzip"  # the web image's gzip_static
    assert gzip["edge"]["probe"]["content_encoding"] == "gzip"
    assert gzip["edge"]["probe"]["body_bytes"] == gzip["direct"]["probe"]["body_bytes"]
    assert gzip["edge"]["probe"]["body_bytes"] < identity["edge"]["probe"]["body_bytes"] / 2
    assert identity["edge"]["probe"]["content_encoding"] == "identity"


def test_clients_on_one_address_get_no_more_than_the_configured_rate(bench: Any) -> None:
    _, data, _ = bench
    directive = data["rate_limit_directive"]
    rate = int(re.search(r"rate=(\d+)r/s", directive).group(1))  # type: ignore[union-attr]
    burst = int(re.search(r"burst=(\d+)", directive).group(1))  # type: ignore[union-attr]
    # wrk's run lasts a little longer than asked: one more second of allowance.
    allowed = burst + rate * (SECONDS + 1) + 1
    for name, case in data["rate_limit"].items():
        (statuses,) = case["statuses"]
        assert set(statuses) <= {"200", "429"}, (name, statuses)
        assert 1 <= statuses.get("200", 0) <= allowed, (name, statuses, directive)


def test_the_chart_is_a_png(bench: Any) -> None:
    _, _, out = bench
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
