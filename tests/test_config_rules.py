"""Every config rule: a value that must be refused next to a near value that must be accepted,
and the report that lists all problems of a stack at once.

Expected limits are written here as numbers, from what each consumer documents (S3, Kubernetes,
Docker, PostgreSQL, Redis, BullMQ, the application's zod schemas), never recomputed by the code
under test.
"""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any
from urllib.parse import unquote, urlsplit

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import GATEWAY_ADDRESSES, PINNED, PROD_OK, delivered, run_program

from components.config import StackConfigError, load_stack_config, parse_stack_config
from offline.engine import EngineLikeMocks


def problems(flat: dict[str, Any], stack: str = "dev") -> list[str]:
    """The problem lines of the report, or [] when the config is accepted. The application's
    images come from PINNED unless the case builds them (app.source) or names its own."""
    base = {} if "app.source" in flat else PINNED
    try:
        parse_stack_config({**base, **flat}, stack)
    except StackConfigError as exc:
        return [line.strip() for line in str(exc).splitlines()[1:-1]]
    return []


def refused(flat: dict[str, Any], key: str, allowed: str, stack: str = "dev") -> str:
    found = [line for line in problems(flat, stack) if f" aixsss:{key} = " in line]
    assert found, f"{key} was accepted: {flat}"
    assert allowed in found[0], found[0]
    return found[0]


def accepted(flat: dict[str, Any], stack: str = "dev") -> None:
    assert problems(flat, stack) == []


# --------------------------------------------------------------------------- names the target refuses


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ("ab", "abc"),  # 3 to 63 characters
        ("a" * 64, "a" * 63),
        ("my..bucket", "my.bucket"),
        ("my.-bucket", "my-bucket"),
        ("192.168.1.10", "192.168.1.x10"),  # not formatted as an IP address
        ("xn--bucket", "xn-bucket"),  # reserved prefix
        ("bucket-s3alias", "bucket-s3"),  # reserved suffix
        ("Aixsss", "aixsss"),  # lower case only
        ("aixsss-", "aixsss-0"),  # ends alphanumeric
    ],
)
def test_bucket_follows_the_s3_naming_rules(bad: str, good: str) -> None:
    refused({"objectStore.bucket": bad}, "objectStore.bucket", "an S3 bucket name")
    accepted({"objectStore.bucket": good})


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ("Aixsss", "aixsss"),
        ("a" * 64, "a" * 63),  # DNS-1123 label: 63 at most
        ("aixsss.prod", "aixsss-prod"),  # a label has no dots
        ("-aixsss", "aixsss-1"),
        ("default", "defaults"),  # the cluster's own namespaces
        ("kube-aixsss", "aixsss-kube"),
    ],
)
def test_namespace_is_a_dns_label_of_the_stacks_own(bad: str, good: str) -> None:
    refused({"kubernetes.namespace": bad}, "kubernetes.namespace", "")
    accepted({"kubernetes.namespace": good})


@pytest.mark.parametrize("key", ["kubernetes.storageClass", "kubernetes.gatewayName", "tls.clusterIssuer"])
def test_object_names_are_dns_subdomains(key: str) -> None:
    refused({key: "fast_ssd"}, key, "a DNS-1123 subdomain")
    refused({key: "Fast"}, key, "a DNS-1123 subdomain")
    refused({key: "a" * 254}, key, "a DNS-1123 subdomain")
    accepted({key: "ebs.csi.aws.com"})
    accepted({key: "a" * 253})


def test_gateway_namespace_is_a_dns_label() -> None:
    refused({"kubernetes.gatewayNamespace": "infra.gw"}, "kubernetes.gatewayNamespace", "a DNS-1123 label")
    accepted({"kubernetes.gatewayNamespace": "infra-gw"})


GATEWAY = {"target": "kubernetes", "kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public"}


def test_gateway_exposure_needs_the_gateways_addresses() -> None:
    # Without them the edge could not tell the gateway from any pod: whom to believe about the client.
    line = refused(GATEWAY, "kubernetes.gatewayAddresses", "the address ranges the Gateway's proxies reach the edge")
    assert line.startswith("Pulumi.dev.yaml: aixsss:kubernetes.gatewayAddresses = [] (default) is not allowed")
    accepted({**GATEWAY, "kubernetes.gatewayAddresses": ["10.244.0.0/16", "fd00:10:244::/56"]})
    # Only a Gateway's edge reads them: a LoadBalancer or Docker stack needs none.
    accepted({"target": "kubernetes"})
    accepted({**GATEWAY, "target": "docker"})


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_the_gateways_addresses_are_not_everyone(everyone: str) -> None:
    addresses = ["10.244.0.0/16", everyone]
    refused({**GATEWAY, "kubernetes.gatewayAddresses": addresses}, "kubernetes.gatewayAddresses", f"not {everyone}")


