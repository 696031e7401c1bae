"""The highly available Redis as the program declares it (issue 11, part 3): prod on Kubernetes
runs three Redis nodes and three Sentinels (StatefulSets) behind HAProxy, which takes the one
Redis's Service name and port, so the application and its TLS tunnel change nothing. The
rendered files are the renderers' (components/conf/redis_ha.py, proven on real processes by
tests/test_redis_failover.py) with this stack's names; the flows are written out literally.
Staging and dev keep one Redis; the config refuses HA on Docker and its absence in prod on
Kubernetes."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import pytest
from harness import PINNED, PROD_OK, Deployment, is_secret, k8s_files, reveal, run_program

from components.conf import redis, redis_ha
from components.config import StackConfigError, parse_stack_config

NS = "aixsss-prod"
NODE_HOSTS = [f"redis-node-{i}.redis-node.{NS}.svc.cluster.local" for i in range(3)]
SENTINEL_HOSTS = [f"redis-sentinel-{i}.redis-sentinel.{NS}.svc.cluster.local" for i in range(3)]
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
FLOW_KEY = "aixsss.io/flows"
HA_NAMES = ("redis-node", "redis-sentinel")
# Every connection to or inside the Redis set: (client, server, port). From the design (the
# runbook's picture), not from the program.
REDIS_FLOWS = {
    ("api", "redis", 6379),  # api's tunnel -> HAProxy
    ("worker", "redis", 6379),
    ("redis", "redis-node", 6379),  # HAProxy -> the primary (and its checks of every node)
    ("redis-node", "redis-node", 6379),  # replication
    ("redis-node", "redis-sentinel", 26379),  # a starting node asks for the primary
    ("redis-sentinel", "redis-node", 6379),  # Sentinel watches and reconfigures the nodes
    ("redis-sentinel", "redis-sentinel", 26379),  # hello messages, votes
}


@functools.cache
def prod() -> Deployment:
    return run_program("prod")


@functools.cache
def deployed(stack: str, target: str) -> Deployment:
    return run_program(stack, overrides={"target": target})


def objects(d: Deployment, typ: str) -> dict[str, dict[str, Any]]:
    return {r.plain["metadata"]["name"]: r.plain for r in d.of_type(typ)}


def secret_data(d: Deployment, name: str) -> dict[str, str]:
    return objects(d, SECRET)[name]["stringData"]


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def password(d: Deployment) -> str:
    return secret_data(d, "redis-node-env")["REDISCLI_AUTH"]


def slots(d: Deployment, name: str = "redisPassword") -> tuple[str, str]:
    """The two password slots of Redis (or, ``redisSentinelPassword``, of the Sentinels)
    (components/secrets.py): generation 0's is slot 0."""
    typ = "random:index/randomPassword:RandomPassword"
    return tuple(reveal(d.named(n, typ).outputs["result"]) for n in (name, f"{name}Slot1"))  # type: ignore[return-value]


def sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


def sentinel_password(d: Deployment) -> str:
    return secret_data(d, "redis-sentinel-env")["REDISCLI_AUTH"]


