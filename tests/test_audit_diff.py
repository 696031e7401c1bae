"""The audit diff of a pull request (offline/audit_diff.py) on crafted pairs of stack configs.

Each pair is rendered as CI renders it: the base first, the head from the base's render state.
Every change must land in its own section and nowhere it does not belong; an identical pair is
the control that gives an empty diff although both sides carry flows, secrets and protected
resources.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offline import audit_diff
from offline.audit_diff import SECTIONS, compare, diff_dirs, markdown, render_all
from offline.engine import ROOT
from offline.redact import hex_form


@dataclass
class Pair:
    base: Path
    head: Path
    key: str

    @property
    def report(self) -> dict[str, Any]:
        return diff_dirs(self.base, self.head)

    @property
    def entry(self) -> dict[str, Any]:
        return self.report[self.key]


def _render_pair(tmp: Path, stack: str, target: str, head: dict[str, str], base: dict[str, str] | None = None) -> Pair:
    kw: dict[str, Any] = {"stacks": (stack,), "targets": (target,)}
    render_all(tmp / "base", None, base or {}, **kw)
    render_all(tmp / "head", tmp / "base", head, **kw)
    return Pair(tmp / "base", tmp / "head", f"{stack}/{target}")


@pytest.fixture(scope="module")
def dev_docker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev on Docker as its stack file has it: the base most pairs share."""
    base = tmp_path_factory.mktemp("dev-docker") / "base"
    render_all(base, None, stacks=("dev",), targets=("docker",))
    return base


@pytest.fixture(scope="module")
def staging_kubernetes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("staging-kubernetes") / "base"
    render_all(base, None, stacks=("staging",), targets=("kubernetes",))
    return base


def _head(base: Path, tmp: Path, stack: str, target: str, settings: dict[str, str]) -> Pair:
    render_all(tmp / "head", base, settings, stacks=(stack,), targets=(target,))
    return Pair(base, tmp / "head", f"{stack}/{target}")


def _only(entry: dict[str, Any], *sections: str) -> None:
    """The change shows up in ``sections`` and in no other one."""
    assert entry["status"] == "compared"
    for section in SECTIONS:
        assert bool(entry[section]) == (section in sections), (section, entry[section])


@pytest.mark.parametrize("stack,target", [("dev", "docker"), ("staging", "kubernetes")])
def test_an_identical_pair_gives_an_empty_diff(stack: str, target: str, tmp_path: Path) -> None:
    pair = _render_pair(tmp_path, stack, target, {})
    _only(pair.entry)
    # Not vacuous: both sides carry what each section compares.
    facts = json.loads((pair.head / target / stack / "audit-facts.json").read_text())
    audit = json.loads((pair.head / target / stack / "audit.json").read_text())
    assert len(facts["flows"]) > 5 and len(facts["secrets"]) > 5 and facts["protected"]
    assert audit["images"] and audit["checklist"] and any(s["exposedPorts"] for s in audit["services"].values())
    assert f"No security-relevant change: {stack}/{target}." in markdown(pair.report)


def test_publishing_the_data_ports_shows_the_ports_and_the_flows_from_the_host(tmp_path: Path) -> None:
    pair = _render_pair(tmp_path, "dev", "docker", {"docker.publishDataPorts": "true"},
                        base={"docker.publishDataPorts": "false"})  # fmt: skip
    entry = pair.entry
    _only(entry, "portsPublished", "flowsAdded")
    assert "postgres: 127.0.0.1:5432->5432" in entry["portsPublished"]
    assert "redis: 127.0.0.1:6379->6379" in entry["portsPublished"]
    assert any(f.startswith("host loopback -> postgres:5432 (") for f in entry["flowsAdded"])
    # And the other way round: withdrawn.
    back = _render_pair(tmp_path / "back", "dev", "docker", {"docker.publishDataPorts": "false"})
    _only(back.entry, "portsWithdrawn", "flowsRemoved")
    assert "postgres: 127.0.0.1:5432->5432" in back.entry["portsWithdrawn"]


