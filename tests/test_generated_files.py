"""What the generated configuration files say, and that the deployed copies are those files."""

from __future__ import annotations

import hashlib
import json

import pytest
from harness import GATEWAY_ADDRESSES, carrier_of, delivered, plain_strings, reveal, run_program

from components.conf import nginx, postgres, redis
from components.object_store import bootstrap_script, bucket_policy
from components.platforms.kubernetes import PART_OF

EDGE = nginx.EdgeSettings(
    server_name="app.example.com",
    api_upstream="api:3001",
    web_upstream="web:8080",
    certificate_path="/tls/tls.crt",
    key_path="/tls/tls.key",
)


def test_nginx_tls_redirect_and_headers() -> None:
    conf = nginx.render(EDGE)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "location / { return 301 https://$host$request_uri; }" in conf
    # The server's, the hashed assets' and the API's (add_header does not inherit).
    assert conf.count('add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;') == 3
    assert 'add_header X-Content-Type-Options "nosniff" always;' in conf
    assert "server_tokens off;" in conf and "gzip on;" in conf


def test_nginx_routes_limits_and_caching() -> None:
    conf = nginx.render(EDGE)
    assert "location /api/ {" in conf and "proxy_pass http://api;" in conf
    assert "server api:3001 resolve max_fails=1 fail_timeout=10s;" in conf and "keepalive 32;" in conf
    # `resolve` needs the upstream's state in shared memory, and a resolver to ask.
    assert "zone upstream_api 64k;" in conf and "resolver 127.0.0.11 valid=5s ipv6=off;" in conf
    assert "client_max_body_size 10m;" in conf
    assert "limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;" in conf
    assert "limit_req zone=api burst=120 delay=20;" in conf and "limit_req_status 429;" in conf
    assert "keepalive_requests 10000;" in conf
    assert 'add_header Cache-Control "public, max-age=31536000, immutable" always;' in conf
    # Hashed assets only, in the directory the platforms make writable (tests/test_servers.py runs it).
    assert conf.count("proxy_cache assets;") == 1
    assert "proxy_cache_path /var/cache/aixsss levels=1:2 keys_zone=assets:1m max_size=32m" in conf


def test_nginx_behind_gateway_serves_only_forwarded_https() -> None:
    gateway = ("10.244.0.0/16", "fd00:10::/64")
    conf = nginx.render(
        nginx.EdgeSettings(**{**EDGE.__dict__, "trust_forwarded_proto": True, "trusted_proxies": gateway})
    )
    # The scheme counts only from the gateway's addresses (tests/test_client_address.py runs it).
    guard = 'if ($gateway_proto != "https") { return 301 https://$host$request_uri; }'
    assert "set_real_ip_from 10.244.0.0/16;" in conf and "set_real_ip_from fd00:10::/64;" in conf
    assert "real_ip_header X-Forwarded-For;" in conf and "real_ip_recursive on;" in conf
    http_server = conf.split("listen 8443 ssl;")[0]
    # Each of the three app locations on the plain listener checks; /healthz does not.
    assert http_server.count(guard) == 3
    assert 'location = /healthz { access_log off; return 200 "ok\\n"; }' in http_server
    assert guard not in conf.split("listen 8443 ssl;")[1]


def test_nginx_behind_gateway_without_its_addresses_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the gateway's addresses"):
        nginx.render(nginx.EdgeSettings(**{**EDGE.__dict__, "trust_forwarded_proto": True}))
    # Without a gateway nothing is believed from any peer: no realip, the guard never rendered.
    conf = nginx.render(nginx.EdgeSettings(**{**EDGE.__dict__, "trusted_proxies": ("10.0.0.0/8",)}))
    assert "real_ip" not in conf and "$gateway_proto" not in conf


