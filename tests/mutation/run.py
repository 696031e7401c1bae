"""Run every mutant in tests/mutation/mutants.py against the fast test selection.

    venv/bin/python -m tests.mutation.run              # every mutant (takes minutes)
    venv/bin/python -m tests.mutation.run --list       # the mutants and whether each still applies
    venv/bin/python -m tests.mutation.run --only k-egress-port,redis-requirepass

Not part of the default pytest run. The working tree (tracked files plus new, unignored ones,
as they are on disk now) is copied once to <out>/base, the unmutated copy must pass, then each
mutant gets its own copy in <out>/<id>: one snippet replaced, the selection run with `-x -q`.
A snippet not found exactly once is reported as stale (the mutant list needs re-anchoring),
never as survived. One mutant at a time: the machine's cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
# The interpreter running this script (the project's venv) runs the tests in every copy.
PYTHON = Path(sys.executable)
# Fastest and most targeted first: with -x the first failure ends the run.
FAST = [
    "tests/test_network_policy.py",
    "tests/test_handover_kubernetes.py",
    "tests/test_handover_docker.py",
    "tests/test_deployed_settings.py",
    "tests/test_wiring.py",
    "tests/test_checkov_exceptions.py",
    "tests/test_configurable.py",
    "tests/test_stacks.py",
    "tests/test_generated_files.py",
    "tests/test_policy.py",
    "tests/test_config.py",
    "tests/test_render.py",
    "tests/test_rotation.py",
    "tests/test_cnpg_logins.py",
    "tests/test_rollout.py",
    "tests/test_docker_jobs.py",
    "tests/test_deploy_order.py",
    "tests/test_autoscaling.py",
    "tests/test_releases.py",
]
SERVERS = [
    "tests/test_servers.py",
    "tests/test_rotation_servers.py",
    "tests/test_redis_rotation_servers.py",
    "tests/test_cnpg_logins_servers.py",
    "tests/test_client_address.py",
    "tests/test_drain_front_servers.py",
]
TIMEOUT_SECONDS = 900


@dataclass
class Outcome:
    id: str
    area: str
    description: str
    status: str  # killed | survived | stale | timeout
    seconds: float
    detail: str


def tree_files(root: Path) -> list[Path]:
    """Tracked and new unignored files as they are on disk (deleted ones skipped)."""
    if not (root / ".git").exists():
        skip = {".git", "venv", "venv-checkov", "build", "__pycache__", ".pytest_cache"}
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and not skip & set(p.parts))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({Path(p) for p in listed.split("\0") if p and (root / p).is_file()})


def snapshot(root: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for rel in tree_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def occurrences(base: Path, mutant: Mutant) -> int:
    path = base / mutant.file
    return path.read_text().count(mutant.original) if path.is_file() else 0


def selection(mutant: Mutant | None) -> list[str]:
    servers = mutant is None or mutant.servers or mutant.file.startswith("components/conf/")
    # A mutant's own modules first (the most targeted: with -x its kill ends the run early); the
    # baseline runs every module some mutant adds, so a failing one is known before.
    extra = sorted({t for m in MUTANTS for t in m.tests}) if mutant is None else list(mutant.tests)
    return [t for t in extra if t not in FAST + SERVERS] + FAST + (SERVERS if servers else [])


def run_tests(
    workdir: Path, tests: list[str], *, stop_first: bool = True, deselect: tuple[str, ...] = ()
) -> tuple[int | None, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    options = ["-x"] if stop_first else []
    options += [f"--deselect={node}" for node in deselect]
    try:
        done = subprocess.run(
            [str(PYTHON), "-m", "pytest", *options, "-q", "-rfE", "-p", "no:cacheprovider", "-o", "addopts=", *tests],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return None, "timeout"
    return done.returncode, done.stdout + done.stderr


def failures(output: str) -> list[str]:
    """Node ids of the failed and erroring tests in pytest's short summary."""
    lines = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return [line.split(" ", 1)[1].split(" - ")[0] for line in lines]


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1] if tail else ""