def test_a_gateway_in_front_of_the_edge_shows_the_tls_hop_replaced_by_a_plain_one(
    staging_kubernetes: Path, tmp_path: Path
) -> None:
    """The one hop whose TLS the config can change: kubernetes.exposure=gateway terminates TLS at
    the Gateway, which reaches the edge in plain text (every other hop is refused in plain text)."""
    gateway = {
        "kubernetes.exposure": "gateway",
        "kubernetes.gatewayName": "gw",
        "kubernetes.gatewayNamespace": "gw-system",
        "kubernetes.gatewayAddresses": '["10.244.0.0/16"]',
    }
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", gateway).entry
    _only(entry, "flowsAdded", "flowsRemoved", "portsPublished", "portsWithdrawn")
    assert "internet -> edge:443 (TLS, auth none)" in entry["flowsRemoved"]
    assert "internet (Gateway) -> edge:8080 (plain text, auth none)" in entry["flowsAdded"]


def test_a_hop_that_loses_tls_or_changes_auth_is_reported_per_hop(staging_kubernetes: Path) -> None:
    """The same hop (client, server, ports) with TLS off and another authentication. No stack
    config allows that (the config model refuses plain text inside the stack), so the head is
    the base's own audit view with one hop edited."""
    base = audit_diff._load(staging_kubernetes, "kubernetes", "staging")
    assert isinstance(base, dict)
    head = copy.deepcopy(base)
    hop = next(f for f in head["facts"]["flows"] if f["client"] == "api" and f["server"] == "postgres")
    hop["tls"], hop["auth"] = False, "trust"
    head["services"]["redis"]["auth"] = "none"
    entry = compare(base, head)
    assert entry["tlsAuthChanged"] == [
        "api -> postgres:5432: TLS on -> off",
        "api -> postgres:5432: auth scram-sha-256 -> trust",
        f"redis (auth): {base['services']['redis']['auth']!r} -> 'none'",
    ]
    assert not entry["flowsAdded"] and not entry["flowsRemoved"]


