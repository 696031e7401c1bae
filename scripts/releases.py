"""`make release` and `make rollback`: the release history in Pulumi.<stack>.yaml, edited with the
Pulumi CLI (``$PULUMI``, default ``pulumi``), so the stack file stays the one record.

    releases.py record --stack prod      after `make up`: append the deploy the `releases` output
                                         shows to aixsss:releases (the oldest beyond 20 dropped),
                                         then reset release.backwardCompatible to its default (no)
    releases.py rollback --stack prod --to r7
                                         check the rollback with the config model first (nothing is
                                         changed when it is refused), then set release.rollbackTo;
                                         `--to ''` removes it (roll forward to the configured release)

It reads the stack file itself (offline.engine.stack_config, as `make render` does) and checks
with the program's own model (components/config), so a refusal here is the one `pulumi up`
would print.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import PROJECT, check_stack_config, format_problems  # noqa: E402
from components.config.releases import MAX_RELEASES, Release, parse_history  # noqa: E402
from offline.engine import stack_config  # noqa: E402


class Refused(Exception):
    """Why nothing was changed."""


def _pulumi() -> str:
    return os.environ.get("PULUMI", "pulumi")


def _run(args: list[str], cwd: Path, capture: bool = False) -> str:
    done = subprocess.run([_pulumi(), *args], cwd=cwd, check=True, capture_output=capture, text=True)
    return done.stdout if capture else ""


def record_commands(stack: str, flat: dict[str, Any], output: dict[str, Any]) -> list[list[str]]:
    """The `pulumi config` commands that record the deploy ``output`` (the `releases` stack
    output) in the stack's history; [] when there is nothing new to record."""
    if output.get("rollbackFrom"):
        return []  # a rollback runs a recorded release: nothing new
    entry = next((e for e in reversed(output.get("history") or []) if e.get("name") == output.get("deployed")), None)
    if entry is None:
        raise Refused(f"the releases output has no entry for the deployed release {output.get('deployed')!r}")
    if not entry.get("migrationHead"):
        raise Refused(
            f"release {entry['name']} has no migration head: declare the newest migration in its api image with "
            f"`pulumi config set {PROJECT}:release.migrationHead <name>` and deploy again"
        )
    release = Release(
        name=entry["name"],
        images={n: str(entry["images"][n]) for n in ("api", "worker", "web")},
        migration_head=entry["migrationHead"],
        backward_compatible=bool(entry.get("backwardCompatible")),
        new_migrations=tuple(entry.get("newMigrations") or ()),
    )
    lines = [str(line) for line in flat.get("releases") or []]
    recorded = {r.name: r for r in parse_history(lines)}
    if release.name in recorded:
        if recorded[release.name].images != release.images:
            raise Refused(
                f"release {release.name} is recorded with other images: give the new one a name of its own "
                f"(`pulumi config set {PROJECT}:release.name <name>`) and deploy again"
            )
        return []
    new = [*lines, release.line()][-MAX_RELEASES:]
    commands = [
        ["config", "set", "--stack", stack, "--path", f"{PROJECT}:releases[{i}]", line]
        for i, line in enumerate(new)
        if i >= len(lines) or lines[i] != line
    ]
    # A declaration belongs to the release it was made for: the next one is not compatible
    # unless someone says so again.
    if flat.get("release.backwardCompatible") in (True, "true"):
        commands.append(["config", "rm", "--stack", stack, f"{PROJECT}:release.backwardCompatible"])
    return commands


def rollback_commands(stack: str, flat: dict[str, Any], to: str) -> list[list[str]]:
    """The `pulumi config` command that selects release ``to`` (none: roll forward); Refused with
    the model's own report when the rollback is not allowed."""
    key = f"{PROJECT}:release.rollbackTo"
    if not to:
        return [["config", "rm", "--stack", stack, key]]
    _, problems = check_stack_config({**flat, "release.rollbackTo": to}, stack)
    if problems:
        raise Refused(format_problems(problems, stack).replace("nothing was deployed", "nothing was changed"))
    return [["config", "set", "--stack", stack, key, to]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("record", "rollback"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--to", default=None, help="rollback: a release of aixsss:releases; '' to roll forward")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="where Pulumi.yaml and the stack file are")
    args = parser.parse_args(argv)
    flat = stack_config(args.stack, args.project_dir)
    try:
        if args.action == "record":
            command = ["stack", "output", "--stack", args.stack, "--json", "releases"]
            output = json.loads(_run(command, args.project_dir, capture=True))
            commands = record_commands(args.stack, flat, output)
        else:
            if args.to is None:
                parser.error("rollback needs --to <release> (or --to '' to roll forward)")
            commands = rollback_commands(args.stack, flat, args.to)
    except Refused as exc:
        print(f"{args.action} refused: {exc}", file=sys.stderr)
        return 1
    for command in commands:
        _run(command, args.project_dir)
    if not commands:
        print(f"nothing to {args.action}: the stack file already says so")
    return 0


if __name__ == "__main__":
    sys.exit(main())
