"""results.json, the chart and the ratio table, from the runs' samples."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.measure import Series
from bench.scenarios import RATE_CASES, SCENARIOS, TARGETS

RATIOS = (("edge/stock", "stock"), ("edge/haproxy", "haproxy"), ("edge/direct", "direct"))
# CPU per request the other way round: above 1, the edge spends less than that proxy.
CPU_RATIOS = (("haproxy/edge", "haproxy"), ("stock/edge", "stock"))
PROXIES = ("edge", "stock", "haproxy")  # the targets whose CPU is measured ("direct" is no proxy)
COLOURS = {"edge": "tab:blue", "stock": "tab:orange", "haproxy": "tab:green", "direct": "tab:gray"}


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _cpu(series: Series) -> dict[str, Any]:
    """Microseconds per response of each run that has them, with what they divide."""
    measured = [(s.cpu_us, s) for s in series.samples if s.cpu_us is not None]
    return {
        **_spread([us for us, _ in measured]),
        "cpu_seconds": [s.cpu_seconds for _, s in measured],
        "window_seconds": [s.cpu_window_seconds for _, s in measured],
        "completed": [s.completed for _, s in measured],
    }


def summary(series: Series) -> dict[str, Any]:
    rates = [s.rate for s in series.samples]
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "runs": rates,
        "unexpected": sum(s.unexpected for s in series.samples),
        "bytes_per_response": statistics.median(s.bytes_per_response for s in series.samples),
        "statuses": [s.statuses for s in series.samples],
        "notes": sorted({s.note for s in series.samples if s.note}),
        **({"probe": series.probe} if series.probe else {}),
        # The server's own user + system CPU per response (per connection in the handshake runs).
        **({"cpu_us_per_request": _cpu(series)} if any(s.cpu_us is not None for s in series.samples) else {}),
    }


def _cpu_ratios(per_target: dict[str, Series]) -> dict[str, Any]:
    """Each proxy's CPU per request over the edge's: of the medians, and of each pass's runs
    (seconds apart, so a busy moment weighs on both alike)."""
    edge = [s.cpu_us for s in per_target["edge"].samples]
    ratios: dict[str, Any] = {}
    for name, target in CPU_RATIOS:
        other = [s.cpu_us for s in per_target[target].samples]
        pairs = [(o, e) for o, e in zip(other, edge, strict=True) if o and e]
        if pairs:
            of_medians = statistics.median(o for o, _ in pairs) / statistics.median(e for _, e in pairs)
            ratios[name] = {"of_medians": of_medians, "per_pass": [o / e for o, e in pairs]}
    return ratios


def build(results: dict[str, dict[str, Series]], rates: dict[str, Series], meta: dict[str, Any]) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for s in SCENARIOS:
        targets = {t: summary(results[s.name][t]) for t in s.targets}
        edge = targets["edge"]["median"]
        ratios = {name: edge / targets[t]["median"] for name, t in RATIOS if t in targets and targets[t]["median"]}
        scenarios[s.name] = {"title": s.title, "unit": s.unit, "targets": targets, "ratios": ratios,
                             "cpu_ratios": _cpu_ratios(results[s.name])}  # fmt: skip
    limits = {c.name: {"title": c.title, "connections": c.connections, **summary(rates[c.name])} for c in RATE_CASES}
    return {**meta, "scenarios": scenarios, "rate_limit": limits}


def unexpected(data: dict[str, Any]) -> list[str]:
    """Every run whose responses were not all as expected, by scenario and server."""
    bad = [f"{name}/{target}: {t['unexpected']}" for name, s in data["scenarios"].items()
           for target, t in s["targets"].items() if t["unexpected"]]  # fmt: skip
    return bad + [f"{name}: {c['unexpected']}" for name, c in data["rate_limit"].items() if c["unexpected"]]


def notes(data: dict[str, Any]) -> list[str]:
    return [f"{name}/{target}: {note}" for name, s in data["scenarios"].items()
            for target, t in s["targets"].items() for note in t["notes"]]  # fmt: skip


def table(data: dict[str, Any]) -> str:
    head = f"{'scenario':16}{'unit':>13}{'edge':>9}{'stock':>9}{'haproxy':>9}{'direct':>9}"
    head += "".join(f"{name:>14}" for name, _ in RATIOS)
    lines = [head]
    for name, s in data["scenarios"].items():
        t = s["targets"]
        cells = "".join(f"{t[x]['median']:9.0f}" if x in t else f"{'-':>9}" for x in TARGETS)
        ratios = "".join(f"{s['ratios'][r]:14.2f}" if r in s["ratios"] else f"{'-':>14}" for r, _ in RATIOS)
        lines.append(f"{name:16}{s['unit']:>13}{cells}{ratios}")
    lines.append("")
    lines.append(f"rate limit (edge as configured: {data['rate_limit_directive']}):")
    for c in data["rate_limit"].values():
        lines.append(f"  {c['title']:32} {c['median']:8.1f} 2xx/s   statuses per run: {c['statuses']}")
    return "\n".join(lines)


def cpu_table(data: dict[str, Any]) -> str:
    """The proxies' CPU per request: medians in microseconds, and the ratios of the medians with
    the range of the passes' own ratios."""
    lines = [
        "CPU per request (lower is better): us of user + system CPU of the proxy's own processes per response "
        "(per connection in the tls rows);",
        "ratios above 1: the edge spends less than that proxy ([min-max] of the passes' own ratios)",
        f"{'scenario':16}{'edge':>9}{'stock':>9}{'haproxy':>9}" + "".join(f"{name:>26}" for name, _ in CPU_RATIOS),
    ]
    for name, s in data["scenarios"].items():
        t = s["targets"]
        cells = "".join(f"{t[x]['cpu_us_per_request']['median']:9.1f}" if "cpu_us_per_request" in t[x] else f"{'-':>9}"
                        for x in PROXIES)  # fmt: skip
        ratios = ""
        for r, _ in CPU_RATIOS:
            found = s["cpu_ratios"].get(r)
            ratios += (f"{found['of_medians']:9.2f} [{min(found['per_pass']):.2f}-{max(found['per_pass']):.2f}]"
                       .rjust(26) if found else f"{'-':>26}")  # fmt: skip
        lines.append(f"{name:16}{cells}{ratios}")
    return "\n".join(lines)


