"""Static types as a judge: pyright over components/, offline/ and policy/ (pyproject [tool.pyright]).

No API server or provider runs in the tests, so a misspelt Kubernetes or Docker field would be a
silently ignored key; written with the SDKs' typed ``…Args`` / ``…ArgsDict``, it is a type error.
The second test plants such misspellings and checks pyright reports each one: the judge is live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# pyright (pinned in requirements-dev.txt) sits beside the interpreter running the tests.
PYRIGHT = Path(sys.executable).parent / "pyright"


def _pyright(*args: str) -> dict:
    # No check for a newer pyright on PyPI: the pin decides, and the run stays offline.
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}
    proc = subprocess.run(
        [str(PYRIGHT), "--outputjson", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.stdout, f"pyright printed nothing (exit {proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def _errors(report: dict) -> list[str]:
    return [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def test_project_has_no_type_errors() -> None:
    report = _pyright()
    assert report["summary"]["filesAnalyzed"] > 0
    assert _errors(report) == []


# Each line marked `# misspelt` must be reported; the correct spellings around them must not.
PLANTED = textwrap.dedent(
    """
    import pulumi_docker as docker
    import pulumi_kubernetes as k8s
    from pulumi_kubernetes.core.v1 import ContainerArgsDict, SecurityContextArgsDict

    ok: SecurityContextArgsDict = {"read_only_root_filesystem": True, "run_as_non_root": True}
    bad: SecurityContextArgsDict = {"read_only_root_filesystm": True}  # misspelt
    container: ContainerArgsDict = {"name": "api", "image": "api:1", "image_pul_policy": "Never"}  # misspelt
    spec: k8s.apps.v1.DeploymentSpecArgsDict = {
        "selector": {"match_labels": {"app": "api"}},
        "template": {"spec": {"containers": [container], "automount_service_acount_token": False}},  # misspelt
    }
    check = docker.ContainerHealthcheckArgs(tests=["CMD", "true"], intervl="10s")  # misspelt
    """
)


def test_misspelt_fields_are_type_errors(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED)
    # The project's own configuration (venv, Python version, strictness), on the planted file only.
    report = _pyright(str(planted))
    reported = {d["range"]["start"]["line"] + 1 for d in report["generalDiagnostics"] if d["severity"] == "error"}
    misspelt = {n for n, line in enumerate(PLANTED.splitlines(), 1) if line.endswith("# misspelt")}
    assert len(misspelt) == 4
    assert reported == misspelt, "\n".join(_errors(report))
    messages = "\n".join(_errors(report))
    assert '"read_only_root_filesystm" is an undefined item in type "SecurityContextArgsDict"' in messages
    assert 'No parameter named "intervl"' in messages
