"""The env the program gives the api and the worker passes the application's own zod schemas.

The judge is the application's compiled code, not a copy of its rules: ``EnvSchema`` from
``apps/api/dist/config/env.js`` and ``apps/worker/dist/config/env.js`` (built from
``src/config/env.ts``), which the api applies at start-up through ``ConfigModule``'s
``validate: (env) => EnvSchema.parse(env)`` (src/app.module.ts) and the worker through
``EnvSchema.parse(process.env)`` (src/worker.ts): an env that fails here stops the process.

The env is read from the program's offline run (every stack, both targets; prod on Docker with
``edge.replicas=1`` as rendering.SETTINGS has it), secrets resolved from what the program
declares: on Docker the container's ``envs``, on Kubernetes the pod's env with each
``secretKeyRef`` followed to its Secret.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import Deployment, reveal, run_program
from rendering import CASES, SETTINGS

from .build import node

CONTAINER = "docker:index/container:Container"
SECRET = "kubernetes:core/v1:Secret"
CHECK_ENV = Path(__file__).with_name("check_env.mjs")
SCHEMAS = {"api": "apps/api/dist/config/env.js", "worker": "apps/worker/dist/config/env.js"}


@functools.cache
def deployed(stack: str, target: str) -> Deployment:
    return run_program(stack, overrides={"target": target, **SETTINGS.get((stack, target), {})})


def docker_envs(d: Deployment, service: str) -> dict[str, dict[str, str]]:
    """Each replica's env (``api``, or ``api-1``, ``api-2``, ... when there are several)."""
    found = [c for c in d.of_type(CONTAINER) if re.fullmatch(rf"{service}(-\d+)?", c.name)]
    assert found, f"no {service} container"
    return {c.name: dict(e.split("=", 1) for e in reveal(c.inputs["envs"])) for c in found}


def k8s_env(d: Deployment, service: str) -> dict[str, str]:
    """The app container's env, each secretKeyRef resolved through the Secret it names."""
    workloads = [r for r in d.registrations if r.type == "kubernetes:apps/v1:Deployment" and r.name == service]
    assert len(workloads) == 1, f"expected one Deployment {service}"
    containers = workloads[0].plain["spec"]["template"]["spec"]["containers"]
    app = [c for c in containers if c["name"] == service]
    assert len(app) == 1, [c["name"] for c in containers]
    env: dict[str, str] = {}
    for entry in app[0].get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = d.named(ref["name"], SECRET).plain["stringData"][ref["key"]]
    assert not app[0].get("envFrom"), "envFrom is not resolved here: list the variables"
    return env


def generated_envs(stack: str, target: str, service: str) -> dict[str, dict[str, str]]:
    d = deployed(stack, target)
    if target == "docker":
        return docker_envs(d, service)
    return {service: k8s_env(d, service)}


def app_schema(built_app: Path, service: str, env: dict[str, str]) -> dict[str, Any]:
    """The app's EnvSchema.safeParse(env), run by node on the compiled module."""
    schema = built_app / SCHEMAS[service]
    done = subprocess.run(
        [node(), str(CHECK_ENV), str(schema)], input=json.dumps(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"node could not run {schema}:\n{done.stderr}"
    return json.loads(done.stdout)


def _masked(env: dict[str, str]) -> dict[str, str]:
    """Names and lengths only: a failure message must not print the stack's secrets."""
    return {k: f"<{len(v)} chars>" for k, v in env.items()}


@pytest.mark.parametrize("service", ["api", "worker"])
@pytest.mark.parametrize(("stack", "target"), CASES)
def test_generated_env_passes_the_apps_own_schema(built_app: Path, stack: str, target: str, service: str) -> None:
    for name, env in generated_envs(stack, target, service).items():
        result = app_schema(built_app, service, env)
        assert result["ok"], (
            f"{stack}/{target}: the app's {SCHEMAS[service]} rejects {name}'s env: "
            f"{json.dumps(result['issues'], indent=1)}\nenv: {_masked(env)}"
        )
        parsed = result["data"]
        # What the app reads is what the program set, not a schema default standing in for a
        # variable the program forgot (the defaults point at localhost and development).
        for key in ("NODE_ENV", "DATABASE_URL", "REDIS_URL", "AI_QUEUE_NAME", "API_KEY_ENCRYPTION_KEY"):
            assert key in env, f"{stack}/{target} {name}: {key} not set; the app would use its default"
            assert str(parsed[key]) == env[key]
        if service == "api":
            assert "JWT_SECRET" in env and "PORT" in env, f"{stack}/{target} {name}"


def test_control_the_same_schema_rejects_a_short_jwt_secret(built_app: Path) -> None:
    # The generated env with one value broken: the schema run above can say no.
    env = next(iter(generated_envs("dev", "docker", "api").values()))
    assert app_schema(built_app, "api", env)["ok"]
    result = app_schema(built_app, "api", env | {"JWT_SECRET": "0123456789"})
    assert not result["ok"]
    assert [issue["path"] for issue in result["issues"]] == [["JWT_SECRET"]]


def test_control_the_worker_schema_rejects_a_missing_database_url(built_app: Path) -> None:
    env = next(iter(generated_envs("dev", "docker", "worker").values()))
    env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    result = app_schema(built_app, "worker", env)
    assert not result["ok"]
    assert [issue["path"] for issue in result["issues"]] == [["DATABASE_URL"]]