@pytest.mark.parametrize("bad", ["10.244.0.0/33", "10.244.0.1/16", "gateway", ""])
def test_the_gateways_addresses_are_ranges(bad: str) -> None:
    refused({**GATEWAY, "kubernetes.gatewayAddresses": [bad]}, "kubernetes.gatewayAddresses", "an address range")
    refused({**GATEWAY, "kubernetes.gatewayProxyNamespace": "Envoy"}, "kubernetes.gatewayProxyNamespace", "label")
    accepted({**GATEWAY, "kubernetes.gatewayAddresses": ["10.244.0.1/32"], "kubernetes.gatewayProxyNamespace": "eg"})


def test_queue_name_has_no_colon() -> None:
    # BullMQ: "Queue name cannot contain :"
    refused({"api.aiQueueName": "ai:jobs"}, "api.aiQueueName", "no ':'")
    refused({"api.aiQueueName": ""}, "api.aiQueueName", "not empty")
    accepted({"api.aiQueueName": "ai-jobs.v2"})


def test_image_references_follow_the_reference_grammar() -> None:
    refused({"images.api": "ghcr.io/Team/api:1.0"}, "images.api", "image reference")
    refused({"images.api": "ghcr.io/team/api:"}, "images.api", "image reference")
    refused({"images.api": "ghcr.io/team/api:1.0 "}, "images.api", "image reference")
    accepted({"images.api": "ghcr.io/team/api:1.0"})
    accepted({"images.api": "localhost:5000/team/api@sha256:" + "0" * 64})


def test_acme_server_is_https() -> None:
    refused({"tls.acmeServer": "http://acme.internal/dir"}, "tls.acmeServer", "an https:// URL")
    accepted({"tls.acmeServer": "https://acme-staging-v02.api.letsencrypt.org/directory"})


def test_migration_command_has_arguments() -> None:
    refused({"api.migrationCommand": []}, "api.migrationCommand", "a non-empty list")
    refused({"api.migrationCommand": ["npx", " "]}, "api.migrationCommand", "a non-empty list")
    accepted({"api.migrationCommand": ["prisma", "migrate", "deploy"]})


# --------------------------------------------------------------------------- physical limits


def test_replicas_fit_in_int32() -> None:
    refused({"web.replicas": 2**31}, "web.replicas", "less than or equal to 2147483647")
    accepted({"web.replicas": 2**31 - 1})


def test_rotation_has_a_ceiling_the_kubernetes_login_list_can_carry() -> None:
    # Every retired generation is listed in the CloudNativePG Cluster (database.cluster_logins).
    refused({"secrets.rotation": 1001}, "secrets.rotation", "less than or equal to 1000")
    refused({"secrets.rotation": -1}, "secrets.rotation", "greater than or equal to 0")
    accepted({"secrets.rotation": 1000})


def test_docker_minimum_cpu_is_a_hundredth() -> None:
    refused({"edge.cpuMillis": 9}, "edge.cpuMillis", "at least 10 on Docker")
    accepted({"edge.cpuMillis": 10})
    accepted({"edge.cpuMillis": 9, "target": "kubernetes"})  # Kubernetes counts in millicores


def test_one_edge_per_docker_host() -> None:
    # One Docker host publishes 80/443 once (README: one edge per Docker host).
    refused({"edge.replicas": 2}, "edge.replicas", "1 on Docker")
    accepted({"edge.replicas": 1})
    accepted({"edge.replicas": 2, "target": "kubernetes"})


def test_rate_limit_delay_fits_in_the_burst() -> None:
    # nginx refuses what is past the burst, so a delay above it would delay nothing (= nodelay).
    refused({"edge.apiRateBurst": 30, "edge.apiRateDelay": 31}, "edge.apiRateDelay", "at most edge.apiRateBurst (30)")
    accepted({"edge.apiRateBurst": 30, "edge.apiRateDelay": 30})
    accepted({"edge.apiRateDelay": 0})  # every request past the first paced
    refused({"edge.apiRateDelay": -1}, "edge.apiRateDelay", "greater than or equal to 0")


def test_docker_minimum_memory_is_six_megabytes() -> None:
    refused({"web.memoryMb": 5}, "web.memoryMb", "at least 6 on Docker")
    accepted({"web.memoryMb": 6})


