"""Evaluation time (issue 14): a stack evaluates in at most twice the time it takes to import
the modules it needs, and each target imports only its own SDK, and of pulumi_kubernetes only the
API groups the Kubernetes platform uses.

Every measure is a fresh interpreter (tests/evaluation_probe.py), so every import is cold, as in
`pulumi up`. A first run evaluates the stack and reports what it loaded; the third-party modules
among them that its target may use are what the stack needs (target_uses: nothing of the other
target's SDK, of pulumi_kubernetes the APIs the platform declares, only what requirements.txt
brings in), and anything else it loads counts as its own time. Each timed run then imports those
(the imports) and evaluates the stack under the project's mocks (the evaluation: the program's
own modules, its config, every resource declared and resolved). The two are compared as a ratio,
each the fastest of a few runs: a loaded machine slows both, and the fastest run is the one least
disturbed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest
from harness import PINNED, ROOT, STACKS, stack_config, stack_overrides
from packaging.requirements import Requirement

RATIO = 2.0
# Timed runs per measure; more, up to MAX_RUNS, only while the ratio is over (a busy machine).
RUNS, MAX_RUNS = 3, 6
TARGETS = ("docker", "kubernetes")
# What components/platforms/kubernetes*.py declare: `group/version`, or the group for
# apiextensions (its CustomResource serves every operator's kinds: cert-manager, CNPG, KEDA...).
KUBERNETES_APIS = {
    "core/v1",
    "meta/v1",
    "apps/v1",
    "batch/v1",
    "networking/v1",
    "policy/v1",
    "autoscaling/v2",
    "apiextensions",
}
# PyYAML: the engine's stand-in reads the stack files with it (the CLI does that for the program,
# which never imports it). It is imported untimed, with the stand-in.
HARNESS_ONLY = {"yaml", "_yaml"}
# The import components/stack.py made for every stack before issue 14: both platforms.
BOTH_PLATFORMS = "components.platforms.kubernetes"
CASES = [(stack, target) for stack in STACKS for target in TARGETS]


# Bytecode as a deploy finds it from the second run on (compiled once per change): written to a
# directory of the test's own, not beside the sources (PYTHONDONTWRITEBYTECODE may be set here).
PYCACHE: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def bytecode(tmp_path_factory: pytest.TempPathFactory) -> None:
    PYCACHE["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))


def probe(stack: str, config: dict[str, object], needed: list[str] | None, pad: tuple[str, ...] = ()) -> dict:
    request = {"stack": stack, "overrides": config, "needed": needed, "pad": list(pad)}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYCACHE, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "evaluation_probe.py"), json.dumps(request)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@functools.cache
def loaded(stack: str, config_json: str) -> tuple[str, ...]:
    """Every module a plain evaluation has loaded, in the order it began to import them (lazily
    registered modules, never used, left out)."""
    modules = probe(stack, json.loads(config_json), None)["modules"]
    return tuple(name for name, lazy in modules if not lazy)


def loaded_for(stack: str, config: dict[str, object]) -> tuple[str, ...]:
    return loaded(stack, json.dumps(config, sort_keys=True))


@functools.cache
def distribution_of() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def allowed_distributions() -> frozenset[str]:
    """requirements.txt's distributions and everything they depend on, as installed here."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    todo = [Requirement(line).name for line in lines if line]
    seen: set[str] = set()
    while todo:
        name = canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return frozenset(seen)


def third_party(modules: tuple[str, ...]) -> list[str]:
    """The modules an installed distribution provides (not the standard library, not this
    project), the engine stand-in's own left out."""
    found = distribution_of()
    return [m for m in modules if m.split(".")[0] in found and m.split(".")[0] not in HARNESS_ONLY]


def kubernetes_api(module: str) -> str | None:
    """The API a pulumi_kubernetes module belongs to (`core/v1`, `apiextensions`), its group for
    a group's own package (`core`), None for the SDK's shared modules (provider, _utilities)."""
    parts = module.split(".")[1:]
    if not parts or parts[0].startswith("_") or parts[0] == "provider":
        return None
    if len(parts) >= 2 and re.fullmatch(r"v\d+\w*", parts[1]):
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def kubernetes_apis(modules: tuple[str, ...]) -> set[str]:
    apis = {kubernetes_api(m) for m in modules if m.startswith("pulumi_kubernetes.")}
    return {a for a in apis if a is not None}


def sdks(modules: tuple[str, ...]) -> set[str]:
    return {m.split(".")[0] for m in modules} & {"pulumi_docker", "pulumi_kubernetes"}


