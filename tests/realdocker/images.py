"""Locally built stand-ins for every image the stacks reference.

No image registry is reachable from the test machines, so each repository the program names
maps to a recipe under ``standins/``: a Dockerfile built on a Debian base made here with
debootstrap. The built image is tagged with exactly the references the stack uses, so the
program's plan applies unchanged on a real daemon.

Both the bases and the built images are cached in ``cache_dir`` as tarballs named by a hash of
their inputs (the recipe's files, its target, its base), so a warm run only loads tarballs, and
a run against a daemon that already holds the right images does nothing but tag.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "standins"
MIRROR = "http://deb.debian.org/debian"
KEY_LABEL = "org.aixsss.standin.key"
# Bump to invalidate every cached base and image (a change in how they are made).
FORMAT = "2"
# The build's RUN steps reach the npm registry through this machine's TLS proxy, whose CA is in
# the host bundle; it is staged into the build context (never into a final image).
BUILD_CA = Path(os.environ.get("AIXSSS_BUILD_CA", "/etc/ssl/certs/ca-certificates.crt"))
# Written into every base: the mirror may serve a frozen snapshot whose Release files have
# expired by this machine's clock (sid's carry Valid-Until); apt would refuse them.
APT_CONF = 'Acquire::Check-Valid-Until "false";\n'
# What the official debian images set and an imported tarball lacks: without it, a container's
# PATH is empty and `ENV PATH=$PATH:...` in a recipe yields a broken one.
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


@dataclass(frozen=True)
class Recipe:
    directory: str  # under standins/
    suite: str | None = "bookworm"  # the debootstrap base passed as build-arg BASE
    target: str | None = None  # a stage of a multi-target Dockerfile
    parent: str | None = None  # a repository whose stand-in is BASE instead of a suite

    @property
    def slug(self) -> str:
        return self.directory + (f"-{self.target}" if self.target else "")


RECIPES: dict[str, Recipe] = {
    "postgres": Recipe("postgres", target="postgres"),
    # What images/postgres/Dockerfile builds on the Docker host (the applier builds nothing:
    # APP_OVERRIDES gives this name): the postgres stand-in plus Debian's pgBackRest.
    "aixsss/postgres-pgbackrest": Recipe("postgres", target="pgbackrest"),
    "redis": Recipe("redis"),
    # sid: the edge uses `resolve` on upstream servers (nginx >= 1.27.3).
    "nginxinc/nginx-unprivileged": Recipe("nginx", suite="sid"),
    # Silo, the MinIO fork the program deploys (APP.md), and its client.
    "pgsty/silo": Recipe("silo", target="server"),
    "pgsty/mc": Recipe("silo", target="mc"),
    # sid: bookworm has no lego package.
    "goacme/lego": Recipe("lego", suite="sid"),
    # The application publishes no image; the program builds these from app.source
    # (images/app/Dockerfile) or deploys given references. The tier gives these names
    # (test_stacks_on_docker.py APP_IMAGES), whose stand-ins keep that Dockerfile's contract.
    "ghcr.io/aixsss/api": Recipe("node", target="api"),
    "ghcr.io/aixsss/worker": Recipe("node", target="worker"),
    # The real web image is built on nginx-unprivileged; so is its stand-in.
    "ghcr.io/aixsss/web": Recipe("web", suite=None, parent="nginxinc/nginx-unprivileged"),
    # The exporters beside PostgreSQL, Redis and the edge (monitoring.enabled): Debian's builds.
    "quay.io/prometheuscommunity/postgres-exporter": Recipe("exporters", target="postgres-exporter"),
    "oliver006/redis_exporter": Recipe("exporters", target="redis-exporter"),
    "nginx/nginx-prometheus-exporter": Recipe("exporters", target="nginx-exporter"),
    "ghcr.io/google/mtail": Recipe("exporters", target="mtail"),
    "woblerr/pgbackrest_exporter": Recipe("exporters", target="pgbackrest-exporter"),
}


# The application publishes no image, and pulumi-docker's Image (what the program builds api,
# worker and web with when app.source is set, and PostgreSQL with pgBackRest) is not applied
# here: the tier deploys given references instead, which the recipes above serve. Pinned, as
# staging and prod require.
APP_OVERRIDES: dict[str, str] = {
    "app.source": "",
    "images.api": "ghcr.io/aixsss/api:1.4.0",
    "images.worker": "ghcr.io/aixsss/worker:1.4.0",
    "images.web": "ghcr.io/aixsss/web:1.4.0",
    "images.postgresPgbackrest": "aixsss/postgres-pgbackrest:16",
}


def repository(reference: str) -> str:
    """``name[:tag][@digest]`` without tag and digest (a registry port's colon stays)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


class Docker:
    """The docker CLI against one daemon."""

    def __init__(self, host: str) -> None:
        self.env = {**os.environ, "DOCKER_HOST": host}

    def run(self, *args: str) -> str:
        done = subprocess.run(["docker", *args], env=self.env, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def stream(self, *args: str) -> None:
        # Long builds show their progress instead of hiding it in a captured buffer.
        subprocess.run(["docker", *args], env=self.env, check=True)

    def label(self, image: str) -> str | None:
        """The image's stand-in key, or None when the daemon does not hold ``image``."""
        try:
            return self.run("image", "inspect", "--format", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}', image)
        except subprocess.CalledProcessError:
            return None

    def has(self, image: str) -> bool:
        return self.label(image) is not None


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        # Length-prefixed so that no two part lists hash alike.
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _files_digest(directory: Path) -> list[str | bytes]:
    parts: list[str | bytes] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        # The mode matters: an entrypoint that lost its x bit is another image.
        parts += [rel, oct(path.stat().st_mode & 0o777), path.read_bytes()]
    return parts


def base_key(suite: str) -> str:
    return _digest(FORMAT, "debootstrap --variant=minbase", suite, MIRROR, APT_CONF, *BASE_CHANGES)


def recipe_key(repo: str) -> str:
    recipe = RECIPES[repo]
    upstream = base_key(recipe.suite) if recipe.suite else recipe_key(recipe.parent or "")
    return _digest(FORMAT, recipe.directory, recipe.target or "", upstream, *_files_digest(STANDINS / recipe.directory))


def _cached(path: Path, produce: Callable[[Path], None]) -> Path:
    """``path``, made by ``produce`` under a temporary name first: a crash leaves no half file.
    Tarballs of the same name under another key (``<name>-<64 hex>.tar``) are evicted: their
    inputs changed, and the cache would otherwise grow by an image on every change."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name[: -len("-.tar") - 64]
    for stale in path.parent.glob(f"{name}-*.tar"):
        if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{64}}\.tar", stale.name) and stale != path:
            stale.unlink()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        produce(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _debootstrap(suite: str, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"standin-rootfs-{suite}-") as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", suite, rootfs, MIRROR], check=True, stdout=subprocess.DEVNULL
        )
        Path(rootfs, "etc/apt/apt.conf.d/99aixsss-standin").write_text(APT_CONF)
        # The temporary directory is 0700, and it becomes the image's `/`: non-root users could
        # not reach anything. debootstrap also leaves the base's .deb files behind.
        Path(rootfs).chmod(0o755)
        for deb in Path(rootfs, "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        subprocess.run(["tar", "-C", rootfs, "-cf", str(out), "."], check=True)


def ensure_base(docker: Docker, suite: str, cache_dir: Path) -> str:
    key = base_key(suite)
    tag = f"aixsss-standin/debian:{suite}-{key[:16]}"
    if not docker.has(tag):
        tarball = _cached(cache_dir / f"base-{suite}-{key}.tar", lambda out: _debootstrap(suite, out))
        changes = [arg for change in (*BASE_CHANGES, f"LABEL {KEY_LABEL}={key}") for arg in ("--change", change)]
        docker.run("import", *changes, str(tarball), tag)
    return tag


def _build(docker: Docker, repo: str, key: str, base: str, tag: str) -> None:
    recipe = RECIPES[repo]
    with tempfile.TemporaryDirectory(prefix="standin-context-") as tmp:
        context = Path(tmp) / recipe.directory
        shutil.copytree(STANDINS / recipe.directory, context)
        shutil.copy(BUILD_CA, context / "build-ca.crt")
        target = ["--target", recipe.target] if recipe.target else []
        # Host networking: the daemon's bridge has no DNS on this machine; RUN steps need the
        # Debian mirror and the npm registry.
        docker.stream(
            "build", "--force-rm", "--network", "host", "--build-arg", f"BASE={base}", "--label", f"{KEY_LABEL}={key}",
            *target, "-t", tag, str(context),
        )  # fmt: skip


def ensure_recipe(docker: Docker, repo: str, cache_dir: Path) -> str:
    """The stand-in for ``repo`` present in the daemon under its internal tag; that tag."""
    recipe = RECIPES[repo]
    key = recipe_key(repo)
    tag = f"aixsss-standin/{recipe.slug}:{key[:16]}"
    if docker.label(tag) == key:
        return tag
    tarball = cache_dir / f"{recipe.slug}-{key}.tar"
    if not tarball.exists():
        base = (
            ensure_base(docker, recipe.suite, cache_dir)
            if recipe.suite
            else ensure_recipe(docker, recipe.parent or "", cache_dir)
        )
        if docker.label(tag) != key:
            _build(docker, repo, key, base, tag)
        _cached(tarball, lambda out: docker.run("save", "-o", str(out), tag))
    else:
        docker.run("load", "-i", str(tarball))
    return tag


def ensure_images(docker_host: str, references: Iterable[str], cache_dir: Path) -> None:
    """Make every image reference present in the daemon at docker_host, building stand-ins.
    Unknown repositories raise ValueError naming them."""
    refs = sorted(set(references))
    unknown = sorted({repository(r) for r in refs} - RECIPES.keys())
    if unknown:
        raise ValueError(f"no stand-in recipe for: {', '.join(unknown)}")
    docker = Docker(docker_host)
    for ref in refs:
        repo = repository(ref)
        key = recipe_key(repo)
        if docker.label(ref) == key:
            continue
        docker.run("tag", ensure_recipe(docker, repo, cache_dir), ref)
