"""`make render` keeps what the providers generated (offline.state), as a stack's state does.

An unchanged stack renders byte-identical files; a changed input that forces a replacement
changes exactly the files that carry the replaced values, or something derived from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rendering import SETTINGS

from offline import render as render_module
from offline.engine import Deployment, Registration, reveal, run_program
from offline.redact import hex_form
from offline.render import TLS_CERT_TYPES, render

Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)
CASES = [("dev", "docker"), ("dev", "kubernetes"), ("prod", "docker"), ("prod", "kubernetes")]
PASSWORD = "random:index/randomPassword:RandomPassword"
GENERATED = ("random:", "tls:")


def snapshot(out: Path) -> Files:
    return {
        str(p.relative_to(out)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*") if p.is_file()
    }


def changed(before: Files, after: Files) -> set[str]:
    """Files whose content or mode differs, or that only one render wrote."""
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def _flat(text: str | bytes) -> bytes:
    # Without whitespace and JSON's escaped newlines: a PEM reads the same in a YAML block
    # scalar (indented), in JSON ("\n") and in a file of its own.
    raw = text.encode() if isinstance(text, str) else text
    return re.sub(rb"\s|\\n", b"", raw)


def carrying(files: Files, tokens: set[str]) -> set[str]:
    """The files that hold any of ``tokens`` in their content or path."""
    flat = [_flat(t) for t in tokens if t]
    return {path for path, (content, _) in files.items() if any(t in _flat(content) or t in _flat(path) for t in flat)}


# A service's revision on Docker (spec.Handover): random, not a secret, drawn anew whenever what
# its containers are made of changes, a rotated password in their environment included.
REVISION = "random:index/randomId:RandomId"


def _generated(d: Deployment) -> dict[str, Registration]:
    return {r.urn: r for r in d.registrations if r.type.startswith(GENERATED) and r.type != REVISION}


def _revisions_follow_their_keepers(before: Deployment, after: Deployment) -> set[str]:
    """Each revision is kept exactly when its keepers are; the names of those drawn anew."""
    drawn = set()
    for r in before.of_type(REVISION):
        now = after.by_urn(r.urn)
        same = reveal(r.outputs["hex"]) == reveal(now.outputs["hex"])
        assert same == (r.plain["keepers"] == now.plain["keepers"]), r.name
        if not same:
            drawn.add(r.name)
    return drawn


def _checksums(d: Deployment) -> dict[tuple[str, str], str]:
    """The checksum annotations on pod templates (kubernetes_files: a SHA-256 of each ConfigMap and
    Secret a pod reads), by workload and object: a changed value changes the workload's manifest."""
    found = {}
    for r in d.registrations:
        template = ((r.plain.get("spec") or {}).get("template") or {}).get("metadata") or {}
        for key, value in (template.get("annotations") or {}).items():
            if key.startswith("checksum.aixsss.io/"):
                found[(r.urn, key)] = str(value)
    return found


def _changed_checksums(d: Deployment, other: Deployment) -> set[str]:
    theirs = _checksums(other)
    return {value for key, value in _checksums(d).items() if theirs.get(key) != value}


def _login_role(d: Deployment) -> str:
    """The role in the clients' DATABASE_URL (the api's environment, on either target)."""
    urls = {
        match for r in d.registrations for match in re.findall(r"postgresql://([^:@/]+):", json.dumps(reveal(r.inputs)))
    }
    assert len(urls) == 1, urls
    return urls.pop()


def _names(d: Deployment) -> dict[str, str]:
    """Each resource's name as files show it: a Kubernetes object's metadata.name, else its own."""
    return {r.urn: str((r.plain.get("metadata") or {}).get("name") or r.name) for r in d.registrations}


