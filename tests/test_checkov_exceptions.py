"""checkov's per-resource exceptions (components/platforms/kubernetes_checkov.py) and the secrets
moved out of the environment into files (ServiceSpec.file_env), on the mocked Kubernetes program.
checkov itself judges the rendered stacks in tests/test_judges.py."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Deployment, k8s_file, reveal, run_program

from components.platforms import kubernetes_checkov
from components.platforms.kubernetes_files import CHECKSUM_PREFIX

WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
SECRET = "kubernetes:core/v1:Secret"
DIGEST = "sha256:" + "ab" * 32


def workload(d: Deployment, name: str) -> dict[str, Any]:
    [found] = [r.plain for r in d.registrations if r.type in WORKLOADS and r.name == name]
    return found


def skipped(d: Deployment, name: str) -> dict[str, str]:
    """Check -> reason of a workload's checkov.io/skipN annotations."""
    annotations = workload(d, name)["metadata"].get("annotations") or {}
    return dict(v.split("=", 1) for k, v in annotations.items() if k.startswith("checkov.io/skip"))


def test_a_digest_pinned_image_loses_its_tag_exceptions() -> None:
    tagged = run_program("staging", overrides={"target": "kubernetes"})
    pinned = run_program(
        "staging",
        overrides={"target": "kubernetes", "images.minio": f"registry.example.net/silo@{DIGEST}"},
    )
    assert {"CKV_K8S_15", "CKV_K8S_43"} <= set(skipped(tagged, "minio"))
    assert "pgsty/silo" in skipped(tagged, "minio")["CKV_K8S_43"]
    assert workload(pinned, "minio")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(DIGEST)
    assert not {"CKV_K8S_15", "CKV_K8S_43"} & set(skipped(pinned, "minio"))
    # What the digest does not change stays excepted: the image's own UID.
    assert "uid 1000" in skipped(pinned, "minio")["CKV_K8S_40"]
    # The app images are deployed by digest (built): never a tag exception, yet UID and env ones.
    api = skipped(tagged, "api")
    assert "api (" not in api["CKV_K8S_43"] and "redis-tls (" in api["CKV_K8S_43"]
    assert "api reads DATABASE_URL" in api["CKV_K8S_35"] and "environment" in api["CKV_K8S_35"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_exceptions_only_where_a_check_fails(stack: str) -> None:
    d = run_program(stack, overrides={"target": "kubernetes"})
    # web runs a built image (digest) as nginx's uid 101 and reads no Secret through env.
    assert set(skipped(d, "web")) == {"CKV_K8S_40"}
    assert "web runs as uid 101" in skipped(d, "web")["CKV_K8S_40"]
    # MinIO's root credentials are files now: no CKV_K8S_35 exception for the server.
    assert "CKV_K8S_35" not in skipped(d, "minio")
    # Every annotation is a check this module may excuse, with its reason.
    for r in d.registrations:
        if r.type in WORKLOADS:
            for check, reason in skipped(d, r.name).items():
                assert check in {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"} and len(reason) > 80


def test_minio_reads_its_root_credentials_from_files_of_its_secret() -> None:
    d = run_program("staging", overrides={"target": "kubernetes"})
    minio = workload(d, "minio")
    container = minio["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # No secret value, nor any reference to one, in the server's environment.
    assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(env)
    assert all("valueFrom" not in e for e in env.values())
    assert not [r for r in d.registrations if r.type == SECRET and r.name == "minio-env"]
    bootstrap_env = {
        e["name"]: e for e in workload(d, "minio-bootstrap")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    bootstrap_secret = next(r for r in d.registrations if r.type == SECRET and r.name == "minio-bootstrap-env")
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        path = env[f"{name}_FILE"]["value"]
        assert path == f"/etc/aixsss/env/{name}"
        # The pod's files volume provides it, from the Secret, the same value the bootstrap uses.
        ref = bootstrap_env[name]["valueFrom"]["secretKeyRef"]
        assert k8s_file(d, "minio", path) == reveal(bootstrap_secret.outputs["stringData"])[ref["key"]]
        assert k8s_file(d, "minio", path)
    files = next(r for r in d.registrations if r.type == SECRET and r.name == "minio-secret-files")
    assert "etc_aixsss_env_MINIO_ROOT_USER" in files.plain["stringData"]
    # A changed credential changes the pod template: the Secret's checksum is on it.
    assert f"{CHECKSUM_PREFIX}minio-secret-files" in minio["spec"]["template"]["metadata"]["annotations"]


def _pod(uid: int, image: str, env: list[dict[str, Any]] | None = None) -> Any:
    return {
        "security_context": {"run_as_user": uid},
        "containers": [{"name": "one", "image": image, "env": env or []}],
    }


def test_reasons_follow_the_pod() -> None:
    reasons = kubernetes_checkov._reasons  # pyright: ignore[reportPrivateUsage]
    assert reasons(_pod(65532, f"x@{DIGEST}"), [f"x@{DIGEST}"]) == {}
    assert set(reasons(_pod(999, "redis:7"), ["redis:7"])) == {"CKV_K8S_15", "CKV_K8S_40", "CKV_K8S_43"}
    secret = [{"name": "REDISCLI_AUTH", "value_from": {"secret_key_ref": {"name": "s", "key": "k"}}}]
    assert "one reads REDISCLI_AUTH" in reasons(_pod(65532, f"x@{DIGEST}", secret), ["x"])["CKV_K8S_35"]
    # A new secret in an environment needs its reason written down first.
    unknown = [{"name": "NEW_TOKEN", "value_from": {"secret_key_ref": {"name": "s", "key": "k"}}}]
    with pytest.raises(ValueError, match="NEW_TOKEN"):
        reasons(_pod(65532, f"x@{DIGEST}", unknown), [f"x@{DIGEST}"])