def test_database_memory_holds_shared_buffers_and_connections() -> None:
    # 350 MB: shared_buffers 87 + 64 + 2 x 100 connections = 351 > 350.
    line = refused({"database.memoryMb": 350}, "database.memoryMb", "at least 351")
    assert "shared_buffers (87 MB)" in line
    accepted({"database.memoryMb": 351})


def test_redis_maxmemory_leaves_headroom_below_its_memory_limit() -> None:
    # 512 MB container: a quarter (128 MB) stays free, so maxmemory may be 384 at most.
    refused({"cache.memoryMb": 512, "cache.maxmemoryMb": 385}, "cache.maxmemoryMb", "at most 384")
    accepted({"cache.memoryMb": 512, "cache.maxmemoryMb": 384})
    refused({"cache.memoryMb": 512, "cache.maxmemoryMb": 512}, "cache.maxmemoryMb", "at most 384")
    # Small containers keep at least 64 MB.
    refused({"cache.memoryMb": 200, "cache.maxmemoryMb": 137}, "cache.maxmemoryMb", "at most 136")
    accepted({"cache.memoryMb": 200, "cache.maxmemoryMb": 136})


def test_certificate_validity_cannot_overflow() -> None:
    # Go's time.Duration ends at 2,562,047 hours; the CA lives 5x the leaf validity.
    refused({"tls.validityHours": 512410}, "tls.validityHours", "less than or equal to 512409")
    accepted({"tls.validityHours": 512409})


def test_connection_budget_fits_max_connections() -> None:
    # dev: (1 api + 1 surge + 1 worker + 1 surge + 1 migration) x 10 + 10 reserved = 60.
    line = refused({"database.maxConnections": 59}, "database.maxConnections", "at least 60")
    assert "database.connectionLimit 10" in line
    accepted({"database.maxConnections": 60})
    # More api replicas raise the budget: (4 + 1 + 1 + 1 + 1) x 5 + 10 = 50.
    refused(
        {"api.replicas": 4, "database.connectionLimit": 5, "database.maxConnections": 49},
        "database.maxConnections",
        "at least 50",
    )
    accepted({"api.replicas": 4, "database.connectionLimit": 5, "database.maxConnections": 50})


# --------------------------------------------------------------------------- combinations


@pytest.mark.parametrize("domain", ["aixsss.localhost", "aixsss.test", "shop.internal", "aixsss.home.arpa"])
def test_acme_refuses_a_name_no_public_ca_can_issue_for(domain: str) -> None:
    line = refused({**PROD_OK, "domain": domain}, "domain", "a name a public CA can issue for", "prod")
    assert "special-use" in line


def test_acme_accepts_a_public_name_and_warns_on_documentation_names() -> None:
    public = parse_stack_config({**PROD_OK, "domain": "aixsss.eu"}, "prod")
    assert public.warnings() == []
    example = parse_stack_config(PROD_OK, "prod")
    assert ["RFC 2606" in w for w in example.warnings()] == [True]
    # A self-signed dev stack on .localhost is fine.
    accepted({"domain": "aixsss.localhost"})


def test_acme_behind_a_load_balancer_needs_a_dns01_issuer() -> None:
    """cert-manager's HTTP-01 solver is reachable through a Gateway (or an Ingress controller),
    never through the edge's LoadBalancer Service: there only a DNS-01 ClusterIssuer can issue."""
    http01 = {**PROD_OK, "tls.acmeSolver": "http01"}
    line = refused(http01, "tls.acmeSolver", "dns01 when kubernetes.exposure is loadBalancer", "prod")
    assert line.startswith("Pulumi.prod.yaml: aixsss:tls.acmeSolver = 'http01' is not allowed:")
    assert "tls.clusterIssuer" in line and "kubernetes.exposure to gateway" in line
    accepted({**PROD_OK, "tls.acmeSolver": "dns01"}, "prod")
    gateway = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}
    accepted({**http01, **gateway}, "prod")
    accepted({**PROD_OK, **gateway, "tls.acmeSolver": "dns01"}, "prod")
    # On Docker lego answers HTTP-01 through the edge itself.
    docker = {"target": "docker", "api.replicas": 1, "edge.replicas": 1, "database.instances": 1}
    accepted({**http01, **docker, "cache.highAvailability": False})
    # Without ACME the solver is not used.
    accepted({"target": "kubernetes", "tls.acmeSolver": "http01"}, "staging")
    refused({"tls.acmeSolver": "tls-alpn01"}, "tls.acmeSolver", "'http01' or 'dns01'")


def test_a_dns01_solver_needs_a_cluster_issuer() -> None:
    line = refused({**PROD_OK, "tls.clusterIssuer": ""}, "tls.clusterIssuer", "a ClusterIssuer with a DNS-01", "prod")
    assert line.startswith("Pulumi.prod.yaml: aixsss:tls.clusterIssuer = '' is not allowed:")
    accepted({**PROD_OK, "tls.clusterIssuer": "letsencrypt-dns"}, "prod")
    gateway = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}
    # HTTP-01 behind a Gateway uses the program's own Issuer, no ClusterIssuer.
    accepted({**PROD_OK, **gateway, "tls.acmeSolver": "http01", "tls.clusterIssuer": ""}, "prod")


def test_publishing_data_ports_is_for_dev_only() -> None:
    refused({**PROD_OK, "docker.publishDataPorts": True}, "docker.publishDataPorts", "false in prod", "prod")
    accepted({**PROD_OK, "docker.publishDataPorts": False}, "prod")
    accepted({"docker.publishDataPorts": True})


def test_snake_case_spelling_is_refused_with_the_camel_case_key() -> None:
    found = problems({"api.ai_queue_name": "jobs", "api.aiQueueName": "jobs"})
    assert found == [
        "Pulumi.dev.yaml: aixsss:api.ai_queue_name = 'jobs' is not allowed: "
        "no such key: keys are camelCase (did you mean aixsss:api.aiQueueName?)"
    ]


def test_a_close_key_is_suggested() -> None:
    assert "did you mean aixsss:api.replicas?" in refused({"api.replica": 3}, "api.replica", "no such key")
    assert "did you mean aixsss:database.maxConnections?" in refused(
        {"database.maxconnections": 3}, "database.maxconnections", "no such key"
    )
    assert "see the config reference" in refused({"zzz": 1}, "zzz", "no such key")


@pytest.mark.parametrize("value", [["a.example.com"], '["a.example.com"]', '{"name": "x"}'])
def test_a_list_or_object_where_a_string_belongs_is_refused(value: Any) -> None:
    refused({"kubernetes.storageClass": value}, "kubernetes.storageClass", "a string, not a YAML list or object")
    accepted({"kubernetes.storageClass": "[standard]".strip("[]")})


def test_an_unknown_stack_name_needs_an_environment() -> None:
    line = refused({}, "environment", "dev, staging or prod", "qa")
    assert "pulumi config set aixsss:environment" in line
    accepted({"environment": "staging", **PINNED, "target": "kubernetes"}, "qa")


def test_every_problem_is_reported_at_once_and_an_unknown_key_hides_no_rule() -> None:
    flat = {
        **PROD_OK,
        "api.replica": 3,  # unknown key
        "api.replicas": 1,  # rule: 2 in prod on Kubernetes
        "images.web": "ghcr.io/aixsss/web:latest",  # rule: pinned
        "objectStore.bucket": "A",  # field rule
        "worker.concurrency": "many",  # type
        "tls.publicCertificate": "self-signed",  # rule: prod
    }
    lines = problems(flat, "prod")
    keys = sorted(line.split(" = ")[0].split(": ", 1)[1] for line in lines)
    assert keys == [
        "aixsss:api.replica",
        "aixsss:api.replicas",
        "aixsss:images.web",
        "aixsss:objectStore.bucket",
        "aixsss:tls.publicCertificate",
        "aixsss:worker.concurrency",
    ]
    assert all(line.startswith("Pulumi.prod.yaml: aixsss:") for line in lines)
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(flat, "prod")
    assert str(caught.value).startswith("invalid config for stack prod (6 problems; nothing was deployed):")
    assert isinstance(caught.value, pulumi.RunError)  # the CLI prints it without a traceback


def test_a_refused_value_does_not_make_rules_blame_its_default() -> None:
    # A bad maxmemory is reported once, as a type error, not again by the headroom rule.
    lines = problems({"cache.maxmemoryMb": "lots"})
    assert len(lines) == 1 and "aixsss:cache.maxmemoryMb = 'lots'" in lines[0]
    # A refused value a rule reads is not replaced by its default in that rule's verdict.
    lines = problems({"cache.memoryMb": 0, "cache.maxmemoryMb": 1024})
    assert len(lines) == 1 and "aixsss:cache.memoryMb = 0" in lines[0]
    lines = problems({"target": "kubernets", "edge.cpuMillis": 5})
    assert len(lines) == 1 and "aixsss:target = 'kubernets'" in lines[0]
    lines = problems({"tls.validityHours": 600000, "tls.earlyRenewalHours": 10000})
    assert len(lines) == 1 and "aixsss:tls.validityHours = 600000" in lines[0]
    # The control: with valid inputs the same rules do fire.
    assert "at most 384" in problems({"cache.memoryMb": 512, "cache.maxmemoryMb": 1024})[0]
    assert "at least 10 on Docker" in problems({"target": "docker", "edge.cpuMillis": 5})[0]


def test_an_email_domain_may_have_capitals() -> None:
    accepted({**PROD_OK, "tls.acmeEmail": "Ops@MyCompany.com"}, "prod")
    refused({**PROD_OK, "tls.acmeEmail": "ops@mycompany"}, "tls.acmeEmail", "an e-mail address", "prod")


def test_a_secret_under_a_misspelt_or_refused_key_is_never_shown() -> None:
    value = "S3CRET-VALUE-THAT-MUST-NOT-LEAK-0123456789"
    message = load_error("dev", {"aixsss:secrets.jwtSecert": value}, ("aixsss:secrets.jwtSecert",))
    assert "aixsss:secrets.jwtSecert = [secret] is not allowed: no such key (did you mean" in message
    assert value not in message
    message = load_error("dev", {"aixsss:api.replicas": "S3CRETREPLICAS"}, ("aixsss:api.replicas",))
    assert "aixsss:api.replicas = [secret] is not allowed" in message and "S3CRETREPLICAS" not in message
    # The control: the same plain value is shown, so the user can see what is wrong.
    assert "aixsss:api.replicas = 'PLAIN'" in load_error("dev", {"aixsss:api.replicas": "PLAIN"})


def test_a_kubeconfig_may_be_json() -> None:
    kubeconfig = '{"apiVersion":"v1","kind":"Config","users":[{"name":"u","user":{"token":"TOPSECRET"}}]}'
    assert load("dev", {"aixsss:kubernetes.kubeconfig": kubeconfig}).kubernetes.kubeconfig == kubeconfig


# --------------------------------------------------------------------------- the engine's path


def load(stack: str, config: dict[str, str], secret_keys: tuple[str, ...] = ()) -> Any:
    """load_stack_config as `pulumi up` runs it: config (and its secret keys) from the engine; the
    application's images from PINNED unless the case sets its own."""
    config = {**{f"aixsss:{k}": v for k, v in PINNED.items()}, **config}
    pulumi.runtime.set_all_config(config, list(secret_keys))
    pulumi.runtime.set_mocks(EngineLikeMocks(), project="aixsss", stack=stack, preview=False)
    return load_stack_config()


def load_error(stack: str, config: dict[str, str], secret_keys: tuple[str, ...] = ()) -> str:
    with pytest.raises(StackConfigError) as caught:
        load(stack, config, secret_keys)
    return str(caught.value)


def test_a_near_miss_of_the_namespace_is_reported() -> None:
    message = load_error("dev", {"aixss:api.replicas": "2", "aixsss:target": "docker", "kubernetes:context": "x"})
    assert "Pulumi.dev.yaml: aixss:api.replicas = '2' is not allowed: no such namespace" in message
    assert "did you mean aixsss:api.replicas?" in message
    assert "kubernetes:context" not in message  # another provider's namespace is not a typo
    assert load("dev", {"aixsss:target": "docker", "kubernetes:context": "x"}).target == "docker"


def test_a_missing_stack_file_is_named_as_the_cause_of_the_defaults() -> None:
    assert not os.path.exists("Pulumi.qa.yaml")
    message = load_error("qa", {})
    assert "note: there is no Pulumi.qa.yaml next to Pulumi.yaml, so every value is a default" in message
    assert "aixsss:environment = 'qa' (default; Pulumi.qa.yaml does not exist) is not allowed" in message
    # Config from elsewhere (`pulumi up --config-file`, stackConfigDir) is fine without the file.
    config = {"aixsss:environment": "staging", "aixsss:target": "kubernetes"}
    config |= {f"aixsss:{k}": v for k, v in PINNED.items()}
    assert load("qa", config).environment == "staging"
    # The control: with the file there, no note.
    assert "note:" not in load_error("dev", {"aixsss:api.replicas": "0"})


def test_config_strings_from_the_cli_are_typed_like_the_declarations() -> None:
    config = load("dev", {"aixsss:api.replicas": "3", "aixsss:docker.publishDataPorts": "true"})
    assert config.api.replicas == 3 and config.docker.publish_data_ports is True
    assert "aixsss:api.replicas = 'three'" in load_error("dev", {"aixsss:api.replicas": "three"})


# --------------------------------------------------------------------------- supplied secrets

KEY_32 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("name", "bad", "good", "allowed"),
    [
        ("jwtSecret", "j" * 31, "j" * 32, "at least 32 characters"),
        ("apiKeyEncryptionKey", base64.b64encode(bytes(31)).decode(), KEY_32, "base64 of 32 random bytes"),
        ("apiKeyEncryptionKey", "k" * 44 + "!", KEY_32, "base64 of 32 random bytes"),
        ("redisPassword", "p@ssword-0123456789", "password-0123456789", "only A-Z a-z 0-9"),
        ("redisPassword", "short", "s" * 16, "at least 16 characters"),
        ("postgresPassword", "has space 0123456789", "p@ss:w/rd?#-0123456789", "no spaces"),
        ("minioRootUser", "ab", "abc", "at least 3 characters"),
        ("minioAppSecretKey", "s" * 15, "s" * 16, "at least 16 characters"),
    ],
)
def test_supplied_secrets_are_checked_without_showing_them(name: str, bad: str, good: str, allowed: str) -> None:
    key = {
        "jwtSecret": "secrets.jwtSecret",
        "apiKeyEncryptionKey": "secrets.apiKeyEncryptionKey",
        "redisPassword": "secrets.redisPassword",
        "postgresPassword": "secrets.postgresPassword",
        "minioRootUser": "secrets.minioRootUser",
        "minioAppSecretKey": "secrets.minioAppSecretKey",
    }[name]
    message = load_error("dev", {f"aixsss:{key}": bad}, (f"aixsss:{key}",))
    assert f"aixsss:{key} = [secret] is not allowed: {allowed}" in message
    assert bad not in message
    load("dev", {f"aixsss:{key}": good}, (f"aixsss:{key}",))


def test_a_password_with_url_characters_is_percent_encoded_in_database_url() -> None:
    password = "p@ss:w/rd?#%-0123456789"
    deployment = run_program("dev", secret_config={"secrets.postgresPassword": password})
    api = deployment.named("api", "docker:index/container:Container").plain
    url = next(e.split("=", 1)[1] for e in api["envs"] if e.startswith("DATABASE_URL="))
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("postgres", 5432, "/aixsss")
    assert unquote(parts.password or "") == password
    assert "connection_limit=10" in parts.query


def _certificate(names: list[str], *, days: int = 90, start_days_ago: int = 1) -> tuple[str, str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=start_days_ago))
        .not_valid_after(now + datetime.timedelta(days=days - start_days_ago))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, key


CERT_KEYS = ("aixsss:tls.suppliedCertificatePem", "aixsss:tls.suppliedPrivateKeyPem")


def supplied(cert: str, key: str, **extra: str) -> dict[str, str]:
    return {
        "aixsss:tls.publicCertificate": "supplied",
        "aixsss:domain": "aixsss.localhost",
        CERT_KEYS[0]: cert,
        CERT_KEYS[1]: key,
        **extra,
    }


def test_a_valid_supplied_certificate_is_accepted() -> None:
    cert, key, _ = _certificate(["aixsss.localhost"])
    assert load("dev", supplied(cert, key), CERT_KEYS).tls.public_certificate == "supplied"
    wildcard, wildcard_key, _ = _certificate(["*.example.org"])
    load("dev", supplied(wildcard, wildcard_key, **{"aixsss:domain": "app.example.org"}), CERT_KEYS)


@pytest.mark.parametrize(
    ("case", "allowed"),
    [
        ("garbage", "a PEM certificate chain"),
        ("expired", "a certificate still valid (it expired"),
        ("not yet valid", "a certificate already valid"),
        ("other key", "they do not match"),
        ("other domain", "whose SANs cover aixsss.localhost (it names other.localhost)"),
        ("wildcard too deep", "whose SANs cover a.b.example.org"),
    ],
)
def test_a_broken_supplied_certificate_is_refused(case: str, allowed: str) -> None:
    cert, key, _ = _certificate(["aixsss.localhost"])
    config = supplied(cert, key)
    if case == "garbage":
        config[CERT_KEYS[0]] = "not a certificate"
    elif case == "expired":
        config[CERT_KEYS[0]] = _certificate(["aixsss.localhost"], days=10, start_days_ago=20)[0]
        config[CERT_KEYS[1]] = key  # mismatch too, but the expiry must be named
    elif case == "not yet valid":
        cert, key, _ = _certificate(["aixsss.localhost"], start_days_ago=-5)
        config = supplied(cert, key)
    elif case == "other key":
        config[CERT_KEYS[1]] = _certificate(["aixsss.localhost"])[1]
    elif case == "other domain":
        cert, key, _ = _certificate(["other.localhost"])
        config = supplied(cert, key)
    else:
        cert, key, _ = _certificate(["*.example.org"])
        config = supplied(cert, key, **{"aixsss:domain": "a.b.example.org"})
    message = load_error("dev", config, CERT_KEYS)
    assert allowed in message
    for secret in (config[CERT_KEYS[0]], config[CERT_KEYS[1]]):
        assert all(line not in message for line in secret.splitlines() if len(line) > 20)


def test_a_supplied_certificate_that_is_not_used_is_refused() -> None:
    cert, key, _ = _certificate(["aixsss.localhost"])
    config = supplied(cert, key, **{"aixsss:tls.publicCertificate": "self-signed"})
    message = load_error("dev", config, CERT_KEYS)
    assert "aixsss:tls.suppliedCertificatePem = [secret] is not allowed: unused while tls.publicCertificate" in message


def test_supplied_certificate_reaches_the_edge() -> None:
    cert, key, _ = _certificate(["aixsss.localhost"])
    deployment = run_program(
        "dev",
        overrides={"tls.publicCertificate": "supplied"},
        secret_config={"tls.suppliedCertificatePem": cert, "tls.suppliedPrivateKeyPem": key},
    )

    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    edge = deployment.named("edge", "docker:index/container:Container")
    assert any(cert.strip() in s for s in strings(delivered(deployment, edge)))


# --------------------------------------------------------------------------- the application's images and fit


def test_app_images_are_built_or_given_never_both_nor_neither() -> None:
    none = {"images.api": "", "images.worker": "", "images.web": ""}
    for name in ("api", "worker", "web"):
        refused(none, f"images.{name}", "or set app.source to an application checkout to build it")
    refused(
        {"app.source": "../aixsss", "images.web": "registry.example.com/web:1"}, "images.web", "empty while app.source"
    )
    accepted({"app.source": "../aixsss"})
    accepted({})  # PINNED names all three


def test_kubernetes_needs_a_registry_for_built_images() -> None:
    refused({"app.source": "../aixsss", "target": "kubernetes"}, "app.registry", "a registry to push the built images")
    accepted({"app.source": "../aixsss", "target": "kubernetes", "app.registry": "registry.example.com/team"})
    accepted({"app.source": "../aixsss", "target": "docker"})  # built on the Docker host itself
    refused({"app.registry": "Registry.example.com/Team:1"}, "app.registry", "no tag")
    # pulumi-docker pushes only fully qualified names: a registry host comes first.
    refused({"app.registry": "team"}, "app.registry", "a registry host")
    accepted({"app.registry": "docker.io/team"})
    accepted({"app.registry": "localhost:5000/aixsss"})
    refused({"app.platform": "linux/riscv64"}, "app.platform", "linux/amd64")


def test_worker_grace_outlasts_its_longest_ai_call() -> None:
    # The app's provider calls time out after AI_REQUEST_TIMEOUT_MS (120 s by default); closing
    # BullMQ, Prisma and Redis takes the margin.
    refused({"worker.stopGraceSeconds": 149}, "worker.stopGraceSeconds", "at least 150")
    accepted({"worker.stopGraceSeconds": 150})
    refused({"worker.aiRequestTimeoutSeconds": 300}, "worker.stopGraceSeconds", "at least 330")
    accepted({"worker.aiRequestTimeoutSeconds": 300, "worker.stopGraceSeconds": 330})


def test_an_external_object_store_needs_an_https_endpoint() -> None:
    refused({"objectStore.mode": "external"}, "objectStore.endpoint", "the https:// endpoint of your S3 service")
    refused(
        {"objectStore.mode": "external", "objectStore.endpoint": "http://s3.example.com"},
        "objectStore.endpoint",
        "https://",
    )
    refused(
        {"objectStore.endpoint": "https://s3.example.com"},
        "objectStore.endpoint",
        "empty when objectStore.mode is bundled",
    )
    accepted({"objectStore.mode": "external", "objectStore.endpoint": "https://s3.example.com"})
    refused({"objectStore.mode": "s3"}, "objectStore.mode", "bundled")
    # On Kubernetes the pods' egress policy opens 443 to public addresses only.
    on_port = {"objectStore.mode": "external", "objectStore.endpoint": "https://s3.example.com:9000"}
    refused({**on_port, "target": "kubernetes"}, "objectStore.endpoint", "an endpoint on port 443 on Kubernetes")
    accepted(on_port)  # Docker: egress routes anywhere


def test_an_external_object_store_needs_the_apps_credentials_supplied() -> None:
    config = {"aixsss:objectStore.mode": "external", "aixsss:objectStore.endpoint": "https://s3.example.com"}
    message = load_error("dev", config)
    for key in ("minioAppAccessKey", "minioAppSecretKey"):
        assert f"aixsss:secrets.{key} = '' (default) is not allowed: set when objectStore.mode is external" in message


def test_prod_keeps_versions_on_the_bundled_store_for_a_bounded_time() -> None:
    refused(
        {**PROD_OK, "objectStore.versioning": False}, "objectStore.versioning", "true in prod with the bundled store",
        "prod",
    )  # fmt: skip
    accepted({"objectStore.versioning": False})  # dev and staging may run without
    accepted({"objectStore.versioning": False}, "staging")
    # An external store is set up by its owner: the program configures nothing there.
    accepted({**PROD_OK, "objectStore.versioning": False, "objectStore.mode": "external",
              "objectStore.endpoint": "https://s3.example.com"}, "prod")  # fmt: skip
    # Days: at least one (S3 refuses NoncurrentDays 0), at most ten years.
    refused({"objectStore.noncurrentVersionDays": 0}, "objectStore.noncurrentVersionDays", "greater than or equal to 1")
    accepted({"objectStore.noncurrentVersionDays": 1})
    refused({"objectStore.noncurrentVersionDays": 3651}, "objectStore.noncurrentVersionDays", "less than or equal to")
    accepted({"objectStore.noncurrentVersionDays": 3650})


# --------------------------------------------------------------------------- PostgreSQL replicas and backups


def test_postgres_instances_fit_the_target() -> None:
    refused({"database.instances": 2}, "database.instances", "1 on Docker")
    accepted({"database.instances": 3, "target": "kubernetes"})
    refused({**PROD_OK, "database.instances": 1}, "database.instances", "at least 2 in prod on Kubernetes", "prod")
    refused(
        {"database.instances": 3, "database.synchronousReplicas": 3, "target": "kubernetes"},
        "database.synchronousReplicas",
        "fewer than database.instances (3)",
    )
    accepted({"database.instances": 3, "database.synchronousReplicas": 2, "target": "kubernetes"})
    refused({"database.instances": 10}, "database.instances", "less than or equal to 9")


def test_backups_keep_their_own_bucket_and_restore_into_a_new_folder() -> None:
    refused({"backup.bucket": "aixsss"}, "backup.bucket", "a bucket other than objectStore.bucket")
    refused({"backup.hourUtc": 24}, "backup.hourUtc", "less than or equal to 23")
    restore = {"target": "kubernetes", "backup.restoreFrom": "postgres"}
    refused(restore, "backup.serverName", "a new server name when restoring")
    accepted({**restore, "backup.serverName": "postgres-2"})
    timed = {**restore, "backup.serverName": "postgres-2"}
    refused({**timed, "backup.restoreTargetTime": "2026-11-29 08:00"}, "backup.restoreTargetTime", "RFC 3339")
    accepted({**timed, "backup.restoreTargetTime": "2026-11-29T08:00:00Z"})
    refused(
        {"backup.restoreTargetTime": "2026-11-29T08:00:00Z", "target": "kubernetes"},
        "backup.restoreTargetTime",
        "empty unless backup.restoreFrom",
    )
    refused({"backup.restoreFrom": "postgres", "backup.serverName": "p2"}, "backup.restoreFrom", "empty on Docker")


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_external_backups_need_their_own_credentials(target: str) -> None:
    config = {
        "aixsss:target": target,
        "aixsss:objectStore.mode": "external",
        "aixsss:objectStore.endpoint": "https://s3.example.com",
    }
    message = load_error("dev", config)
    for key in ("backupAccessKey", "backupSecretKey"):
        assert f"aixsss:secrets.{key} = '' (default) is not allowed: set when objectStore.mode is external" in message
    # Without backups, only the app's keys are needed.
    assert "backupAccessKey" not in load_error("dev", {**config, "aixsss:backup.enabled": "false"})