@dataclass
class Twice:
    stack: str
    target: str
    root: Path  # --out: the render in <root>/<stack>, its state in <root>/.state
    first: Files
    second: Files
    deployment: Deployment  # the second render's, which the state now holds

    def render_changed(self, out_root: Path, **settings: str) -> tuple[Deployment, Files]:
        """Render again from this state with ``settings`` changed."""
        shutil.copytree(self.root / ".state", out_root / ".state")
        result = render(
            self.stack,
            self.target,
            out_root,
            show_secrets=True,
            settings={**SETTINGS.get((self.stack, self.target), {}), **settings},
        )
        return result.deployment, snapshot(result.out)


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def twice(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Twice:
    stack, target = request.param
    root = tmp_path_factory.mktemp(f"twice-{stack}-{target}")
    # Secrets shown, so that a generated value that changed cannot hide behind [redacted].
    snapshots, deployment = [], None
    for _ in range(2):
        result = render(stack, target, root, show_secrets=True, settings=SETTINGS.get((stack, target)))
        snapshots.append(snapshot(result.out))
        deployment = result.deployment
    assert deployment is not None
    return Twice(stack, target, root, snapshots[0], snapshots[1], deployment)


def test_an_unchanged_stack_renders_byte_identical_files(twice: Twice) -> None:
    assert {"audit.json", "summary.txt", "certs/ca.crt"} <= twice.first.keys()
    assert changed(twice.first, twice.second) == set()


@pytest.mark.parametrize("twice", [("dev", "docker"), ("prod", "kubernetes")], indirect=True, ids=str)
def test_the_files_do_not_depend_on_the_order_resources_register_in(
    twice: Twice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program registers concurrently: the order varies from run to run, rarely but really."""

    def reversed_order(*args: Any, **kwargs: Any) -> Deployment:
        deployment = run_program(*args, **kwargs)
        deployment.registrations.reverse()
        return deployment

    monkeypatch.setattr(render_module, "run_program", reversed_order)
    _, files = twice.render_changed(tmp_path)
    assert changed(twice.second, files) == set()


def test_rotation_replaces_exactly_the_rotated_secrets(twice: Twice, tmp_path: Path) -> None:
    before = twice.deployment
    after, files = twice.render_changed(tmp_path, **{"secrets.rotation": "1"})
    # The passwords whose rotation keeper the new generation changes: every rotatable one except
    # the Redis slot of the previous generation, which the rotation keeps (components/secrets.py).
    rotated = {
        r.urn for r in before.of_type(PASSWORD) if "rotation" in (r.plain.get("keepers") or {})
        and r.plain["keepers"] != after.by_urn(r.urn).plain["keepers"]
    }  # fmt: skip
    assert rotated, "the stack has passwords that rotate"
    redis_slots = {r.name: r.urn in rotated for r in before.of_type(PASSWORD) if r.name.startswith("redisPassword")}
    assert redis_slots == {"redisPassword": False, "redisPasswordSlot1": True}
    # Other generated values with the same keeper (the SCRAM salt of PostgreSQL's login role).
    salted = {
        r.urn for r in before.registrations if r.type.startswith(GENERATED) and r.type != PASSWORD
        and "rotation" in (r.plain.get("keepers") or {})
        and r.plain["keepers"] != after.by_urn(r.urn).plain["keepers"]
    }  # fmt: skip
    kept, now = _generated(before), _generated(after)
    for urn, reg in kept.items():
        same = reveal(reg.outputs) == reveal(now[urn].outputs)
        assert same != (urn in rotated | salted), f"{reg.name}: {'kept' if same else 'replaced'}"
    # On Docker api and worker hold the rotated passwords in their environment; web none of them.
    docker_stack = bool(before.of_type("docker:index/container:Container"))
    drawn = _revisions_follow_their_keepers(before, after)
    assert drawn == ({"api-revision", "worker-revision"} if docker_stack else set()), drawn

    def tokens(d: Deployment, other: Deployment) -> set[str]:
        values = {reveal(d.by_urn(urn).outputs["result"]) for urn in rotated}
        values |= {reveal(d.by_urn(urn).outputs["base64"]) for urn in salted}
        # As the files carry them: the value, hex-encoded (HAProxy's health check), as a SHA-256
        # (audit.json's secretInventory fingerprints).
        found = values | {hex_form(v) for v in values} | {hashlib.sha256(v.encode()).hexdigest() for v in values}
        # And names hashed from inputs (a Job that runs again with new credentials).
        theirs = _names(other)
        found |= _changed_checksums(d, other)  # a pod template's checksum of a Secret carrying them
        # PostgreSQL's login role on one host is the generation's (its credentials jobs' scripts).
        if _login_role(d) != _login_role(other):
            found.add(_login_role(d))
        return found | {name for urn, name in _names(d).items() if theirs.get(urn) != name}

    expected = carrying(twice.second, tokens(before, after)) | carrying(files, tokens(after, before))
    # Kubernetes keeps the previous generation's login role (CloudNativePG managed roles): its
    # Secret carries the old role's name, unchanged, and the new generation's is one more
    # resource, which summary.txt counts.
    previous = _login_role(before).rpartition("_")[2]
    expected -= {p for p in expected if p.endswith(f"-postgres-login-{previous}.yaml")}
    if len(before.registrations) != len(after.registrations):
        expected.add("summary.txt")

    def retires(d: Deployment) -> bool:
        return any(r.name.startswith("postgres-retire-logins") for r in d.registrations)

    # On one host the first rotation adds the job that retires the earlier logins, a drawn node.
    if retires(after) and not retires(before):
        expected.add("architecture.svg")
    assert "audit.json" in expected
    assert changed(twice.second, files) == expected


def _cert_tokens(d: Deployment, urns: set[str]) -> set[str]:
    """How files carry these certificates: the PEM, the end of validity (RFC 3339, epoch seconds)."""
    found = set()
    for urn in urns:
        out = reveal(d.by_urn(urn).outputs)
        end = dt.datetime.fromisoformat(out["validityEndTime"].replace("Z", "+00:00"))
        found |= {out["certPem"], out["validityEndTime"], str(int(end.timestamp()))}
    return found


@pytest.mark.parametrize("twice", [("dev", "kubernetes"), ("prod", "docker")], indirect=True, ids=str)
def test_a_changed_validity_renews_the_certificates_and_keeps_their_keys(twice: Twice, tmp_path: Path) -> None:
    before = twice.deployment
    after, files = twice.render_changed(tmp_path, **{"tls.validityHours": "4380"})
    certs = {r.urn for r in before.registrations if r.type in TLS_CERT_TYPES}
    kept, now = _generated(before), _generated(after)
    for urn, reg in kept.items():
        same = reveal(reg.outputs) == reveal(now[urn].outputs)
        assert same != (urn in certs), f"{reg.name}: {'kept' if same else 'renewed'}"
    # On Docker api and worker trust the renewed CA (their files); web's files hold no certificate.
    docker_stack = bool(before.of_type("docker:index/container:Container"))
    drawn = _revisions_follow_their_keepers(before, after)
    assert drawn == ({"api-revision", "worker-revision"} if docker_stack else set()), drawn
    expected = carrying(twice.second, _cert_tokens(before, certs) | _changed_checksums(before, after))
    expected |= carrying(files, _cert_tokens(after, certs) | _changed_checksums(after, before))
    # The plan names the containers, and theirs carry the revisions drawn anew.
    expected |= {"docker/plan.yaml"} if drawn else set()
    assert {"certs/ca.crt", "audit.json"} <= expected
    assert not {p for p in expected if p.endswith(".key")}
    assert changed(twice.second, files) == expected


@pytest.mark.parametrize("twice", [("dev", "docker")], indirect=True, ids=str)
def test_a_certificate_due_for_renewal_is_renewed_alone(twice: Twice, tmp_path: Path) -> None:
    """pulumi-tls replaces a certificate from `earlyRenewalHours` before its end on: a year
    later, the same render renews it. Here the state says one certificate has expired."""
    before = twice.deployment
    due = before.named("redis-cert", "tls:index/locallySignedCert:LocallySignedCert")
    shutil.copytree(twice.root / ".state", tmp_path / "aged")
    state_file = next((tmp_path / "aged").glob("*.json"))
    data = json.loads(state_file.read_text())
    [entry] = [r for r in data["resources"] if r["urn"] == due.urn]
    entry["outputs"]["validityEndTime"] = "2020-01-01T00:00:00Z"
    state_file.write_text(json.dumps(data))
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "aged", out / ".state")
    result = render(twice.stack, twice.target, out, show_secrets=True)
    files = snapshot(result.out)
    kept, now = _generated(before), _generated(result.deployment)
    assert {urn for urn in kept if reveal(kept[urn].outputs) != reveal(now[urn].outputs)} == {due.urn}
    expected = carrying(twice.second, _cert_tokens(before, {due.urn})) | carrying(
        files, _cert_tokens(result.deployment, {due.urn})
    )
    assert "certs/redis.crt" in expected
    assert changed(twice.second, files) == expected


@pytest.mark.parametrize("twice", [("dev", "docker")], indirect=True, ids=str)
def test_early_renewal_hours_updates_certificates_in_place(twice: Twice, tmp_path: Path) -> None:
    """Not an input pulumi-tls replaces on: every certificate (and its validity start) is kept."""
    after, files = twice.render_changed(tmp_path, **{"tls.earlyRenewalHours": "100"})
    certs = [r for r in twice.deployment.registrations if r.type in TLS_CERT_TYPES]
    for reg in certs:
        assert after.by_urn(reg.urn).plain["earlyRenewalHours"] == 100
        assert reveal(after.by_urn(reg.urn).outputs["certPem"]) == reveal(reg.outputs["certPem"])
    assert not {p for p in changed(twice.second, files) if p.startswith("certs/")}


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_state_is_private_ignored_by_git_and_never_in_the_render(tmp_path: Path) -> None:
    assert _git(tmp_path, "init", "-q").returncode == 0
    out = tmp_path / "rendered"  # not build/: only the state directory's own .gitignore hides it
    argv = ["--stack", "dev", "--out", str(out)]
    assert render_module.main(argv) == 0
    first = snapshot(out / "dev")
    assert render_module.main(argv) == 0
    second = snapshot(out / "dev")
    assert changed(first, second) == set()
    state_file = out / ".state" / "dev.docker.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.parent.stat().st_mode) == 0o700
    assert _git(tmp_path, "check-ignore", "-q", str(state_file)).returncode == 0
    listed = _git(tmp_path, "status", "--porcelain", "--untracked-files=all").stdout
    assert "rendered/dev/audit.json" in listed and ".state" not in listed
    # It holds the generated secrets; a render from it, without --show-secrets, shows none.
    held = json.loads(state_file.read_text())["generatedSecrets"]
    assert held
    assert not carrying(second, set(held))


def test_a_state_that_is_not_one_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".state").mkdir()
    (tmp_path / ".state" / "dev.docker.json").write_text("{}")
    assert render_module.main(["--stack", "dev", "--out", str(tmp_path)]) == 2
    assert "dev.docker.json: not a render state" in capsys.readouterr().err