def test_redis_settings() -> None:
    conf = redis.render(
        redis.RedisSettings(passwords=("pw", "pw2"), maxmemory_mb=300, cert_path="/c", key_path="/k", ca_path="/ca")
    )
    lines = conf.splitlines()
    for line in (
        "port 0",
        "tls-port 6379",
        # Both passwords, as SHA-256 hashes; no requirepass (it would leave one password).
        f"user default on resetpass #{hashlib.sha256(b'pw').hexdigest()} #{hashlib.sha256(b'pw2').hexdigest()} "
        "~* &* +@all",
        "appendonly yes",
        "maxmemory 300mb",
        "maxmemory-policy noeviction",
    ):
        assert line in lines


def test_postgres_hba_requires_tls_and_scram() -> None:
    settings = postgres.PostgresSettings(
        cert_path="/c", key_path="/k", hba_path="/h", max_connections=50, shared_buffers_mb=128
    )
    rules = [line.split() for line in postgres.render_hba(settings).splitlines() if not line.startswith("#")]
    assert all(rule[-1] in ("scram-sha-256", "reject") for rule in rules if rule[0] != "local")
    assert [r[0] for r in rules if r[-1] == "scram-sha-256"] == ["hostssl", "hostssl"]
    # The socket: the superuser by peer authentication (its OS user, pg_ident.conf), nothing else.
    assert [r for r in rules if r[0] == "local"] == [
        ["local", "all", "postgres", "peer", "map=superuser"],
        ["local", "all", "all", "reject"],
    ]
    assert rules[-1][0] == "host" and rules[-1][-1] == "reject"
    conf = postgres.render_conf(settings)
    assert "ssl = on" in conf and "password_encryption = 'scram-sha-256'" in conf


