"""The security-relevant directives of each server's configuration, as deployed.

Read from what the containers and pods actually receive (Docker uploads, the ConfigMap or
Secret behind a pod's mount), for both targets, and compared with directives written out here.
The real-server tests show the servers honour these files; this module pins the settings a
real-server test cannot tell apart (a TLS floor a modern client never probes, a header value).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from harness import Deployment, delivered, k8s_file, reveal, run_program

from components import web
from components.conf import nginx

CONTAINER = "docker:index/container:Container"


@functools.cache
def deployed(stack: str, target: str) -> Deployment:
    return run_program(stack, overrides={"target": target})


def deployed_file(d: Deployment, workload: str, path: str) -> str:
    if d.of_type(CONTAINER):
        return delivered(d, d.named(workload, CONTAINER))[path]["content"]
    return k8s_file(d, workload, path)


CASES = [("dev", "docker"), ("staging", "kubernetes"), ("prod", "kubernetes")]


@pytest.fixture(params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def d(request: pytest.FixtureRequest) -> Deployment:
    return deployed(*request.param)


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def kubernetes(d: Deployment) -> bool:
    return not d.of_type(CONTAINER)


def postgres_cluster(d: Deployment) -> dict[str, Any]:
    """Kubernetes: the CloudNativePG Cluster's spec, from which the operator writes
    postgresql.conf and pg_hba.conf itself (no file of ours is mounted)."""
    [cluster] = [r.plain for r in d.registrations if r.plain.get("kind") == "Cluster"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["metadata"]["name"] == "postgres"
    configmaps = d.of_type("kubernetes:core/v1:ConfigMap")
    assert not [c.name for c in configmaps if any(k.endswith(".conf") for k in c.plain["data"] if "postgres" in k)]
    # (The act-as-owner Job's files are a client's: its CA.)
    assert not [c.name for c in configmaps if c.name.startswith("postgres") and "act-as-owner" not in c.name]
    return cluster["spec"]


def test_postgresql_conf(d: Deployment) -> None:
    if kubernetes(d):
        spec = postgres_cluster(d)
        parameters = spec["postgresql"]["parameters"]
        assert parameters["ssl_min_protocol_version"] == "TLSv1.2"
        assert parameters["password_encryption"] == "scram-sha-256"
        assert parameters["log_connections"] == "on" and parameters["log_disconnections"] == "on"
        # ssl, the port, the certificate paths and hba_file are the operator's (it refuses them as
        # parameters): TLS from the stack PKI's certificate and CA, through their Secrets.
        assert set(parameters).isdisjoint({"ssl", "port", "ssl_cert_file", "ssl_key_file", "hba_file"})
        assert spec["certificates"] == {"serverCASecret": "postgres-ca", "serverTLSSecret": "postgres-server-tls"}
        server = d.named("postgres-server-tls", "kubernetes:core/v1:Secret").plain
        assert server["type"] == "kubernetes.io/tls" and set(server["stringData"]) == {"tls.crt", "tls.key"}
        assert server["stringData"]["tls.crt"] == reveal(d.named("postgres-cert").outputs["certPem"])
        ca = d.named("postgres-ca", "kubernetes:core/v1:Secret").plain["stringData"]
        assert set(ca) == {"ca.crt"}  # the CA's certificate only: its key stays with the program
        assert not [p for p in parameters if p.startswith(("ssl_max_protocol_version", "ssl_ciphers"))]
        return
    conf = directives(deployed_file(d, "postgres", "/etc/aixsss/postgresql.conf"))
    for line in (
        "ssl = on",
        "ssl_min_protocol_version = 'TLSv1.2'",
        "password_encryption = 'scram-sha-256'",
        "ssl_cert_file = '/etc/aixsss/tls/server.crt'",
        "ssl_key_file = '/etc/aixsss/tls/server.key'",
        "hba_file = '/etc/aixsss/pg_hba.conf'",
        "port = 5432",
    ):
        assert line in conf, line
    assert not [line for line in conf if line.startswith(("ssl_max_protocol_version", "ssl_ciphers"))]


def test_pg_hba_conf(d: Deployment) -> None:
    if kubernetes(d):
        # The operator's pg_hba.conf: its own rules (local peer, the streaming_replica's client
        # certificate), then these, then its default `host all all all scram-sha-256`, which the
        # last line here makes unreachable. So the owner's members (the login roles, managed
        # roles) to the app's database over TLS with SCRAM, never the owner, and nothing else
        # over TCP, as on Docker.
        rules = [line.split() for line in postgres_cluster(d)["postgresql"]["pg_hba"]]
        assert rules == [
            ["hostssl", "all", "aixsss", "all", "reject"],
            ["hostssl", "aixsss", "+aixsss", "all", "scram-sha-256"],
            ["hostnossl", "all", "all", "all", "reject"],
            ["host", "all", "all", "all", "reject"],
        ]
        return
    rules = [line.split() for line in directives(deployed_file(d, "postgres", "/etc/aixsss/pg_hba.conf"))]
    # First match wins: the socket admits the superuser as the server's OS user (peer,
    # pg_ident.conf) and nothing else (not the owner); over TLS neither the owner nor the
    # superuser, the owner's members (the login roles) to the app's database with SCRAM, from
    # whichever networks the clients use; every other TCP connection refused.
    assert rules[:2] == [["local", "all", "postgres", "peer", "map=superuser"], ["local", "all", "all", "reject"]]
    assert rules[-2:] == [["host", "all", "all", "0.0.0.0/0", "reject"], ["host", "all", "all", "::/0", "reject"]]
    allowed = rules[2:-2]
    assert allowed, "no TCP rule admits the apps"
    for owner, members in zip(allowed[::2], allowed[1::2], strict=True):
        assert owner[:3] + owner[-1:] == ["hostssl", "all", "aixsss,postgres", "reject"], owner
        assert members[:3] + members[-1:] == ["hostssl", "aixsss", "+aixsss", "scram-sha-256"], members
        assert owner[3] == members[3]
    ident = directives(deployed_file(d, "postgres", "/etc/aixsss/pg_ident.conf"))
    assert [line.split() for line in ident] == [["superuser", "postgres", "postgres"]]


def test_redis_conf(d: Deployment) -> None:
    # The HA set (prod on Kubernetes): every node runs this redis.conf; `redis` is HAProxy there.
    ha = any(r.name == "redis-node" for r in d.registrations)
    conf = directives(deployed_file(d, "redis-node" if ha else "redis", "/etc/aixsss/redis.conf"))
    for line in (
        "protected-mode yes",
        "port 0",
        "tls-port 6379",
        'tls-protocols "TLSv1.2 TLSv1.3"',
        "tls-cert-file /etc/aixsss/tls/server.crt",
        "tls-key-file /etc/aixsss/tls/server.key",
        "tls-ca-cert-file /etc/aixsss/tls/ca.crt",
        "appendonly yes",
        "maxmemory-policy noeviction",
        'rename-command FLUSHALL ""',
        'rename-command FLUSHDB ""',
    ):
        assert line in conf, line
    # The default user with two SHA-256 hashes (the rotation slots), never a password itself.
    assert not [line for line in conf if line.startswith("requirepass ")]
    (user,) = [line for line in conf if line.startswith("user default ")]
    hashes = [w for w in user.split() if w.startswith("#")]
    assert len(hashes) == 2 and all(re.fullmatch("#[0-9a-f]{64}", h) for h in hashes) and "nopass" not in user


HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def test_nginx_conf(d: Deployment) -> None:
    conf = deployed_file(d, "edge", "/etc/aixsss/nginx.conf")
    lines = directives(conf)
    for line in (
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_tickets off;",
        "server_tokens off;",
        "limit_req_status 429;",
        "listen 8443 ssl;",
        "listen 8080;",
    ):
        assert line in lines, line
    https = conf.split("listen 8443 ssl;")[1]
    # Every block that adds headers repeats the security headers (add_header does not inherit);
    # /api/ answers JSON with its own set (nginx.API_HEADERS: no page-only headers).
    api_block = https.split("location /api/ {")[1].split("}")[0]
    api_headers = dict(re.findall(r'add_header (\S+) "([^"]*)" always;', api_block))
    assert api_headers == dict(nginx.API_HEADERS), api_headers
    assert api_headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    pages = https.replace(api_block, "")
    blocks_with_headers = len(re.findall(r"add_header Cache-Control", pages)) + 1
    for name, value in HEADERS.items():
        found = re.findall(rf'add_header {re.escape(name)} "([^"]*)" always;', pages)
        assert found == [value] * blocks_with_headers, (name, found)
    plain = conf.split("listen 8443 ssl;")[0].split("listen 8080;")[1]
    assert "location / { return 301 https://$host$request_uri; }" in plain
    assert "proxy_pass" not in plain


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_nginx_runs_one_worker_per_cpu_its_container_may_use(target: str) -> None:
    """`worker_processes auto` would count the host's CPUs (nginx_base.workers_for)."""
    for millis, workers in ((500, 1), (1500, 2)):
        d = run_program("dev", overrides={"target": target, "edge.cpuMillis": millis, "web.cpuMillis": millis})
        for workload, path in (("edge", "/etc/aixsss/nginx.conf"), ("web", web.CONF_PATH)):
            found = [line for line in directives(deployed_file(d, workload, path)) if line.startswith("worker_")]
            assert found == [f"worker_processes {workers};"], (target, millis, workload, found)
