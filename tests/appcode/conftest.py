"""Fixtures for the tests that run the real application's code (see build.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .build import AppMissing, BuildError, build_app


def _not_here(message: str) -> None:
    """Under CI the tests must run: fail. Elsewhere skip with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the application's code")
    pytest.skip(message)


@pytest.fixture(scope="session")
def built_app() -> Path:
    """The root of a built copy of the AIXSSS checkout (a ``Path``; treat it as read-only).

    Built by build.py from ``$AIXSSS_APP_DIR`` and cached by source hash under
    ``$AIXSSS_TEST_APP_CACHE`` (default ``~/.cache/aixsss-test``); a warm cache returns in
    seconds. It holds, after a successful build:

    - ``node_modules/`` and each workspace's own (``apps/api/node_modules``, ...): resolve the
      app's dependencies (bullmq, ioredis, zod) from the workspace that uses them;
    - ``packages/shared/dist/``;
    - ``apps/api/dist/`` and ``apps/worker/dist/`` (tsc output, ES modules; a compile-only
      Prisma client, which cannot reach a database);
    - ``apps/web/dist/`` (``index.html`` and ``assets/``, the Vite build).

    Run its JavaScript with ``build.node()`` (the venv's Node). A failed build fails the test
    under ``CI``; elsewhere an unreachable registry or a missing checkout skips it.
    """
    try:
        return build_app()
    except AppMissing as missing:
        _not_here(str(missing))
    except BuildError as error:
        if error.network:
            _not_here(f"the application could not be built without the npm registry: {error}")
        raise
    raise AssertionError("unreachable")
