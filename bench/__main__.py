"""python -m bench [--seconds N] [--repeats N] [--out DIR]: run the benchmark, print the ratios.

Exits 1 when a response was not what the scenario expects (any status but 200, and 429 in the
rate-limit runs; a failed request or handshake): that run measured something else."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import cpu, load, measure, report, stack

# NGINX, HAPROXY: other binaries than Debian's (as the tests' tool() reads them).
SERVERS = {
    name: os.environ.get(name.upper()) or shutil.which(name) or f"/usr/sbin/{name}" for name in ("nginx", "haproxy")
}


def pin() -> tuple[list[str], dict[str, object]]:
    """Servers (this process and its children) on one core, the load generator on another,
    where there are two; otherwise everything shares what there is, and the results say so."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [], {"cpus": len(cpus), "pinned": False}
    os.sched_setaffinity(0, {cpus[0]})
    return ["taskset", "-c", str(cpus[1])], {"cpus": len(cpus), "pinned": True, "servers_cpu": cpus[0],
                                             "load_cpu": cpus[1]}  # fmt: skip


def versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    return {"nginx": first_line([SERVERS["nginx"], "-v"]), "haproxy": first_line([SERVERS["haproxy"], "-v"]),
            "wrk": first_line(["wrk", "-v"]), "h2load": first_line(["h2load", "--version"]),
            "openssl": first_line(["openssl", "version"]), "python": platform.python_version()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=int, default=3, help="length of each run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over every scenario (default 3)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()  # others' jobs on the same machine show here
    with tempfile.TemporaryDirectory(prefix="aixsss-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as nobody under a root master and read the asset
        pinning, machine = pin()  # before any server starts: they inherit this process's core
        with stack.started(work, SERVERS["nginx"], SERVERS["haproxy"]) as servers:
            loader = load.Loader(pinning, work)
            print(f"bench: {args.repeats} x {args.seconds}s per run; servers on loopback ({machine})", flush=True)
            results, rates = measure.run(loader, servers, args.seconds, args.repeats)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            **machine,
            "kernel": platform.release(),
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            **versions(),
        },
        "settings": {
            "seconds": args.seconds,
            "repeats": args.repeats,
            "wrk_connections": load.WRK_CONNECTIONS,
            "h2_connections": load.H2_CONNECTIONS,
            "h2_streams": load.H2_STREAMS,
            "cpu": "utime + stime of the proxy's processes (bench/cpu.py) during each run, per response",
            "cpu_clock_ticks_per_second": cpu.CLOCK_TICKS,
        },
        "edge_edits": [servers.rate_edit],
        "rate_limit_directive": servers.rate_limit,
    }
    data = report.build(results, rates, meta)
    results_path, chart_path = report.write(data, args.out)
    print(report.table(data))
    print()
    print(report.cpu_table(data))
    print(f"\nthroughput edge: {servers.rate_edit} (its only edit beyond relocation)")
    print(f"wrote {results_path} and {chart_path}")
    for note in report.notes(data):
        print(f"NOTE {note}")
    bad = report.unexpected(data)
    if bad:
        print("UNEXPECTED RESPONSES (those runs measured something else):\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
