"""External judges on the rendered Kubernetes objects: kubernetes-validate and checkov."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from rendering import CASES, rendered, tool

from offline.engine import ROOT
from offline.render import Rendered

# The newest Kubernetes minor whose schemas kubernetes-validate (pinned) bundles.
KUBERNETES_VERSION = "1.37"
KUBERNETES_CASES = [c for c in CASES if c[1] == "kubernetes"]
CHECKOV_CONFIG = ROOT / ".checkov.yaml"


@pytest.fixture(scope="module", params=KUBERNETES_CASES, ids=[s for s, _ in KUBERNETES_CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    stack, target = request.param
    return rendered(tmp_path_factory.getbasetemp() / stack, stack, target)


def manifests(result: Rendered) -> list[Path]:
    return sorted((result.out / "kubernetes").rglob("*.yaml"))


def kubernetes_validate(files: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = tool("kubernetes-validate", Path(sys.executable).parent / "kubernetes-validate")
    command = [binary, "--strict", "--kubernetes-version", KUBERNETES_VERSION, "--quiet", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def checkov(directory: Path) -> dict:
    binary = tool("checkov", ROOT / "venv-checkov/bin/checkov")
    command = [binary, "--config-file", str(CHECKOV_CONFIG), "-d", str(directory), "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    return report


def test_every_object_passes_kubernetes_validate_strict(case: Rendered) -> None:
    files = manifests(case)
    done = kubernetes_validate(files)
    assert done.returncode == 0, done.stdout + done.stderr
    # Custom resources have no bundled schema: they are listed (by render too), not hidden.
    unchecked = re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", done.stdout + done.stderr)
    listed = [line.split()[:2] for line in case.custom_resources]
    assert sorted([api, kind] for kind, api in unchecked) == sorted(listed)
    assert len(unchecked) < len(files) / 10


def test_kubernetes_validate_rejects_a_wrong_object(case: Rendered, tmp_path: Path) -> None:
    """The judge is not vacuous: an unknown field in a Deployment fails strict validation."""
    source = next(p for p in manifests(case) if "-deployment-" in p.name and p.name.endswith("-api.yaml"))
    broken = yaml.safe_load(source.read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    broken["spec"]["replicaz"] = 2
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(broken))
    assert kubernetes_validate([path]).returncode != 0


# The checks the rendered workloads may fail, each only by its own annotation with its reason.
PER_RESOURCE = {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"}
SKIP_PREFIX = "checkov.io/skip"


def skips(doc: dict) -> dict[str, str]:
    """A rendered object's checkov exceptions: check -> reason (checkov splits at '=')."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    found = [v.split("=") for k, v in annotations.items() if k.startswith(SKIP_PREFIX)]
    assert all(len(pair) == 2 for pair in found), found
    return dict(found)  # pyright: ignore[reportUnknownArgumentType]


def documents(case: Rendered) -> list[tuple[Path, dict]]:
    return [(p, d) for p in manifests(case) for d in yaml.safe_load_all(p.read_text()) if d]


def test_checkov_skips_nothing_globally() -> None:
    settings = yaml.safe_load(CHECKOV_CONFIG.read_text())
    assert not settings.get("skip-check") and not settings.get("soft-fail"), "skips are per resource, with reasons"
    assert not PER_RESOURCE & set(settings.get("skip-check") or [])


def test_checkov_skips_each_carry_a_written_reason(case: Rendered) -> None:
    annotated = {(d["kind"], d["metadata"]["name"]): skips(d) for _, d in documents(case) if skips(d)}
    # The workloads whose upstream images run below UID 10000 (redis 999, nginx 101, MinIO and
    # node 1000, HAProxy 99) carry CKV_K8S_40; api and worker keep their settings in env.
    assert {"CKV_K8S_35", "CKV_K8S_40"} <= set(annotated[("Deployment", "api")])
    for (kind, name), found in annotated.items():
        assert kind in ("Deployment", "StatefulSet", "Job"), (kind, name)
        assert set(found) <= PER_RESOURCE, (name, found)
        for check, reason in found.items():
            assert len(reason) > 80, f"{name}: {check} is skipped without a written reason"
    # Each reason names the containers of its own workload, not a stack-wide excuse.
    workloads = {
        (d["kind"], d["metadata"]["name"]): d["spec"]["template"]["spec"] for _, d in documents(case) if skips(d)
    }
    for key, found in annotated.items():
        pod = workloads[key]
        names = [c["name"] for c in [*pod.get("initContainers", []), *pod["containers"]]]
        for check, reason in found.items():
            assert any(n in reason for n in names), (key, check, reason)


def test_checkov_finds_no_failed_check(case: Rendered) -> None:
    report = checkov(case.out / "kubernetes")
    failed = sorted({(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]})
    assert report["summary"]["passed"] > 500
    # Every stack builds its app images (deployed by digest on Kubernetes) and pins the others.
    assert failed == []


def test_checkov_catches_a_weakened_workload(case: Rendered, tmp_path: Path) -> None:
    """The judge is not vacuous: a privileged, root, writable container fails its checks."""
    source = next(p for p in manifests(case) if "-deployment-" in p.name and p.name.endswith("-api.yaml"))
    weak = yaml.safe_load(source.read_text())
    container = weak["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "runAsUser": 0, "allowPrivilegeEscalation": True}
    (tmp_path / source.name).write_text(yaml.safe_dump(weak))
    failed = {c["check_id"] for c in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= failed


def copy_of(case: Rendered, into: Path, change: Callable[[dict], None]) -> None:
    """The rendered objects under ``into``, each document passed through ``change``."""
    for path in manifests(case):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            change(doc)
        (into / path.name).write_text(yaml.safe_dump_all(docs))


def test_each_exception_covers_a_check_that_fails_without_it(case: Rendered, tmp_path: Path) -> None:
    """No annotation is stale and none is missing: with every checkov annotation stripped,
    checkov fails exactly the (check, workload) pairs they covered, and nothing else."""
    annotated = {
        (check, f"{d['kind']}.{d['metadata']['namespace']}.{d['metadata']['name']}")
        for _, d in documents(case)
        for check in skips(d)
    }

    def strip(doc: dict) -> None:
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith(SKIP_PREFIX)]:
            del annotations[key]

    copy_of(case, tmp_path, strip)
    failed = {(c["check_id"], c["resource"]) for c in checkov(tmp_path)["results"]["failed_checks"]}
    assert annotated and failed == annotated


def test_an_exception_hides_no_other_check(case: Rendered, tmp_path: Path) -> None:
    """The api keeps its annotations but runs as root: CKV_K8S_40's exception (UID above 10000)
    does not cover running as root, nor a privileged container."""

    def weaken(doc: dict) -> None:
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "api":
            pod = doc["spec"]["template"]["spec"]
            pod["securityContext"]["runAsNonRoot"] = False
            container = pod["containers"][-1]
            container["securityContext"].update(runAsNonRoot=False, runAsUser=0, privileged=True)

    copy_of(case, tmp_path, weaken)
    failed = {c["check_id"] for c in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_23"} <= failed