def test_prod_runs_three_nodes_three_sentinels_and_two_proxies() -> None:
    d = prod()
    sets, deployments, services = objects(d, STATEFUL_SET), objects(d, DEPLOYMENT), objects(d, SERVICE)
    assert "redis" not in sets  # the one Redis is gone: HAProxy is `redis`
    for name, port, storage in (("redis-node", 6379, "2Gi"), ("redis-sentinel", 26379, "1Gi")):
        spec = sets[name]["spec"]
        assert (spec["replicas"], spec["serviceName"]) == (3, name)
        # One claim per member (the node's AOF), kept when the set is deleted or scaled down.
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == storage
        assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        headless = services[name]["spec"]
        assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
        assert [p["port"] for p in headless["ports"]] == [port]
        assert objects(d, PDB)[name]["spec"]["maxUnavailable"] == 1
    proxy = deployments["redis"]["spec"]
    assert proxy["replicas"] == 2
    (container,) = pod(deployments["redis"])["containers"]
    assert container["image"] == "haproxy:3.2.6"
    assert container["command"] == ["haproxy", "-W", "-db", "-f", "/etc/aixsss/haproxy.cfg"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8404, "scheme": "HTTP"}
    assert objects(d, PDB)["redis"]["spec"]["minAvailable"] == 1
    # Service `redis` on 6379 selects HAProxy: the name and port the tunnels dial.
    front = services["redis"]["spec"]
    assert front["selector"] == {"app.kubernetes.io/name": "redis"} and front["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in front["ports"]] == [(6379, "redis")]
    assert pod(deployments["redis"])["securityContext"]["runAsUser"] == 99  # the image's haproxy user
    # The start order: nodes, then Sentinels (they resolve the nodes' names), then HAProxy.
    node_set, sentinel_set = d.named("redis-node", STATEFUL_SET), d.named("redis-sentinel", STATEFUL_SET)
    assert d.depends_on(sentinel_set, node_set)
    assert d.depends_on(d.named("redis", DEPLOYMENT), sentinel_set)


@pytest.mark.parametrize("name", ["redis-node", "redis-sentinel", "redis"])
def test_every_member_is_hardened(name: str) -> None:
    d = prod()
    workload = {**objects(d, STATEFUL_SET), **objects(d, DEPLOYMENT)}[name]
    spec = pod(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] == c["resources"]["limits"]
        assert "readinessProbe" in c and "livenessProbe" in c


def test_the_nodes_run_the_rendered_redis_conf_and_start_script() -> None:
    d = prod()
    pw, spw = password(d), sentinel_password(d)
    files = secret_data(d, "redis-node-secret-files")
    conf = files["etc_aixsss_redis.conf"]
    # The one Redis's file (TLS only, both password slots, AOF, noeviction) plus replication over
    # TLS, whose masterauth is the previous generation's slot (the one every node accepts in a roll).
    current, previous = slots(d)
    assert pw == current
    assert conf.startswith("# Generated by the aixsss Pulumi program.")
    users = f"user default on resetpass #{sha(current)} #{sha(previous)} ~* &* +@all"
    for line in ("port 0", "tls-port 6379", users, "appendonly yes", "maxmemory-policy noeviction"):
        assert line in conf.splitlines(), line
    assert conf.endswith(redis_ha.render_node(redis_ha.NodeSettings(password=previous)))
    # The nodes roll before the Sentinels: they ask with the Sentinels' previous slot, which the
    # old Sentinels and the new ones both accept.
    assert spw == slots(d, "redisSentinelPassword")[0]
    assert files["etc_aixsss_redis-node-start.sh"] == redis_ha.render_node_start(
        redis_ha.NodeStartSettings(
            first_node=redis_ha.Address(NODE_HOSTS[0], 6379),
            sentinels=tuple(redis_ha.Address(h, 26379) for h in SENTINEL_HOSTS),
            sentinel_password=slots(d, "redisSentinelPassword")[1],
            ca_path="/etc/aixsss/tls/ca.crt",
            conf_template="/etc/aixsss/redis.conf",
            conf_path="/data/redis.conf",
            self_host=f'"$(hostname).redis-node.{NS}.svc.cluster.local"',
            self_port="6379",
        )
    )
    (container,) = [c for c in pod(objects(d, STATEFUL_SET)["redis-node"])["containers"] if c["name"] == "redis-node"]
    assert container["command"] == ["sh", "/etc/aixsss/redis-node-start.sh"]
    assert "/data" in {m["mountPath"] for m in container["volumeMounts"]}
    assert set(k8s_files(d, "redis-node")) >= {
        "/etc/aixsss/redis.conf",
        "/etc/aixsss/redis-node-start.sh",
        "/etc/aixsss/tls/server.key",
    }
    assert pw != spw


def test_the_sentinels_and_haproxy_run_their_rendered_files() -> None:
    d = prod()
    pw, spw = password(d), sentinel_password(d)
    files = secret_data(d, "redis-sentinel-secret-files")
    assert files["etc_aixsss_sentinel.conf"] == redis_ha.render_sentinel(
        redis_ha.SentinelSettings(
            redis_password=pw,
            sentinel_password=spw,
            monitor=redis_ha.Address(NODE_HOSTS[0], 6379),
            cert_path="/etc/aixsss/tls/server.crt",
            key_path="/etc/aixsss/tls/server.key",
            ca_path="/etc/aixsss/tls/ca.crt",
            accepted_sentinel_passwords=slots(d, "redisSentinelPassword"),
        )
    )
    # Both Sentinel slots are accepted, as hashes; the current one is sentinel-pass.
    conf = files["etc_aixsss_sentinel.conf"].splitlines()
    assert (
        f"user default on resetpass {' '.join('#' + sha(p) for p in slots(d, 'redisSentinelPassword'))} ~* &* +@all"
        in conf
    )
    assert f"sentinel sentinel-pass {spw}" in conf and not [line for line in conf if line.startswith("requirepass")]
    assert files["etc_aixsss_redis-sentinel-start.sh"] == redis_ha.render_sentinel_start(
        redis_ha.SentinelStartSettings(
            peers=tuple(redis_ha.Address(h, 26379) for h in SENTINEL_HOSTS),
            sentinel_password=slots(d, "redisSentinelPassword")[1],
            ca_path="/etc/aixsss/tls/ca.crt",
            conf_template="/etc/aixsss/sentinel.conf",
            conf_path="/data/sentinel.conf",
            self_host=f'"$(hostname).redis-sentinel.{NS}.svc.cluster.local"',
        )
    )
    assert secret_data(d, "redis-secret-files")["etc_aixsss_haproxy.cfg"] == redis_ha.render_haproxy(
        redis_ha.ProxySettings(
            redis_password=pw,
            nodes=tuple(redis_ha.Address(h, 6379) for h in NODE_HOSTS),
            ca_path="/etc/aixsss/tls/ca.crt",
            server_name=f"redis.{NS}.svc",
        )
    )


def test_passwords_stay_secret_and_out_of_config_maps() -> None:
    d = prod()
    pw, spw = password(d), sentinel_password(d)
    for name in ("redis-node-secret-files", "redis-sentinel-secret-files", "redis-secret-files"):
        data = d.named(name, SECRET).inputs["stringData"]
        assert is_secret(data) or all(is_secret(v) for v in data.values()), name
    for name in ("redis-node-env", "redis-sentinel-env"):
        data = d.named(name, SECRET).inputs["stringData"]
        assert is_secret(data) or all(is_secret(v) for v in data.values()), name
    # The Sentinel password is generated like the others (pulumi-random) and fingerprinted.
    generated = d.named("redisSentinelPassword", "random:index/randomPassword:RandomPassword")
    assert generated.plain["special"] is False
    assert "REDIS_SENTINEL_PASSWORD" in d.outputs["secretInventory"]
    for cm in d.of_type(CONFIG_MAP):
        text = json.dumps(cm.plain)
        assert pw not in text and spw not in text, cm.name
    for workload in [*d.of_type(STATEFUL_SET), *d.of_type(DEPLOYMENT)]:
        text = json.dumps(workload.plain)
        assert pw not in text and spw not in text, workload.name


def test_the_tunnel_still_dials_redis_and_verifies_a_name_on_the_node_certificate() -> None:
    d = prod()
    for client in ("api", "worker"):
        conf = objects(d, CONFIG_MAP)[f"{client}-redis-tls-files"]["data"]["etc_aixsss_redis-tls.conf"]
        assert f"    server redis.{NS}.svc.cluster.local:6379 resolve;" in conf.splitlines()
        assert f"    proxy_ssl_name redis.{NS}.svc;" in conf.splitlines()
        assert "    proxy_ssl_verify on;" in conf.splitlines()
    # One certificate for the three nodes: the tunnel's name (and HAProxy's check name) and each
    # node's own. The Sentinels have their own.
    node_names = d.named("redis-csr").plain["dnsNames"]
    assert node_names[0] == f"redis.{NS}.svc"
    assert set(NODE_HOSTS) <= set(node_names)
    assert set(SENTINEL_HOSTS) <= set(d.named("redis-sentinel-csr").plain["dnsNames"])
    node_files = objects(d, CONFIG_MAP)["redis-node-files"]["data"]
    sentinel_files = objects(d, CONFIG_MAP)["redis-sentinel-files"]["data"]
    assert node_files["etc_aixsss_tls_server.crt"] != sentinel_files["etc_aixsss_tls_server.crt"]
    assert node_files["etc_aixsss_tls_ca.crt"] == sentinel_files["etc_aixsss_tls_ca.crt"]
    # The app's REDIS_URL is unchanged: the tunnel on loopback.
    assert reveal(d.outputs["redisUrl"]).endswith("@127.0.0.1:6379")


def _flows(d: Deployment) -> set[tuple[str, str, int]]:
    found = set()
    for policy in d.of_type(NETWORK_POLICY):
        record = (policy.plain["metadata"].get("annotations") or {}).get(FLOW_KEY)
        for flow in json.loads(record) if record else []:
            found |= {(flow["client"], flow["server"], port) for port in flow["ports"]}
    return found


def _policies_of(d: Deployment, selected: str) -> list[dict[str, Any]]:
    return [
        p.plain
        for p in d.of_type(NETWORK_POLICY)
        if p.plain["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == selected
    ]


def test_flows_are_exactly_the_sets_own() -> None:
    d = prod()
    redis_side = {f for f in _flows(d) if {f[0], f[1]} & {"redis", *HA_NAMES}}
    # ... plus Prometheus scraping redis_exporter beside each node (monitoring.enabled).
    assert redis_side == REDIS_FLOWS | {("prometheus (namespace monitoring)", "redis-node", 9121)}
    # Both halves of each: the client's egress and the server's ingress, on that port alone.
    for client, server, port in REDIS_FLOWS:
        egress = [
            r
            for p in _policies_of(d, client)
            for r in p["spec"].get("egress", [])
            if any(t.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": server} for t in r["to"])
        ]
        ingress = [
            r
            for p in _policies_of(d, server)
            for r in p["spec"].get("ingress", [])
            if any(f.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": client} for f in r["from"])
        ]
        assert [r["ports"] for r in egress] == [[{"protocol": "TCP", "port": port}]], (client, server)
        assert [r["ports"] for r in ingress] == [[{"protocol": "TCP", "port": port}]], (client, server)
    # Every flow into the set is TLS with a password, and the auditors' checklist lists them.
    reason = d.outputs["checklist"]["network.dataIsolated"]["reason"]
    for client, server, port in REDIS_FLOWS:
        assert f"{client}->{server}:{port}" in reason


def test_redis_exporter_runs_beside_each_node() -> None:
    d = prod()
    containers = [c["name"] for c in pod(objects(d, STATEFUL_SET)["redis-node"])["containers"]]
    assert containers == ["redis-node", "exporter"]
    monitors = objects(d, "kubernetes:monitoring.coreos.com/v1:PodMonitor")
    assert monitors["redis-node-metrics"]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "redis-node"}
    assert "redis-metrics" not in monitors


def test_durability_states_the_set_and_the_failover_cost() -> None:
    assert deployed("staging", "kubernetes").outputs["durability"]["redis"] == {
        "instances": 1,
        "failover": "none",
        "persistence": "AOF, fsync every second",
    }
    ha = prod().outputs["durability"]["redis"]
    assert (ha["instances"], ha["sentinels"]) == (3, 3)
    assert ha["failover"] == "Sentinel promotes a replica; HAProxy routes to the primary"
    assert "5.2-7.1 s" in ha["failoverCost"] and "docs/runbooks/redis-failover.md" in ha["failoverCost"]


@pytest.mark.parametrize(("stack", "target"), [("staging", "kubernetes"), ("dev", "kubernetes"), ("dev", "docker")])
def test_other_stacks_keep_one_redis(stack: str, target: str) -> None:
    d = deployed(stack, target)
    names = {r.name for r in d.registrations}
    assert not names & {"redis-node", "redis-sentinel", "redisSentinelPassword", "redis-sentinel-csr"}
    if target == "kubernetes":
        (container,) = [c for c in pod(objects(d, STATEFUL_SET)["redis"])["containers"] if c["name"] == "redis"]
        assert container["args"] == ["redis-server", "/etc/aixsss/redis.conf"]
        assert objects(d, STATEFUL_SET)["redis"]["spec"]["replicas"] == 1
        conf = secret_data(d, "redis-secret-files")["etc_aixsss_redis.conf"]
        pw = secret_data(d, "redis-env")["REDISCLI_AUTH"]
        assert "tls-replication yes" not in conf and f" #{sha(pw)} " in conf and pw not in conf
    else:
        assert d.named("redis", "docker:index/container:Container")


def _problems(flat: dict[str, Any], stack: str) -> list[str]:
    try:
        parse_stack_config({**PINNED, **flat}, stack)
    except StackConfigError as exc:
        return [line.strip() for line in str(exc).splitlines()[1:-1]]
    return []


def test_config_refuses_ha_on_docker_and_prod_kubernetes_without_it() -> None:
    (docker,) = [p for p in _problems({"cache.highAvailability": True}, "dev") if "cache.highAvailability" in p]
    assert docker.startswith("Pulumi.dev.yaml: aixsss:cache.highAvailability = ")
    assert "false on Docker" in docker
    without = {**PROD_OK, "cache.highAvailability": False}
    (prod_k8s,) = [p for p in _problems(without, "prod") if "cache.highAvailability" in p]
    assert prod_k8s.startswith("Pulumi.prod.yaml: aixsss:cache.highAvailability = ")
    assert "true in prod on Kubernetes" in prod_k8s
    assert _problems(PROD_OK, "prod") == []
    assert _problems({"cache.highAvailability": True, "target": "kubernetes"}, "staging") == []


def test_the_renderers_base_is_the_one_redis_conf() -> None:
    """The node's file starts as the single Redis's (redis.render): same TLS, AOF and eviction."""
    d = prod()
    conf = secret_data(d, "redis-node-secret-files")["etc_aixsss_redis.conf"]
    base = conf[: -len(redis_ha.render_node(redis_ha.NodeSettings(password=slots(d)[1])))]
    assert base == redis.render(
        redis.RedisSettings(
            passwords=slots(d),
            maxmemory_mb=1024,
            cert_path="/etc/aixsss/tls/server.crt",
            key_path="/etc/aixsss/tls/server.key",
            ca_path="/etc/aixsss/tls/ca.crt",
            port=6379,
        )
    )
