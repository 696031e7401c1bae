"""The render's state: what the providers generated, kept from one `make render` to the next.

A deployed stack's state keeps every password, key and certificate (with its validity start)
until an input that forces a replacement changes; offline.engine does the same given the prior
run's registrations (``run_program(prior=...)``), and keeps the stand-ins of secure config
values it could not decrypt while their ciphertext is unchanged. This module stores them per stack and target
in ``<out>/.state/<stack>.<target>.json``: beside the rendered ``<out>/<stack>/``, not in it,
because that directory is written afresh on every render (both targets render into it) and is
what is reviewed, diffed or handed to GitOps, while this file holds every generated secret in
plain text whatever --show-secrets says. Hence the file is 0600 in a 0700 directory whose own
`.gitignore` keeps it out of git wherever --out points. Deleting it starts afresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from offline.engine import Deployment, Registration, reveal

VERSION = 1


class RenderStateError(Exception):
    pass


def path(out_root: Path, stack: str, target: str) -> Path:
    return out_root / ".state" / f"{stack}.{target}.json"


def load(file: Path, stack: str) -> Deployment | None:
    """The prior render's registrations, or None before the first render."""
    if not file.exists():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}, not {VERSION}")
        registrations = [Registration(**r) for r in data["resources"]]
        stand_ins = {key: (what, value) for key, (what, value) in data["standIns"].items()}
        return Deployment(stack, {}, registrations, {}, list(data["generatedSecrets"]), stand_in_values=stand_ins)
    except (ValueError, KeyError, TypeError) as exc:
        raise RenderStateError(f"{file}: not a render state ({exc}); delete it to render afresh") from exc


def _strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {s for v in value.values() for s in _strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _strings(v)}
    return {value} if isinstance(value, str) else set()


def save(file: Path, deployment: Deployment) -> None:
    """Write ``deployment``'s registrations as the state the next render starts from."""
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    file.parent.chmod(0o700)
    (file.parent / ".gitignore").write_text("# render state: generated secrets in plain text\n*\n")
    registrations = sorted(deployment.registrations, key=lambda r: r.urn)
    # Only the secrets still held: a replaced resource's old values need no redacting any more.
    held = _strings([reveal(r.outputs) for r in registrations])
    data = {
        "version": VERSION,
        "resources": [dataclasses.asdict(r) for r in registrations],
        "generatedSecrets": sorted({s for s in deployment.generated_secrets if s in held}),
        # Stand-ins for secure config values render could not decrypt (offline.stack_file).
        "standIns": deployment.stand_in_values,
    }
    partial = file.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # also when an earlier, interrupted write left it wider
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(partial, file)
