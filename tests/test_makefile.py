"""The Makefile's Pulumi path (up, preview, refresh, destroy) with a fake `pulumi` on PATH.

The fake logs its arguments and prints the version a test gives it; the venv is a temporary
directory whose install stamps are fresh, so make installs nothing. `make -n` shows what a
target would install without installing it. No real Pulumi CLI, network or venv is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PREFLIGHT = ROOT / "scripts/pulumi-preflight.sh"
INSTALL_URL = "https://www.pulumi.com/docs/install/"
MIN_VERSION = "3.206.0"
PULUMI_TARGETS = ["up", "preview", "refresh", "destroy"]

FAKE_PULUMI = """#!/bin/sh
# A stand-in for the Pulumi CLI: record the arguments, answer `version`.
echo "$*" >> "$FAKE_PULUMI_LOG"
if [ "$1" = version ]; then echo "$FAKE_PULUMI_VERSION"; fi
exit 0
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]  # one line per fake `pulumi` invocation: its arguments


@dataclass
class Sandbox:
    tmp: Path
    venv: Path
    log: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path = ROOT, command: list[str] | None = None) -> Run:
        self.log.write_text("")
        done = subprocess.run(
            command or ["make", "--no-print-directory", f"VENV={self.venv}", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Run(done.returncode, done.stdout, done.stderr, self.log.read_text().splitlines())


def _path_without_pulumi() -> str:
    # A developer's real CLI must not stand in for the fake (or for "missing").
    dirs = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "pulumi").exists())


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    venv = tmp_path / "venv"
    venv.mkdir()
    # Fresh stamps: the deploy venv counts as installed, so make runs no pip.
    for stamp in (".installed-runtime", ".installed"):
        (venv / stamp).touch()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "pulumi").write_text(FAKE_PULUMI)
    (fake_bin / "pulumi").chmod(0o755)
    log = tmp_path / "pulumi.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "MAKE")) and k != "MFLAGS"}
    env |= {
        "PATH": f"{fake_bin}{os.pathsep}{_path_without_pulumi()}",
        "FAKE_PULUMI_LOG": str(log),
        "FAKE_PULUMI_VERSION": "v3.272.0",
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        # Not the default file backend under the project: nothing is created in the work tree.
        "PULUMI_BACKEND_URL": f"file://{tmp_path}/state",
    }
    return Sandbox(tmp_path, venv, log, env)


def without_cli(sandbox: Sandbox) -> None:
    (sandbox.tmp / "bin/pulumi").unlink()


# --------------------------------------------------------------------------- preflight


@pytest.mark.parametrize("target", PULUMI_TARGETS)
def test_a_missing_cli_is_named_with_the_install_link_before_anything_is_installed(
    sandbox: Sandbox, target: str
) -> None:
    without_cli(sandbox)
    shutil.rmtree(sandbox.venv)
    run = sandbox.run(target)
    assert run.returncode != 0
    assert "Pulumi CLI (pulumi) is not on PATH" in run.stderr
    assert INSTALL_URL in run.stderr and MIN_VERSION in run.stderr
    assert "No such file or directory" not in run.stderr
    assert not sandbox.venv.exists()  # the check runs before the venv would be created


@pytest.mark.parametrize("target", PULUMI_TARGETS)
@pytest.mark.parametrize("version", ["v3.150.0", "v3.205.9", "v2.999.999"])
def test_an_old_cli_is_refused(sandbox: Sandbox, target: str, version: str) -> None:
    sandbox.env["FAKE_PULUMI_VERSION"] = version
    run = sandbox.run(target)
    assert run.returncode != 0
    assert f"Pulumi CLI {version} is too old: this project needs v{MIN_VERSION} or newer" in run.stderr
    assert INSTALL_URL in run.stderr
    assert run.calls == ["version"]  # asked its version, ran nothing


@pytest.mark.parametrize("version", [f"v{MIN_VERSION}", "v3.206.1", "v3.300.0", "v4.0.0", "v3.273.0-alpha.1+dirty"])
def test_the_minimum_and_newer_cli_versions_pass(sandbox: Sandbox, version: str) -> None:
    sandbox.env["FAKE_PULUMI_VERSION"] = version
    run = sandbox.run("preview")
    assert run.returncode == 0, run.stderr
    assert run.calls[-1] == "preview --stack dev"


def test_an_unreadable_version_is_refused(sandbox: Sandbox) -> None:
    sandbox.env["FAKE_PULUMI_VERSION"] = "something else"
    run = sandbox.run("up")
    assert run.returncode != 0
    assert "cannot read the Pulumi CLI version" in run.stderr


@pytest.mark.parametrize("target", PULUMI_TARGETS)
def test_no_passphrase_is_refused(sandbox: Sandbox, target: str) -> None:
    del sandbox.env["PULUMI_CONFIG_PASSPHRASE"]
    run = sandbox.run(target)
    assert run.returncode != 0
    assert "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE)" in run.stderr
    assert run.calls == ["version"]


def test_an_empty_passphrase_is_accepted_as_pulumi_accepts_it_with_a_warning(sandbox: Sandbox) -> None:
    sandbox.env["PULUMI_CONFIG_PASSPHRASE"] = ""
    run = sandbox.run("up")
    assert run.returncode == 0, run.stderr
    assert "PULUMI_CONFIG_PASSPHRASE is empty" in run.stderr
    assert run.calls[-1].startswith("up --stack")


