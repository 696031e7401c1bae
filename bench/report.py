"""results.json, the chart and the ratio table, from the runs' samples."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.measure import Series
from bench.scenarios import RATE_CASES, SCENARIOS, TARGETS

RATIOS = (("edge/stock", "stock"), ("edge/haproxy", "haproxy"), ("edge/direct", "direct"))


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
    }


def build(results: dict[str, dict[str, Series]], rates: dict[str, Series], meta: dict[str, Any]) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for s in SCENARIOS:
        targets = {t: summary(results[s.name][t]) for t in s.targets}
        edge = targets["edge"]["median"]
        ratios = {name: edge / targets[t]["median"] for name, t in RATIOS if t in targets and targets[t]["median"]}
        scenarios[s.name] = {"title": s.title, "unit": s.unit, "targets": targets, "ratios": ratios}
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


def write(data: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json.dumps(data, indent=2) + "\n")
    return results, chart(data, out / "results.png")


def chart(data: dict[str, Any], path: Path) -> Path:
    """One panel per scenario: each server's median, the bar's whisker from min to max."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    panels = list(data["scenarios"].items())
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(16, 7), squeeze=False)
    colours = {"edge": "tab:blue", "stock": "tab:orange", "haproxy": "tab:green", "direct": "tab:gray"}
    for ax, (_, s) in zip(axes.flat, panels, strict=False):
        names = list(s["targets"])
        med = [s["targets"][n]["median"] for n in names]
        err = [[m - s["targets"][n]["min"] for n, m in zip(names, med, strict=True)],
               [s["targets"][n]["max"] - m for n, m in zip(names, med, strict=True)]]  # fmt: skip
        ax.bar(names, med, yerr=err, capsize=3, color=[colours[n] for n in names])
        ax.set_title(s["title"], fontsize=9)
        ax.set_ylabel(s["unit"], fontsize=8)
        ax.tick_params(labelsize=8)
    spare = list(axes.flat)[len(panels) :]
    if spare:  # the rate limit as configured: what clients on one address get
        limits = list(data["rate_limit"].values())
        spare[0].bar([c["title"].split(",")[0] for c in limits], [c["median"] for c in limits], color="tab:red")
        spare[0].set_title(f"edge rate limit as configured: 2xx/s ({data['settings']['seconds']}s runs)", fontsize=9)
        spare[0].tick_params(labelsize=8)
    for ax in spare[1:]:
        ax.axis("off")
    fig.suptitle(f"make bench, {data['date']}: median of {data['settings']['repeats']} runs (whiskers: min, max)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