@functools.cache
def target_uses(module: str, target: str, builds_images: bool) -> bool:
    """Whether a stack on ``target`` may load ``module``: an SDK module only its own target's (and
    pulumi-docker's where the app's images are built from app.source), of pulumi_kubernetes only
    the APIs in KUBERNETES_APIS; any other module, if requirements.txt brings it in."""
    top = module.split(".")[0]
    if top == "pulumi_kubernetes":
        api = kubernetes_api(module)
        groups = {a.split("/")[0] for a in KUBERNETES_APIS}
        return target == "kubernetes" and (api is None or api in KUBERNETES_APIS | groups)
    if top == "pulumi_docker":
        return target == "docker" or builds_images
    return all(canonical(d) in allowed_distributions() for d in distribution_of()[top])


def not_used(stack: str, config: dict[str, object]) -> list[str]:
    """What the stack's evaluation loaded that its target does not use."""
    settings = {**stack_config(stack), **config}
    uses = functools.partial(target_uses, target=str(settings["target"]), builds_images=bool(settings["app.source"]))
    return [m for m in third_party(loaded_for(stack, config)) if not uses(m)]


def needed(stack: str, config: dict[str, object]) -> list[str]:
    """The modules the stack needs: what its evaluation loaded that its target uses. Importing
    anything else counts as the evaluation's own time."""
    unused = set(not_used(stack, config))
    return [m for m in third_party(loaded_for(stack, config)) if m not in unused]


@pytest.mark.parametrize(("stack", "target"), CASES, ids=[f"{s}-{t}" for s, t in CASES])
def test_the_evaluation_loads_only_what_its_target_uses(stack: str, target: str) -> None:
    config = stack_overrides(stack, target)
    modules = loaded_for(stack, config)
    # Kubernetes stacks here build the app's images from app.source, with pulumi-docker.
    assert sdks(modules) == ({"pulumi_docker"} if target == "docker" else {"pulumi_docker", "pulumi_kubernetes"})
    if target == "kubernetes":
        assert {"core/v1", "apps/v1"} <= kubernetes_apis(modules)  # what the check reads is there
    unused = not_used(stack, config)
    assert not unused, f"{stack}/{target} loads modules its target does not use (or unpinned): {unused[:20]}"


def test_a_kubernetes_stack_of_published_images_loads_no_docker_sdk() -> None:
    pinned = {**stack_overrides("prod", "kubernetes"), "app.source": "", **PINNED}
    assert sdks(loaded_for("prod", pinned)) == {"pulumi_kubernetes"}


def measure(stack: str, target: str, pad: tuple[str, ...] = ()) -> tuple[float, float, int]:
    """The fastest imports, the fastest evaluation, and the number of runs they are the fastest of."""
    config = stack_overrides(stack, target)
    modules = needed(stack, config)
    imports: list[float] = []
    evaluations: list[float] = []
    while len(imports) < RUNS or (min(evaluations) > RATIO * min(imports) and len(imports) < MAX_RUNS and not pad):
        times = probe(stack, config, modules, pad)
        imports.append(times["imports"])
        evaluations.append(times["evaluation"])
    return min(imports), min(evaluations), len(imports)


@pytest.mark.parametrize(("stack", "target"), CASES, ids=[f"{s}-{t}" for s, t in CASES])
def test_a_stack_evaluates_within_twice_the_imports_it_needs(stack: str, target: str) -> None:
    imports, evaluation, runs = measure(stack, target)
    ratio = evaluation / imports
    print(f"{stack}/{target}: imports {imports:.3f} s, evaluation {evaluation:.3f} s, ratio {ratio:.2f} ({runs} runs)")
    assert ratio <= RATIO, f"{stack}/{target}: evaluation {evaluation:.3f} s = {ratio:.2f} x imports {imports:.3f} s"


def test_control_a_docker_stack_importing_both_platforms_is_over() -> None:
    """What components/stack.py did before: the Kubernetes platform imported for a Docker stack."""
    imports, evaluation, runs = measure("dev", "docker", pad=(BOTH_PLATFORMS,))
    ratio = evaluation / imports
    print(f"dev/docker + {BOTH_PLATFORMS}: imports {imports:.3f} s, evaluation {evaluation:.3f} s, ratio {ratio:.2f}")
    assert ratio > RATIO, f"{runs} runs: the measure does not see what importing {BOTH_PLATFORMS} costs"
