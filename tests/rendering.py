"""Rendered stacks shared by the render, judge and real-server tests (each rendered once)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from harness import ONE_HOST

from offline.render import Rendered, render

CASES = [(s, t) for s in ("dev", "staging", "prod") for t in ("docker", "kubernetes")]
# prod runs two edges, three PostgreSQL instances and an HA Redis set on Kubernetes; one Docker host
# runs one of each.
SETTINGS = {("prod", "docker"): {key: str(value).lower() for key, value in ONE_HOST.items()}}
_cache: dict[tuple[str, str, bool], Rendered] = {}


def rendered(tmp_root: Path, stack: str, target: str, *, show_secrets: bool = False) -> Rendered:
    key = (stack, target, show_secrets)
    if key not in _cache:
        out = tmp_root / f"{target}{'-shown' if show_secrets else ''}"
        _cache[key] = render(stack, target, out, show_secrets=show_secrets, settings=SETTINGS.get((stack, target)))
    return _cache[key]


def config_file(result: Rendered, workload: str, name: str) -> Path:
    """A generated file by its workload (a Kubernetes name or a Docker container name) and name."""
    found = [
        p for p in (result.out / "config").rglob(name) if p.relative_to(result.out / "config").parts[0] == workload
    ]
    assert len(found) == 1, f"expected one {name} for {workload}, found {found}"
    return found[0]


def tool(name: str, *candidates: str | Path) -> str:
    """The path of a judge or server binary. In CI a missing one fails the test; elsewhere it
    skips with the reason (CI installs every one of them: .ci/run)."""
    from_env = os.environ.get(name.upper().replace("-", "_"))
    for candidate in (from_env, *candidates, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run this test")
    pytest.skip(message)