def run_mutant(base: Path, out: Path, mutant: Mutant, keep: bool, deselect: tuple[str, ...]) -> Outcome:
    count = occurrences(base, mutant)
    if count != 1:
        return Outcome(mutant.id, mutant.area, mutant.description, "stale", 0.0, f"snippet found {count} times")
    work = out / mutant.id
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work, symlinks=True)
    path = work / mutant.file
    path.write_text(path.read_text().replace(mutant.original, mutant.mutated))
    started = time.monotonic()
    code, output = run_tests(work, selection(mutant), deselect=deselect)
    seconds = time.monotonic() - started
    (out / f"{mutant.id}.log").write_text(output)
    if not keep:
        shutil.rmtree(work)
    if code is None:
        return Outcome(mutant.id, mutant.area, mutant.description, "timeout", seconds, "no result in time")
    if code == 0:
        return Outcome(mutant.id, mutant.area, mutant.description, "survived", seconds, "all selected tests passed")
    if code == 5:
        return Outcome(mutant.id, mutant.area, mutant.description, "killed", seconds, "no tests collected")
    return Outcome(mutant.id, mutant.area, mutant.description, "killed", seconds, first_failure(output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mutants"), help="scratch directory (outside the repo)")
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--list", action="store_true", help="list mutants and whether each applies, then stop")
    parser.add_argument("--keep", action="store_true", help="keep each mutant's copy")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated copy first")
    parser.add_argument(
        "--deselect-failing",
        action="store_true",
        help="if the unmutated copy fails some tests, leave those out instead of stopping",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out == ROOT or ROOT in out.parents:
        parser.error("--out must be outside the repository")
    ids = [m.id for m in MUTANTS]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        parser.error(f"duplicate mutant ids: {sorted(duplicates)}")
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(ids)
    if unknown:
        parser.error(f"unknown mutant ids: {sorted(unknown)}")

    out.mkdir(parents=True, exist_ok=True)
    base = out / "base"
    snapshot(ROOT, base)
    stale = [m for m in chosen if occurrences(base, m) != 1]
    if args.list:
        for m in chosen:
            state = "STALE" if m in stale else "ok"
            print(f"{m.id:28} {m.area:9} {state:5} {m.file}: {m.description}")
        print(f"{len(chosen)} mutants, {len(stale)} stale")
        return 0
    for m in stale:
        print(f"STALE {m.id}: snippet in {m.file} found {occurrences(base, m)} times (re-anchor it)", flush=True)

    deselect: tuple[str, ...] = ()
    if not args.skip_baseline:
        print("baseline: the unmutated copy must pass ...", flush=True)
        code, output = run_tests(base, selection(None), stop_first=False)
        (out / "baseline.log").write_text(output)
        if code != 0:
            deselect = tuple(failures(output))
            if not deselect or not args.deselect_failing:
                print(f"baseline FAILED ({first_failure(output)}); see {out / 'baseline.log'}", flush=True)
                return 2
            # Others' work in progress: such a test can kill no mutant, so it is left out, loudly.
            for node in deselect:
                print(f"BASELINE FAILS, deselected: {node}", flush=True)
        else:
            print("baseline passed", flush=True)

    outcomes: list[Outcome] = []
    for n, mutant in enumerate(chosen, 1):
        outcome = run_mutant(base, out, mutant, args.keep, deselect)
        outcomes.append(outcome)
        line = f"[{n}/{len(chosen)}] {outcome.status:8} {mutant.id:28} {outcome.seconds:5.1f}s {outcome.detail}"
        print(line, flush=True)

    applied = [o for o in outcomes if o.status != "stale"]
    killed = [o for o in applied if o.status in ("killed", "timeout")]
    survivors = [o for o in applied if o.status == "survived"]
    stale_ones = [o for o in outcomes if o.status == "stale"]
    print()
    rate = 100 * len(killed) / len(applied) if applied else 0.0
    print(f"kill rate: {len(killed)}/{len(applied)} ({rate:.0f}%); stale: {len(stale_ones)}")
    for node in deselect:
        print(f"NOTE: deselected (failing without any mutant): {node}")
    for o in survivors:
        print(f"SURVIVED {o.id} [{o.area}]: {o.description}")
    for o in stale_ones:
        print(f"STALE    {o.id}: {o.detail}")
    (out / "report.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    print(f"report: {out / 'report.json'}; logs: {out}/<id>.log")
    return 1 if survivors or stale_ones else 0


if __name__ == "__main__":
    sys.exit(main())