def test_a_rotation_lists_the_rotated_secrets_by_fingerprint_and_keeps_the_others(
    dev_docker: Path, tmp_path: Path
) -> None:
    entry = _head(dev_docker, tmp_path, "dev", "docker", {"secrets.rotation": "1"}).entry
    # No job retires logins at the first rotation (generation 0's clients still drain), so no image.
    _only(entry, "secretsRotated")
    rotated = {line.split(":")[0]: line for line in entry["secretsRotated"]}
    assert {"JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= rotated.keys()
    # The API key encryption key is never regenerated (components/secrets.py): kept.
    assert "API_KEY_ENCRYPTION_KEY" not in rotated
    before, _, after = rotated["JWT_SECRET"].partition(": ")[2].partition(" -> ")
    assert before.startswith("fp:") and after.startswith("fp:") and before != after


def test_a_new_image_shows_in_images_only(dev_docker: Path, tmp_path: Path) -> None:
    entry = _head(dev_docker, tmp_path, "dev", "docker", {"images.edge": "nginxinc/nginx-unprivileged:1.30"}).entry
    _only(entry, "imagesChanged")
    assert entry["imagesChanged"] == ["edge: nginxinc/nginx-unprivileged:1.29 -> nginxinc/nginx-unprivileged:1.30"]


def test_keda_adds_a_flow_into_redis(staging_kubernetes: Path, tmp_path: Path) -> None:
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", {"worker.autoscale": "true"}).entry
    _only(entry, "flowsAdded")
    assert entry["flowsAdded"] == ["keda-operator (namespace keda) -> redis:6379 (TLS, auth password)"]


def test_backups_off_regresses_their_checklist_item(staging_kubernetes: Path, tmp_path: Path) -> None:
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", {"backup.enabled": "false"}).entry
    _only(entry, "checklistChanged", "flowsRemoved")
    [item] = entry["checklistChanged"]
    assert item.startswith("backup.archivedAndScheduled: ok -> NOT ok (backup.enabled is false")
    assert entry["flowsRemoved"] == ["postgres -> minio:9000 (TLS, auth sigv4)"]


def test_a_storage_class_replaces_the_protected_claims(staging_kubernetes: Path, tmp_path: Path) -> None:
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", {"kubernetes.storageClass": "fast"}).entry
    _only(entry, "protectedReplaced")
    assert sorted(entry["protectedReplaced"]) == [
        "PersistentVolumeClaim minio-data: replaced (changed: spec.storageClassName)",
        "PersistentVolumeClaim redis-data: replaced (changed: spec.storageClassName)",
    ]


def test_a_bigger_claim_is_expanded_not_replaced(staging_kubernetes: Path, tmp_path: Path) -> None:
    """Control for the above: pulumi-kubernetes patches a PVC's requested size (no forceNew)."""
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", {"cache.storageGb": "7"}).entry
    _only(entry)


def test_another_namespace_replaces_every_protected_object(staging_kubernetes: Path, tmp_path: Path) -> None:
    entry = _head(staging_kubernetes, tmp_path, "staging", "kubernetes", {"kubernetes.namespace": "elsewhere"}).entry
    replaced = entry["protectedReplaced"]
    assert "Namespace namespace: replaced (changed: metadata.name)" in replaced
    assert "PersistentVolumeClaim redis-data: replaced (changed: metadata.namespace)" in replaced
    assert len(replaced) >= 5


def test_a_protected_resource_gone_or_unprotected_is_reported(staging_kubernetes: Path) -> None:
    base = audit_diff._load(staging_kubernetes, "kubernetes", "staging")
    assert isinstance(base, dict)
    head = copy.deepcopy(base)
    urns = sorted(u for u, p in base["facts"]["protected"].items() if p["type"].endswith("PersistentVolumeClaim"))
    gone, unprotected = urns[0], urns[1]
    head["facts"]["urns"].remove(gone)
    del head["facts"]["protected"][gone], head["facts"]["protected"][unprotected]
    found = compare(base, head)["protectedReplaced"]
    gone_name, unprotected_name = (base["facts"]["protected"][u]["name"] for u in (gone, unprotected))
    assert sorted(found) == sorted([
        f"PersistentVolumeClaim {gone_name}: gone from the head (renamed, moved or removed: a delete, which "
        "protect refuses)",
        f"PersistentVolumeClaim {unprotected_name}: no longer protected",
    ])  # fmt: skip


def test_a_config_the_head_refuses_is_reported_with_its_message(dev_docker: Path, tmp_path: Path) -> None:
    pair = _head(dev_docker, tmp_path, "dev", "docker", {"edge.replicas": "2"})
    assert pair.entry["status"] == "refused by the head"
    assert "edge.replicas" in pair.entry["head"] and "edge.replicas" in markdown(pair.report)


def _atoms(out: Path) -> set[str]:
    """Every secret value a render generated or stood in with (its state), in each form files use."""
    values: set[str] = set()
    for state in out.glob("*/.state/*.json"):
        data = json.loads(state.read_text())
        values |= set(data["generatedSecrets"]) | {value for _, value in data["standIns"].values()}
    values = {v for v in values if len(v) >= 8}
    return values | {hex_form(v) for v in values} | {hashlib.sha256(v.encode()).hexdigest() for v in values}


def test_no_secret_value_reaches_the_comment_or_the_report(dev_docker: Path, tmp_path: Path) -> None:
    pair = _head(dev_docker, tmp_path, "dev", "docker", {"secrets.rotation": "1"})
    report = pair.report
    assert report["dev/docker"]["secretsRotated"]
    texts = [markdown(report), json.dumps(report), (pair.head / "docker/dev/audit-facts.json").read_text()]
    atoms = _atoms(pair.base) | _atoms(pair.head)
    assert len(atoms) > 30  # control: the states hold the generated secrets and the stand-ins
    for text in texts:
        assert not [a for a in atoms if a in text]
    # Control: the same check finds a value when it is there.
    assert [a for a in atoms if a in texts[0] + next(iter(atoms))]


def test_the_cli_compares_two_crafted_stack_files(tmp_path: Path) -> None:
    """The commands CI runs (.github/workflows/audit-diff.yml), on two project directories that
    differ in one stack file: the head publishes no data port and pins another Redis image."""
    for side in ("base", "head"):
        (tmp_path / side).mkdir()
        shutil.copy(ROOT / "Pulumi.yaml", tmp_path / side)
        shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / side)
    head_file = tmp_path / "head/Pulumi.dev.yaml"
    text = head_file.read_text().replace(
        "aixsss:docker.publishDataPorts: true", "aixsss:docker.publishDataPorts: false"
    )
    head_file.write_text(text + "  aixsss:images.redis: redis:7.4.6\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "offline.audit_diff", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    out = tmp_path / "out"
    run("render", "--project-dir", str(tmp_path / "base"), "--out", str(out / "base"))
    run(
        "render", "--project-dir", str(tmp_path / "head"), "--out", str(out / "head"), "--state-from", str(out / "base")
    )
    md, js = tmp_path / "comment.md", tmp_path / "report.json"
    done = run("diff", "--base", str(out / "base"), "--head", str(out / "head"), "--markdown", str(md), "--json",
               str(js), "--title", "abc -> def")  # fmt: skip
    report = json.loads(js.read_text())
    assert set(report) == {"dev/docker", "dev/kubernetes"}  # the only stack file, on both targets
    docker = report["dev/docker"]
    _only(docker, "portsWithdrawn", "flowsRemoved", "imagesChanged")
    assert "postgres: 127.0.0.1:5432->5432" in docker["portsWithdrawn"]
    before = json.loads((out / "base/docker/dev/audit.json").read_text())["images"]["redis"]
    assert docker["imagesChanged"] == [f"redis: {before} -> redis:7.4.6"]
    assert md.read_text() == done.stdout and md.read_text().startswith(audit_diff.MARKER)
    assert "## Audit diff: abc -> def" in md.read_text()


def test_a_base_state_the_head_cannot_read_makes_secrets_not_comparable(tmp_path: Path) -> None:
    render_all(tmp_path / "base", None, stacks=("dev",), targets=("docker",))
    state = tmp_path / "base/docker/.state/dev.docker.json"
    state.write_text(json.dumps({"version": 0}))  # as a head that changed the format would find it
    render_all(tmp_path / "head", tmp_path / "base", stacks=("dev",), targets=("docker",))
    entry = diff_dirs(tmp_path / "base", tmp_path / "head")["dev/docker"]
    _only(entry, "secretsRotated")
    assert entry["secretsRotated"] == [
        "not comparable: the head rendered afresh (the base's render state was unreadable)"
    ]


def test_a_stack_file_the_head_breaks_is_reported(tmp_path: Path) -> None:
    for side in ("base", "head"):
        (tmp_path / side).mkdir()
        shutil.copy(ROOT / "Pulumi.yaml", tmp_path / side)
        shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / side)
    (tmp_path / "head/Pulumi.dev.yaml").write_text("config: [unclosed\n")
    kw: dict[str, Any] = {"stacks": ("dev",), "targets": ("docker",)}
    render_all(tmp_path / "out/base", None, project_dir=tmp_path / "base", **kw)
    render_all(tmp_path / "out/head", tmp_path / "out/base", project_dir=tmp_path / "head", **kw)
    entry = diff_dirs(tmp_path / "out/base", tmp_path / "out/head")["dev/docker"]
    assert entry["status"] == "refused by the head" and "Pulumi.dev.yaml" in entry["head"]
