"""The GitHub Actions workflows: what each runs, with which permissions, pinned how."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rendering import tool

from offline.engine import ROOT, STACKS
from offline.render import render

WORKFLOWS = ROOT / ".github/workflows"
PULUMI_ACTION = "pulumi/actions@v7"


def load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def uses(path: Path) -> list[str]:
    return re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)", path.read_text(), re.M)


def test_every_action_is_pinned_to_a_version() -> None:
    files = [*WORKFLOWS.glob("*.yml"), ROOT / ".github/actions/setup/action.yml"]
    found = [u for f in files for u in uses(f)]
    assert found
    for ref in found:
        if ref.startswith("./"):
            continue  # this repository's own composite action
        assert re.search(r"@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$", ref), f"{ref} is not pinned to a version"


def test_preview_runs_every_stack_with_the_policy_pack_and_comments() -> None:
    doc = load("preview.yml")
    assert set(doc["on"]) == {"pull_request"}
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "github.event.pull_request.number" in doc["concurrency"]["group"]
    job = doc["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == list(STACKS)
    step = next(s for s in job["steps"] if s.get("uses") == PULUMI_ACTION)
    w = step["with"]
    assert w["command"] == "preview" and w["comment-on-pr"] is True
    assert w["policyPacks"] == "policy" and w["policyPackConfigs"] == "policy/config/${{ matrix.stack }}.json"
    assert w["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    for stack in STACKS:
        assert (ROOT / f"policy/config/{stack}.json").is_file()


def test_policy_is_advisory_in_dev_and_mandatory_in_staging_and_prod() -> None:
    levels = {s: json.loads((ROOT / f"policy/config/{s}.json").read_text())["all"] for s in STACKS}
    assert levels == {"dev": "advisory", "staging": "mandatory", "prod": "mandatory"}


def test_checks_test_render_every_stack_upload_sarif_and_artifacts() -> None:
    doc = load("checks.yml")
    assert set(doc["on"]) == {"pull_request", "push"}
    assert doc["permissions"] == {"contents": "read"}
    run = "\n".join(s.get("run", "") for s in steps(doc))
    assert "make test" in run and "make --no-print-directory render" in run
    assert "for stack in dev staging prod" in run and "for target in docker kubernetes" in run
    assert "--output sarif" in run and ".checkov.yaml" in run
    used = [s.get("uses", "") for s in steps(doc)]
    assert "github/codeql-action/upload-sarif@v4" in used and "actions/upload-artifact@v5" in used
    # The render's state (offline/state.py: <out>/.state/) holds every generated secret.
    [artifact] = [s["with"]["path"].split() for s in steps(doc) if s.get("uses") == "actions/upload-artifact@v5"]
    assert artifact == ["build/", "!build/**/.state/**"] and 'OUT="build/$target"' in run
    job = doc["jobs"]["test-and-render"]
    assert job["permissions"] == {"contents": "read", "security-events": "write"}
    # prod on one Docker host: the overrides its config requires, as .ci/run renders it.
    [one_host] = [line.strip() for line in run.splitlines() if "prod/docker ]" in line]
    assert one_host in (ROOT / ".ci/run").read_text() and 'SET="$set"' in run


def test_deploy_refreshes_then_ups_staging_on_main_and_prod_by_dispatch_into_a_protected_environment() -> None:
    doc = load("deploy.yml")
    assert doc["on"]["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in doc["on"] and not doc["on"]["workflow_dispatch"]  # no inputs
    job = doc["jobs"]["deploy"]
    assert job["environment"] == "${{ github.event_name == 'push' && 'staging' || 'production' }}"
    commands = [s["with"]["command"] for s in job["steps"] if s.get("uses") == PULUMI_ACTION]
    assert commands == ["refresh", "up"]
    for step in (s for s in job["steps"] if s.get("uses") == PULUMI_ACTION):
        assert step["with"]["suppress-outputs"] is True
    up = job["steps"][-1]["with"]
    assert up["policyPacks"] == "policy" and up["policyPackConfigs"] == "policy/config/${{ env.STACK }}.json"
    assert job["concurrency"]["cancel-in-progress"] is False


def test_no_workflow_prints_secrets() -> None:
    for path in [*WORKFLOWS.glob("*.yml"), ROOT / ".github/actions/setup/action.yml"]:
        text = path.read_text()
        assert "--show-secrets" not in text and "set -x" not in text
        for line in text.splitlines():
            if re.search(r"\b(echo|printf|cat)\b", line):
                assert "secrets." not in line, f"{path.name}: {line.strip()}"


def test_checkov_passes_the_workflows() -> None:
    binary = tool("checkov", ROOT / "venv-checkov/bin/checkov")
    done = subprocess.run(
        [binary, "--framework", "github_actions", "-d", str(ROOT / ".github"), "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["passed"] > 20
    assert report["results"]["failed_checks"] == [], [c["check_id"] for c in report["results"]["failed_checks"]]
    assert done.returncode == 0


@pytest.mark.parametrize("stack", STACKS)
def test_make_render_writes_where_out_says(stack: str, tmp_path: Path) -> None:
    done = subprocess.run(
        # This interpreter, and no venv (re)build: -o treats the venv as up to date.
        ["make", "--no-print-directory", "-o", "venv/.installed", "render", f"STACK={stack}", "TARGET=kubernetes",
         f"OUT={tmp_path}", f"PY={sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / stack / "kubernetes/1-manifest").is_dir()


def test_the_checkov_step_writes_the_sarif_file_the_upload_reads(tmp_path: Path) -> None:
    """checks.yml's own checkov command, on freshly rendered staging and prod objects."""
    doc = load("checks.yml")
    job = doc["jobs"]["test-and-render"]["steps"]
    command = next(s["run"] for s in job if "checkov" in s.get("name", ""))
    sarif = next(s["with"]["sarif_file"] for s in job if "upload-sarif" in s.get("uses", ""))
    for stack in ("staging", "prod"):
        render(stack, "kubernetes", tmp_path / "build/kubernetes")
    binary = tool("checkov", ROOT / "venv-checkov/bin/checkov")
    argv = command.replace("venv-checkov/bin/checkov", binary).replace(".checkov.yaml", str(ROOT / ".checkov.yaml"))
    done = subprocess.run(argv.split(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    report = json.loads((tmp_path / sarif).read_text())
    assert report["version"] == "2.1.0"
    # Nothing unsuppressed: each result is a workload's own exception (a checkov.io/skipN
    # annotation), reported as suppressed in source with its written reason.
    results = report["runs"][0]["results"]
    assert results
    for result in results:
        [suppression] = result["suppressions"]
        assert suppression["kind"] == "inSource" and len(suppression["justification"]) > 80, result["ruleId"]


def test_preview_and_deploy_check_out_the_application_the_stacks_build_from() -> None:
    # Every stack file builds from app.source ../aixsss, and pulumi-docker hashes that build
    # context even in a preview: both workflows must put a pinned checkout there.
    action = yaml.safe_load((ROOT / ".github/actions/setup/action.yml").read_text())
    checkout = next(s for s in action["runs"]["steps"] if s.get("with", {}).get("repository") == "leonaiuv/aixsss")
    assert checkout["with"]["ref"] == "${{ inputs.app-ref }}"
    link = next(s for s in action["runs"]["steps"] if "../aixsss" in s.get("run", ""))
    assert link["if"] == checkout["if"] == "inputs.app-ref != ''"
    for name in ("preview.yml", "deploy.yml"):
        setup = next(s for s in steps(load(name)) if s.get("uses") == "./.github/actions/setup")
        assert setup["with"]["app-ref"] == "${{ vars.AIXSSS_APP_REF }}", name
    login = next(s for s in steps(load("deploy.yml")) if str(s.get("uses", "")).startswith("docker/login-action@"))
    assert login["with"]["password"] == "${{ secrets.APP_REGISTRY_PASSWORD }}"


STICKY_COMMENT = "marocchino/sticky-pull-request-comment@"


def test_audit_diff_renders_without_privileges_and_comments_from_the_artifact_only() -> None:
    """The pull request's code runs in `render` (read-only token, no secret); `comment` holds the
    write token and runs nothing from the pull request: no checkout, only the artifact's file."""
    doc = load("audit-diff.yml")
    assert set(doc["on"]) == {"pull_request"}  # never pull_request_target
    assert doc["permissions"] == {}
    render, comment = doc["jobs"]["render"], doc["jobs"]["comment"]
    assert render["permissions"] == {"contents": "read"}
    assert "secrets." not in yaml.safe_dump(render)
    assert all(s["with"]["persist-credentials"] is False for s in render["steps"] if "checkout" in s.get("uses", ""))
    assert comment["needs"] == "render" and comment["permissions"] == {"pull-requests": "write"}
    used = [s.get("uses", "") for s in comment["steps"]]
    assert all("run" not in s for s in comment["steps"])
    assert used[0] == "actions/download-artifact@v5" and re.fullmatch(STICKY_COMMENT + "[0-9a-f]{40}", used[1])
    [upload] = [s for s in render["steps"] if s.get("uses") == "actions/upload-artifact@v5"]
    assert upload["with"]["path"].split() == ["audit-diff/audit-diff.md", "audit-diff/audit-diff.json"]
    assert comment["steps"][0]["with"]["name"] == upload["with"]["name"]
    assert comment["steps"][1]["with"]["path"] == "audit-diff/audit-diff.md"


def test_the_audit_diff_workflow_scripts_compare_two_checkouts(tmp_path: Path) -> None:
    """audit-diff.yml's own run scripts (but the venv installs) on two copies of this checkout,
    the head's dev stack file publishing no data port: the comment lists the withdrawn ports."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    for side in ("base", "head"):
        for name in files:
            if name.startswith(("venv", "build/")) or not (ROOT / name).is_file():
                continue
            (tmp_path / side / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / side / name).write_bytes((ROOT / name).read_bytes())
        (tmp_path / side / "venv").symlink_to(Path(sys.executable).parent.parent)
    stack_file = tmp_path / "head/Pulumi.dev.yaml"
    text = stack_file.read_text()
    assert "aixsss:docker.publishDataPorts: true" in text
    stack_file.write_text(text.replace("publishDataPorts: true", "publishDataPorts: false"))
    render = load("audit-diff.yml")["jobs"]["render"]["steps"]
    summary = tmp_path / "summary.md"
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path / "runner"), "GITHUB_STEP_SUMMARY": str(summary),
           "BASE_SHA": "1" * 40, "HEAD_SHA": "2" * 40}  # fmt: skip
    for step in render:
        if "run" in step and "venv-dev" not in step["run"]:
            done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
    comment = (tmp_path / "audit-diff/audit-diff.md").read_text()
    report = json.loads((tmp_path / "audit-diff/audit-diff.json").read_text())
    assert comment.startswith("<!-- aixsss-audit-diff -->\n## Audit diff: 1111111 -> 2222222")
    assert summary.read_text() == comment
    assert "- `postgres: 127.0.0.1:5432->5432`" in comment
    assert {k for k, v in report.items() if v["status"] == "compared" and any(v[s] for s in v if s != "status")} == {
        "dev/docker"
    }
