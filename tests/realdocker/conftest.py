"""The tier's daemon: started once per session (daemon.py) unless AIXSSS_TEST_DOCKER_HOST names one.

Every test here reads AIXSSS_TEST_DOCKER_HOST; this session fixture sets it before any of them
runs. Under CI a missing dockerd or missing root fails the run (.ci/run installs docker.io and
runs as root); elsewhere the tier is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rendering import tool

from tests.realdocker import daemon

HOST_ENV = "AIXSSS_TEST_DOCKER_HOST"
ROOT = Path(os.environ.get("AIXSSS_TEST_DOCKER_ROOT", "/tmp/aixsss-test-dockerd"))
# Stand-in images as `docker save` tarballs keyed by their inputs (images.py); kept across runs.
CACHE = Path(os.environ.get("AIXSSS_TEST_CACHE", Path.home() / ".cache/aixsss-test")) / "images"


@pytest.fixture(scope="session", autouse=True)
def docker_daemon() -> Iterator[str]:
    given = os.environ.get(HOST_ENV)
    if given:
        yield given
        return
    dockerd = tool("dockerd", "/usr/sbin/dockerd")
    if os.geteuid() != 0:
        message = "dockerd needs root (networks, iptables, mounts)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with daemon.running(ROOT, dockerd) as host:
        os.environ[HOST_ENV] = host
        try:
            yield host
        finally:
            del os.environ[HOST_ENV]


@pytest.fixture(scope="session")
def image_cache() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE
