"""Where the api, worker and web images come from: built from ``app.source``, or given by reference.

The application publishes no image (APP.md). With ``app.source`` set, the program builds the three
targets of this repo's ``images/app/Dockerfile`` from that checkout with pulumi-docker's Image:
on Docker on the target host itself, deployed by the tag; on Kubernetes pushed to ``app.registry``
and deployed by digest, so a pod never runs anything but the bytes that were built. Otherwise
``images.api/worker/web`` name prebuilt images (pinned outside dev, like every other image).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.config import StackConfig
from components.config.model import APP_IMAGES
from components.platforms.base import Platform
from components.releases import migration_names

DOCKERFILE = Path(__file__).resolve().parent.parent / "images" / "app" / "Dockerfile"
# What the Dockerfile copies from the checkout (images/app/Dockerfile.dockerignore sends nothing
# else), less dependencies and outputs, which it installs and builds itself: a change anywhere
# else (docs, CI files) is no new release.
BUILD_INPUTS = ("package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml", "apps", "packages")
_NOT_SOURCE = {"node_modules", "dist", ".git", ".turbo", "coverage", ".pnpm-store", ".vite"}


@dataclass(frozen=True)
class AppImage:
    name: str
    # What the platform deploys: a tag on Docker, a digest reference on Kubernetes, or as given.
    ref: pulumi.Input[str]
    # Known at preview: the given reference, or a hash of the source and the Dockerfile. A new
    # version is a new release (the migration job runs again).
    version: str
    # For auditors (stack outputs): where the image comes from.
    origin: str
    # The migrations the image carries, in the order Prisma applies them: read from app.source
    # when built here; unknown (empty) for a given image (release.migrationHead declares its head).
    migrations: tuple[str, ...] = ()


def source_digest(source: Path) -> str:
    """A hash of every source file (path and content) and of the Dockerfile: equal inputs, equal
    tag; any change, a new tag. Missing sources hash to a marker (the warning says why)."""
    digest = hashlib.sha256(DOCKERFILE.read_bytes() if DOCKERFILE.exists() else b"")
    if not source.is_dir():
        return "source-missing"
    paths: list[Path] = []
    for top in BUILD_INPUTS:
        if (source / top).is_file():
            paths.append(source / top)
        for root, dirs, files in os.walk(source / top):
            dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCE)
            paths += [Path(root, name) for name in sorted(files)]
    for path in paths:
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def source_path(config: StackConfig, project_dir: Path) -> Path:
    return (project_dir / config.app.source).resolve()


def app_images(config: StackConfig, platform: Platform, project_dir: Path) -> dict[str, AppImage]:
    if config.release.rollback_to:
        # A rollback runs a recorded release's images as they were deployed; nothing is built.
        target = next(r for r in config.history if r.name == config.release.rollback_to)
        return {
            name: AppImage(name, ref, ref, f"release {target.name} (rollback; recorded in aixsss:releases)")
            for name, ref in target.images.items()
        }
    if not config.app.source:
        return {
            name: AppImage(name, getattr(config.images, name), getattr(config.images, name), "given by images." + name)
            for name in APP_IMAGES
        }
    source = source_path(config, project_dir)
    if not (source / "pnpm-workspace.yaml").is_file():
        # A warning, not a config error: `make render` runs without the checkout. A real
        # `pulumi preview` needs it (pulumi-docker hashes the build context when it checks the
        # Image), so the CI workflows check the application out beside this repository.
        pulumi.log.warn(
            f"app.source = {config.app.source!r} is not an application checkout ({source} has no "
            "pnpm-workspace.yaml): building api, worker and web will fail; clone the application there"
        )
    version = f"src-{source_digest(source)[:16]}"
    migrations = migration_names(source)
    images = {}
    for name in APP_IMAGES:
        ref = platform.build_image(name, str(source), str(DOCKERFILE), name, version)
        origin = f"built from {config.app.source} ({version}) with images/app/Dockerfile, target {name}"
        images[name] = AppImage(name, ref, version, origin, migrations)
    return images