def test_a_passphrase_file_is_enough_if_it_can_be_read(sandbox: Sandbox) -> None:
    del sandbox.env["PULUMI_CONFIG_PASSPHRASE"]
    sandbox.env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(sandbox.tmp / "missing")
    run = sandbox.run("up")
    assert run.returncode != 0 and "is not a readable file" in run.stderr
    (sandbox.tmp / "missing").write_text("secret\n")
    assert sandbox.run("up").returncode == 0


def test_pulumi_cloud_or_another_secrets_provider_needs_no_passphrase(sandbox: Sandbox) -> None:
    del sandbox.env["PULUMI_CONFIG_PASSPHRASE"]
    preflight = ["bash", str(PREFLIGHT), "demo"]
    project = sandbox.tmp / "project"
    project.mkdir()
    sandbox.env["PULUMI_BACKEND_URL"] = "https://api.pulumi.com"
    assert sandbox.run(command=preflight, cwd=project).returncode == 0
    # Pulumi Cloud, but the stack chose the passphrase provider: still needed.
    (project / "Pulumi.demo.yaml").write_text("secretsprovider: passphrase\nencryptionsalt: v1:abc\n")
    assert sandbox.run(command=preflight, cwd=project).returncode != 0
    # A self-managed backend with a KMS key: not needed.
    sandbox.env["PULUMI_BACKEND_URL"] = "s3://bucket/state"
    (project / "Pulumi.demo.yaml").write_text("secretsprovider: awskms://alias/aixsss\nencryptedkey: abc\n")
    assert sandbox.run(command=preflight, cwd=project).returncode == 0
    (project / "Pulumi.demo.yaml").write_text("config: {}\n")
    run = sandbox.run(command=preflight, cwd=project)
    assert run.returncode != 0 and "s3://bucket/state" in run.stderr


# --------------------------------------------------------------------------- the commands


def test_up_selects_or_creates_the_stack_then_runs_pulumi_up(sandbox: Sandbox) -> None:
    run = sandbox.run("up", "STACK=staging")
    assert run.returncode == 0, run.stderr
    assert run.calls == ["version", "stack select --create staging", "up --stack staging"]


def test_refresh_runs_pulumi_refresh_on_the_existing_stack(sandbox: Sandbox) -> None:
    run = sandbox.run("refresh")
    assert run.returncode == 0, run.stderr
    assert run.calls == ["version", "stack select dev", "refresh --stack dev"]


def test_destroy_explains_protected_resources_then_runs_pulumi_destroy(sandbox: Sandbox) -> None:
    run = sandbox.run("destroy")
    assert run.returncode == 0, run.stderr
    assert run.calls == ["version", "stack select dev", "destroy --stack dev"]
    notice = run.stdout
    assert "protected resources block pulumi destroy" in notice
    assert "API key encryption key" in notice and "PVCs, StatefulSets and the namespace" in notice
    assert "pulumi state unprotect --all --stack dev" in notice
    assert "pulumi destroy --exclude-protected" in notice and "back up first" in notice
    assert notice.index("protected") < notice.index("pulumi destroy --exclude-protected")


def test_destroy_can_keep_the_protected_resources(sandbox: Sandbox) -> None:
    run = sandbox.run("destroy", "STACK=prod", "EXCLUDE_PROTECTED=1")
    assert run.returncode == 0, run.stderr
    assert run.calls[-1] == "destroy --stack prod --exclude-protected"


@pytest.mark.parametrize("target", ["up", "preview"])
def test_policy_1_runs_the_policy_pack_with_the_stack_s_config(sandbox: Sandbox, target: str) -> None:
    # -o: the policy venv counts as built (its own test below shows what building it runs).
    run = sandbox.run("-o", "policy/venv/.installed", target, "STACK=prod", "POLICY=1")
    assert run.returncode == 0, run.stderr
    pack = "--policy-pack policy --policy-pack-config policy/config/prod.json"
    assert run.calls[-1] == f"{target} --stack prod {pack}"
    assert (ROOT / "policy/config/prod.json").is_file()
    assert "--policy-pack" not in sandbox.run(target).calls[-1]


# --------------------------------------------------------------------------- what gets installed


def dry_run(sandbox: Sandbox, *args: str) -> list[str]:
    """The commands make would run (-n) if nothing were installed yet (-B)."""
    run = sandbox.run("-n", "-B", *args)
    assert run.returncode == 0, run.stderr
    assert run.calls == []  # -n runs no recipe line, the fake included
    return run.stdout.splitlines()


def pip_installs(lines: list[str]) -> list[str]:
    return [line.split(" -r ", 1)[1] for line in lines if "pip install" in line and " -r " in line]


@pytest.mark.parametrize("target", PULUMI_TARGETS)
def test_deploying_installs_the_runtime_requirements_only(sandbox: Sandbox, target: str) -> None:
    lines = dry_run(sandbox, target)
    assert pip_installs(lines) == ["requirements.txt"]
    assert any(f"touch {sandbox.venv}/.installed-runtime" == line for line in lines)
    assert lines[0].endswith(f"scripts/pulumi-preflight.sh {'dev'}")  # checks before installing


def test_the_tests_install_the_dev_requirements_on_top(sandbox: Sandbox) -> None:
    assert pip_installs(dry_run(sandbox, "test")) == [
        "requirements.txt",
        "requirements-dev.txt",
        "requirements-checkov.txt",
    ]


def test_policy_venv_builds_policy_venv_from_the_pack_s_requirements(sandbox: Sandbox) -> None:
    lines = dry_run(sandbox, "policy-venv")
    assert "test -x policy/venv/bin/python || python3 -m venv policy/venv" in lines
    assert pip_installs(lines) == ["policy/requirements.txt"]
    assert pip_installs(dry_run(sandbox, "up", "POLICY=1")) == ["requirements.txt", "policy/requirements.txt"]
