"""Config validation: one test per rule, asserting the message names file, key, value, rule."""

from __future__ import annotations

import pytest
import yaml
from harness import PINNED, PROD_OK, ROOT, run_program

from components.config import StackConfigError, parse_stack_config, pulumi_yaml_declarations


def error_for(flat: dict, stack: str) -> str:
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(flat, stack)
    return str(caught.value)


def test_valid_prod_config_parses() -> None:
    config = parse_stack_config(PROD_OK, "prod")
    assert config.api.replicas == 2 and config.protect_data


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_unpinned_image_rejected(stack: str) -> None:
    flat = {**PROD_OK, "images.api": "ghcr.io/aixsss/api:latest"}
    message = error_for(flat, stack)
    assert f"Pulumi.{stack}.yaml: aixsss:images.api = 'ghcr.io/aixsss/api:latest'" in message
    assert "pinned image" in message


def test_image_without_tag_counts_as_latest() -> None:
    assert "aixsss:images.web = 'ghcr.io/aixsss/web'" in error_for(
        {**PROD_OK, "images.web": "ghcr.io/aixsss/web"}, "prod"
    )


def test_digest_counts_as_pinned() -> None:
    parse_stack_config({**PROD_OK, "images.api": "ghcr.io/aixsss/api@sha256:" + "a" * 64}, "prod")


def test_dev_may_use_latest() -> None:
    latest = {**PINNED, "images.api": "ghcr.io/aixsss/api:latest"}
    assert parse_stack_config(latest, "dev").images.api.endswith(":latest")


@pytest.mark.parametrize("section", ["api", "edge"])
def test_prod_needs_two_replicas_on_kubernetes(section: str) -> None:
    message = error_for({**PROD_OK, f"{section}.replicas": 1}, "prod")
    assert f"Pulumi.prod.yaml: aixsss:{section}.replicas = 1 is not allowed: at least 2" in message


def test_prod_replica_default_is_reported_as_default() -> None:
    flat = {k: v for k, v in PROD_OK.items() if k != "api.replicas"}
    assert "aixsss:api.replicas = 1 (default) is not allowed" in error_for(flat, "prod")


def test_prod_on_docker_may_run_one_replica() -> None:
    parse_stack_config(
        {
            **PROD_OK,
            "target": "docker",
            "api.replicas": 1,
            "edge.replicas": 1,
            "database.instances": 1,
            "database.synchronousReplicas": 0,
            "cache.highAvailability": False,
        },
        "prod",
    )


def test_prod_needs_public_certificate_source() -> None:
    message = error_for({**PROD_OK, "tls.publicCertificate": "self-signed"}, "prod")
    assert "aixsss:tls.publicCertificate = 'self-signed' is not allowed: acme or supplied in prod" in message


@pytest.mark.parametrize(
    "key",
    ["api.replicas", "worker.concurrency", "database.storageGb", "cache.maxmemoryMb", "edge.cpuMillis", "web.memoryMb"],
)
def test_sizes_and_counts_must_be_positive(key: str) -> None:
    message = error_for({key: 0}, "dev")
    assert f"Pulumi.dev.yaml: aixsss:{key} = 0 is not allowed: Input should be greater than 0" in message


def test_domain_must_be_a_dns_name() -> None:
    message = error_for({"domain": "not a domain"}, "dev")
    assert "aixsss:domain = 'not a domain' is not allowed: a DNS name" in message


def test_acme_email_must_be_an_address() -> None:
    message = error_for({**PROD_OK, "tls.acmeEmail": "ops-at-example"}, "prod")
    assert "aixsss:tls.acmeEmail = 'ops-at-example' is not allowed: an e-mail address" in message


def test_acme_behind_a_load_balancer_names_the_solver_key() -> None:
    message = error_for({**PROD_OK, "tls.acmeSolver": "http01"}, "prod")
    assert (
        "Pulumi.prod.yaml: aixsss:tls.acmeSolver = 'http01' is not allowed: dns01 when kubernetes.exposure is "
        "loadBalancer and tls.publicCertificate is acme" in message
    )


def test_acme_needs_an_email() -> None:
    message = error_for({**PROD_OK, "tls.acmeEmail": ""}, "prod")
    assert "aixsss:tls.acmeEmail = '' is not allowed: an e-mail address when tls.publicCertificate is acme" in message


def test_unknown_key_is_an_error() -> None:
    assert "aixsss:api.replica = 3 is not allowed: no such key" in error_for({"api.replica": 3}, "dev")


def test_unknown_target_is_an_error() -> None:
    assert "aixsss:target = 'nomad' is not allowed" in error_for({"target": "nomad"}, "dev")


def test_early_renewal_inside_validity() -> None:
    message = error_for({"tls.validityHours": 100, "tls.earlyRenewalHours": 200}, "dev")
    assert "aixsss:tls.earlyRenewalHours = 200 is not allowed: fewer hours than tls.validityHours (100)" in message


def test_gateway_exposure_needs_a_gateway_name() -> None:
    message = error_for({**PROD_OK, "kubernetes.exposure": "gateway"}, "prod")
    assert "aixsss:kubernetes.gatewayName = '' (default) is not allowed" in message


def test_all_errors_reported_at_once() -> None:
    message = error_for({"api.replicas": 0, "worker.replicas": -1}, "dev")
    assert "aixsss:api.replicas" in message and "aixsss:worker.replicas" in message


def test_bad_config_stops_before_any_resource() -> None:
    with pytest.raises(StackConfigError, match=r"Pulumi.prod.yaml: aixsss:api.replicas = 1 is not allowed"):
        run_program("prod", overrides={"api.replicas": 1})


def test_bad_config_stops_before_any_resource_registers() -> None:
    from offline import engine as harness

    registered: list = []
    original = harness.RecordingMonitor.RegisterResource

    def spy(self, request):  # type: ignore[no-untyped-def]
        registered.append(request.type)
        return original(self, request)

    harness.RecordingMonitor.RegisterResource = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(StackConfigError):
            run_program("dev", overrides={"api.replicas": 0})
    finally:
        harness.RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


def test_supplied_secret_in_plain_text_is_refused() -> None:
    with pytest.raises(StackConfigError, match=r"aixsss:secrets.jwtSecret = \(plain text\) is not allowed: a secret"):
        run_program("dev", plain_config={"secrets.jwtSecret": "x" * 64})


def test_supplied_public_certificate_must_be_set() -> None:
    expected = r"aixsss:tls.suppliedCertificatePem = '' \(default\) is not allowed: set"
    with pytest.raises(StackConfigError, match=expected):
        run_program("dev", overrides={"tls.publicCertificate": "supplied"})


def test_pulumi_yaml_declares_every_key_with_the_model_defaults() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared == pulumi_yaml_declarations()


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_stack_files_use_only_declared_keys(stack: str) -> None:
    declared = set(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"])
    keys = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert {k.removeprefix("aixsss:") for k in keys} <= declared
