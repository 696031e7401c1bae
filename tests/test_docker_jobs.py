"""A failed run-once container stops `pulumi up` on Docker (components/platforms/docker_jobs.py).

pulumi-docker records an attached container's exit code but does not fail on it; under the
engine's mocks each attached container reports the exit code the test gives (0 otherwise), as
pulumi-docker records it once the container has exited.
"""

from __future__ import annotations

import re

import pytest
from harness import Deployment, reveal, run_program

from components.platforms.docker_jobs import JobFailed

CONTAINER = "docker:index/container:Container"
STACK = "dev"


@pytest.fixture(scope="module")
def deployed() -> Deployment:
    return run_program(STACK, overrides={"target": "docker"})


def _jobs(d: Deployment) -> list[str]:
    return [c.name for c in d.of_type(CONTAINER) if c.plain.get("attach")]


def _named(d: Deployment, pattern: str) -> str:
    (name,) = [n for n in _jobs(d) if re.fullmatch(pattern, n)]
    return name


# Each kind of job: a volume owner (root, chown), PostgreSQL's credentials job, the migrations.
JOBS = [r"minio-volume-owner", r"postgres-credentials-[0-9a-f]{12}", r"api-migrate-[0-9a-f]{12}"]


@pytest.mark.parametrize("pattern", JOBS)
def test_a_failed_job_stops_the_update_and_says_how_to_rerun_it(deployed: Deployment, pattern: str) -> None:
    job = _named(deployed, pattern)
    container = reveal(deployed.named(job, CONTAINER).inputs["name"])
    with pytest.raises(JobFailed) as failed:
        run_program(STACK, overrides={"target": "docker"}, exit_codes={job: 3})
    message = str(failed.value)
    assert f"{container} exited with 3" in message, message
    assert f"docker logs {container}`" in message, message
    assert f"pulumi up --replace '{deployed.named(job, CONTAINER).urn}'" in message, message


def test_what_waits_for_a_job_still_depends_on_it_when_it_succeeds(deployed: Deployment) -> None:
    # The gate is a dependency, not an input: the order stays, and nothing else changes.
    waits = {
        "minio": r"minio-volume-owner",
        _named(deployed, r"api-migrate-[0-9a-f]{12}"): r"postgres-credentials-[0-9a-f]{12}",
        "api": r"api-migrate-[0-9a-f]{12}",
    }
    for dependent, pattern in waits.items():
        reg, job = deployed.named(dependent, CONTAINER), deployed.named(_named(deployed, pattern), CONTAINER)
        assert job.urn in reg.dependencies, (dependent, job.name, reg.dependencies)


def test_every_attached_job_reports_an_exit_code_and_nothing_else_does(deployed: Deployment) -> None:
    jobs = set(_jobs(deployed))
    # PostgreSQL's and Redis's images own their volumes' directories: no root job (Volume.owned_by_image).
    assert "minio-volume-owner" in jobs and not jobs & {"postgres-volume-owner", "redis-volume-owner"}, jobs
    for c in deployed.of_type(CONTAINER):
        assert ("exitCode" in c.outputs) == (c.name in jobs), c.name