def write(data: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json.dumps(data, indent=2) + "\n")
    return results, chart(data, out / "results.png")


def chart(data: dict[str, Any], path: Path) -> Path:
    """One panel per scenario: each server's median, the bar's whisker from min to max; below
    them, the proxies' CPU per request in every scenario."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    panels = list(data["scenarios"].items())
    columns = (len(panels) + 1) // 2
    fig = plt.figure(figsize=(16, 10.5))
    grid = fig.add_gridspec(3, columns)
    axes = [fig.add_subplot(grid[row, column]) for row in range(2) for column in range(columns)]
    for ax, (_, s) in zip(axes, panels, strict=False):
        names = list(s["targets"])
        med = [s["targets"][n]["median"] for n in names]
        err = [[m - s["targets"][n]["min"] for n, m in zip(names, med, strict=True)],
               [s["targets"][n]["max"] - m for n, m in zip(names, med, strict=True)]]  # fmt: skip
        ax.bar(names, med, yerr=err, capsize=3, color=[COLOURS[n] for n in names])
        ax.set_title(s["title"], fontsize=9)
        ax.set_ylabel(s["unit"], fontsize=8)
        ax.tick_params(labelsize=8)
    spare = axes[len(panels) :]
    if spare:  # the rate limit as configured: what clients on one address get
        limits = list(data["rate_limit"].values())
        spare[0].bar([c["title"].split(",")[0] for c in limits], [c["median"] for c in limits], color="tab:red")
        spare[0].set_title(f"edge rate limit as configured: 2xx/s ({data['settings']['seconds']}s runs)", fontsize=9)
        spare[0].tick_params(labelsize=8)
    for ax in spare[1:]:
        ax.axis("off")
    _cpu_panel(fig.add_subplot(grid[2, :]), panels)
    fig.suptitle(f"make bench, {data['date']}: median of {data['settings']['repeats']} runs (whiskers: min, max)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _cpu_panel(ax: Any, panels: list[tuple[str, dict[str, Any]]]) -> None:
    """Grouped bars, a group per scenario; a log scale, as a handshake costs a hundred API calls."""
    width = 0.8 / len(PROXIES)
    for i, proxy in enumerate(PROXIES):
        found = [(x, s["targets"][proxy]["cpu_us_per_request"]) for x, (_, s) in enumerate(panels)
                 if "cpu_us_per_request" in s["targets"][proxy]]  # fmt: skip
        if not found:
            continue
        xs = [x + (i - (len(PROXIES) - 1) / 2) * width for x, _ in found]
        med = [c["median"] for _, c in found]
        err = [[m - c["min"] for m, (_, c) in zip(med, found, strict=True)],
               [c["max"] - m for m, (_, c) in zip(med, found, strict=True)]]  # fmt: skip
        ax.bar(xs, med, width, yerr=err, capsize=2, color=COLOURS[proxy], label=proxy)
    ax.set_yscale("log")
    ax.set_xticks(range(len(panels)), [name for name, _ in panels], fontsize=8)
    ax.set_ylabel("us per request (connection)", fontsize=8)
    ax.set_title("CPU per request of the proxy's own processes, user + system (lower is better; log scale)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)