def test_minio_app_policy_is_bucket_only() -> None:
    policy = bucket_policy("media")
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::media", "arn:aws:s3:::media/*"}
    assert not any("admin:" in a or a == "s3:*" for s in policy["Statement"] for a in s["Action"])
    script = bootstrap_script("media", "https://minio:9000")
    assert "mc mb --ignore-existing root/media" in script and "mc anonymous set none root/media" in script
    # Versions outlive a delete: the user may delete objects, never a version (MinIO lets
    # s3:DeleteObject remove versions unless s3:DeleteObjectVersion is denied outright).
    actions = {(s["Effect"], a) for s in policy["Statement"] for a in s["Action"]}
    assert ("Deny", "s3:DeleteObjectVersion") in actions and ("Allow", "s3:DeleteObjectVersion") not in actions
    assert not any(a in ("s3:PutBucketVersioning", "s3:PutLifecycleConfiguration") for _, a in actions)
    lines = script.splitlines()
    assert "mc version enable root/media" in lines
    # The whole lifecycle configuration, imported (replaced) after versioning is on: one rule.
    imported = lines.index("mc ilm rule import root/media <<'EOF'")
    assert imported > lines.index("mc version enable root/media") and lines[imported + 2] == "EOF"
    (rule,) = json.loads(lines[imported + 1])["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 14}
    assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": True} and rule["Status"] == "Enabled"


def test_deployed_files_are_the_generated_ones_on_docker() -> None:
    d = run_program("dev")
    edge = delivered(d, d.named("edge", "docker:index/container:Container"))
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in edge["/etc/aixsss/nginx.conf"]["content"]
    assert "server_name aixsss.localhost;" in edge["/etc/aixsss/nginx.conf"]["content"]
    redis_carrier = carrier_of(d, d.named("redis", "docker:index/container:Container"))
    files = {u["file"]: u["content"] for u in reveal(redis_carrier.inputs["uploads"])}
    assert "maxmemory-policy noeviction" in files["/etc/aixsss/redis.conf"]
    # The file holding the password is uploaded only as a secret.
    assert "user default on resetpass #" in files["/etc/aixsss/redis.conf"]
    assert not any("user default" in text for text in plain_strings(redis_carrier.inputs))
    key = next(u for u in reveal(redis_carrier.inputs["uploads"]) if u["file"].endswith("server.key"))
    assert key["permissions"] == "0600" and key["owner"] == "999"


def test_deployed_files_are_the_generated_ones_on_kubernetes() -> None:
    d = run_program("staging")
    config_map = d.named("edge-files", "kubernetes:core/v1:ConfigMap").plain["data"]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in config_map["etc_aixsss_nginx.conf"]
    redis_secret = d.named("redis-secret-files", "kubernetes:core/v1:Secret").plain["stringData"]
    assert "maxmemory-policy noeviction" in redis_secret["etc_aixsss_redis.conf"]


def test_migrations_run_again_only_for_a_new_release() -> None:
    given = {"app.source": "", "images.api": "ghcr.io/aixsss/api:1.0.0", "images.worker": "w:1", "images.web": "x:1"}
    first = run_program("dev", overrides=given).of_type("docker:index/container:Container")
    again = run_program("dev", overrides=given).of_type("docker:index/container:Container")
    upgraded = run_program("dev", overrides={**given, "images.api": "ghcr.io/aixsss/api:2.0.0"}).of_type(
        "docker:index/container:Container"
    )

    def job(containers: list) -> str:  # type: ignore[type-arg]
        return next(c.name for c in containers if c.name.startswith("api-migrate") and c.name != "api-migrate-config")

    assert job(first) == job(again) and job(first) != job(upgraded)


def test_kubernetes_provider_options_from_config() -> None:
    d = run_program("staging", overrides={"kubernetes.renderYamlTo": "out/staging", "kubernetes.kubeconfig": "/kc"})
    provider = d.of_type("pulumi:providers:kubernetes")[0].plain
    assert provider["renderYamlToDirectory"] == "out/staging" and provider["context"] == "staging"
    assert provider["kubeconfig"] == "/kc" and provider["namespace"] == "aixsss-staging"


def test_gateway_exposure_uses_an_http_route() -> None:
    d = run_program(
        "prod",
        overrides={
            "kubernetes.exposure": "gateway",
            "kubernetes.gatewayName": "public",
            "kubernetes.gatewayNamespace": "gateways",
            **GATEWAY_ADDRESSES,
        },
    )
    route = d.named("edge-route").plain
    assert route["kind"] == "HTTPRoute" and route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["aixsss.example.com"]
    service = d.named("edge", "kubernetes:core/v1:Service").plain
    assert service["spec"]["type"] == "ClusterIP"


ACME_CHALLENGE = "location /.well-known/acme-challenge/"
TEMPORARY_CERTIFICATE = "cert-manager.io/issue-temporary-certificate"
ISSUER = "kubernetes:cert-manager.io/v1:Issuer"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def test_prod_acme_on_kubernetes_uses_cert_manager() -> None:
    """prod (LoadBalancer exposure): the ClusterIssuer, which tls.acmeSolver dns01 says solves DNS-01."""
    d = run_program("prod")
    cert = d.named("edge-public-certificate").plain
    assert cert["kind"] == "Certificate" and cert["spec"]["dnsNames"] == ["aixsss.example.com"]
    assert cert["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "letsencrypt"}
    # cert-manager fills the Secret with a temporary certificate at once: the edge, which mounts
    # it, starts before the first issuance.
    assert cert["metadata"]["annotations"][TEMPORARY_CERTIFICATE] == "true"
    # No HTTP-01 here: no Issuer of the program's, no solver admitted, no webroot in nginx.
    assert d.of_type(ISSUER) == []
    assert not any("acme" in p.name for p in d.of_type(NETWORK_POLICY))
    assert (
        ACME_CHALLENGE
        not in d.named("edge-files", "kubernetes:core/v1:ConfigMap").plain["data"]["etc_aixsss_nginx.conf"]
    )
    # cert-manager's temporary certificate is what the edge starts on: no bootstrap one is made.
    assert not [r.name for r in d.registrations if r.name.startswith("public-bootstrap")]


def test_acme_behind_a_gateway_solves_http01_on_it() -> None:
    """kubernetes.exposure gateway with tls.acmeSolver http01: the program's Issuer, whose
    cert-manager solver the same Gateway routes to; the edge takes no part in the challenge."""
    gateway = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}
    d = run_program("prod", overrides={**gateway, "kubernetes.gatewayNamespace": "gw", "tls.acmeSolver": "http01"})
    issuer = d.named("edge-acme-issuer", ISSUER).plain
    assert issuer["metadata"] == {
        "name": "edge-acme",
        "namespace": "aixsss-prod",
        "labels": {"app.kubernetes.io/name": "edge", **PART_OF},
    }
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["email"] == "ops@aixsss.example.com"
    assert acme["privateKeySecretRef"] == {"name": "edge-acme-account"}
    [solver] = acme["solvers"]
    route_solver = solver["http01"]["gatewayHTTPRoute"]
    assert route_solver["parentRefs"] == [{"name": "public", "namespace": "gw", "kind": "Gateway"}]
    # cert-manager's default would be a NodePort Service: a port on every node, for the solver.
    assert route_solver["serviceType"] == "ClusterIP"
    pod_security = route_solver["podTemplate"]["spec"]["securityContext"]
    assert pod_security == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    certificate = d.named("edge-public-certificate")
    assert certificate.plain["spec"]["issuerRef"] == {"kind": "Issuer", "name": "edge-acme"}
    assert certificate.plain["metadata"]["annotations"][TEMPORARY_CERTIFICATE] == "true"
    assert d.depends_on(certificate, d.named("edge-acme-issuer", ISSUER))
    # The solver pods (cert-manager's label, its acmesolver's port 8089) are admitted from any
    # peer on that port alone, as the edge's listeners are: the Gateway's data plane is outside.
    solver_policy = d.named("acme-solver-from-world", NETWORK_POLICY).plain["spec"]
    assert solver_policy["podSelector"] == {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    assert solver_policy["policyTypes"] == ["Ingress"]
    assert solver_policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8089}]}]
    # None of the stack's own pods carries the solver's label: the policy admits nothing else.
    kinds = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
    for workload in (r for r in d.registrations if r.type in kinds):
        labels = workload.plain["spec"]["template"]["metadata"]["labels"]
        assert "acme.cert-manager.io/http01-solver" not in labels, workload.name
    # The challenge never reaches the edge: its nginx has no webroot to answer from.
    assert (
        ACME_CHALLENGE
        not in d.named("edge-files", "kubernetes:core/v1:ConfigMap").plain["data"]["etc_aixsss_nginx.conf"]
    )


def test_acme_on_docker_keeps_the_webroot_lego_fills() -> None:
    docker = {"target": "docker", "api.replicas": 1, "edge.replicas": 1, "database.instances": 1}
    docker |= {"database.synchronousReplicas": 0, "cache.highAvailability": False}
    d = run_program("prod", overrides=docker)
    edge = delivered(d, d.named("edge", "docker:index/container:Container"))
    assert f"{ACME_CHALLENGE} {{ root /var/www/acme; }}" in edge["/etc/aixsss/nginx.conf"]["content"]
    # lego starts on the program's bootstrap certificate (pulumi-tls), issued for the domain.
    request = d.named("public-bootstrap-csr").plain
    assert request["dnsNames"] == ["aixsss.example.com"]


def test_docker_host_from_config() -> None:
    d = run_program("dev", overrides={"docker.host": "ssh://deploy@docker.example.com"})
    assert d.of_type("pulumi:providers:docker")[0].plain["host"] == "ssh://deploy@docker.example.com"


def test_the_edges_asset_cache_has_a_writable_directory_of_its_own() -> None:
    # The root filesystem is read-only: nginx's proxy_cache_path must be a tmpfs / emptyDir.
    path = "/var/cache/aixsss"
    assert f"proxy_cache_path {path} " in nginx.render(EDGE)
    (edge,) = [c for c in run_program("dev").of_type("docker:index/container:Container") if c.name == "edge"]
    assert reveal(edge.inputs)["tmpfs"][path] == "rw,noexec,nosuid,size=64m"
    pod = run_program("staging").named("edge", "kubernetes:apps/v1:Deployment").plain["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
