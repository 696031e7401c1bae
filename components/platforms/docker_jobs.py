"""A run-once container's exit code as a gate for what waits on it (Docker).

pulumi-docker waits for an attached container to exit and records its exit code (`exitCode`;
terraform-provider-docker's acceptance test testAccDockerContainerExitCodeConfig: `attach = true`,
`must_run = false`, `exit 123` → exit_code 123), but a non-zero code does not fail the update: the
migrations, the PostgreSQL credentials job or a volume owner could fail and the api would still be
rolled onto them. Here a dependent depends on the job through an Output that resolves to the job
only once its exit code is 0, so a failed job stops `pulumi up` before anything that waits on it
is created or updated, with a message that says what to do.

The Output is a dependency, not an input: nothing of the dependent's own changes, so a preview
(where the exit code is unknown) shows the same plan as before and the job stays a dependency.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker


class JobFailed(pulumi.RunError):
    """A run-once container exited with a non-zero code (a RunError: Pulumi prints the message
    without a traceback)."""


def succeeded(job: docker.Container) -> pulumi.Output[docker.Container]:
    """``job``, once it has exited 0; raises JobFailed (failing the update) otherwise."""

    def checked(args: list[Any]) -> docker.Container:
        code, name, urn = args
        # None: no exit code recorded (a container pulumi-docker did not attach to).
        if code not in (None, 0):
            raise JobFailed(
                f"the run-once container {name} exited with {code}, so nothing that waits for it was "
                f"created or updated. Read its output with `docker logs {name}`, fix the cause, then "
                f"run it again with `pulumi up --replace '{urn}'`."
            )
        return job

    return pulumi.Output.all(job.exit_code, job.name, job.urn).apply(checked)
