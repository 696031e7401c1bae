"""Every custom resource the program declares, validated against its operator's CRD (tests/crds)
as an API server would (tests/crd_schema.py): kubernetes-validate has no schema for them.

Also: negative controls that show the validator bites, the CEL rules it cannot evaluate checked
here by hand for the objects that meet them, and validated example shapes (tests/crds/examples)
of the kinds the program is about to declare (CloudNativePG, Barman Cloud, Prometheus Operator).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import CRD_DIR, CelRule, Crds, Result, validate
from harness import GATEWAY_ADDRESSES
from rendering import rendered

from offline.render import BUILT_IN_GROUPS, Rendered, render

EXAMPLES = CRD_DIR / "examples"
STACKS = ("dev", "staging", "prod")
# Each stack as its file has it (LoadBalancer exposure) and switched to a Gateway, so the
# HTTPRoute the program writes for kubernetes.exposure=gateway is judged too. Behind the Gateway
# prod's certificate comes by HTTP-01 (its file's dns01 is for the LoadBalancer): the program's
# own Issuer, whose solver the Gateway routes to, is judged as well.
GATEWAY = {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}
GATEWAY_SETTINGS = {
    "dev": GATEWAY,
    "staging": GATEWAY,
    "prod": {**GATEWAY, "kubernetes.gatewayNamespace": "gateway-system", "tls.acmeSolver": "http01"},
}
CASES = [(stack, exposure) for stack in STACKS for exposure in ("loadBalancer", "gateway")]
CERTIFICATE = ("cert-manager.io/v1", "Certificate")
ISSUER = ("cert-manager.io/v1", "Issuer")
HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
# The custom resource kinds each case declares: a new kind must be added here deliberately
# (with its CRD in tests/crds, and its CEL rules in HAND_EVALUATED when it meets any).
# PostgreSQL is a CloudNativePG Cluster in every Kubernetes stack, archiving (backup.enabled
# defaults to true) through a Barman Cloud ObjectStore, with a daily ScheduledBackup.
OBJECT_STORE = ("barmancloud.cnpg.io/v1", "ObjectStore")
CLUSTER = ("postgresql.cnpg.io/v1", "Cluster")
SCHEDULED_BACKUP = ("postgresql.cnpg.io/v1", "ScheduledBackup")
# monitoring.enabled defaults to true: PodMonitors (CloudNativePG's instances, Redis's and the
# edge's exporters) and one PrometheusRule (components/monitoring.py).
POD_MONITOR = ("monitoring.coreos.com/v1", "PodMonitor")
PROMETHEUS_RULE = ("monitoring.coreos.com/v1", "PrometheusRule")
POSTGRES: list[tuple[str, str]] = sorted([OBJECT_STORE, CLUSTER, SCHEDULED_BACKUP, POD_MONITOR, PROMETHEUS_RULE])
EXPECTED_KINDS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("dev", "loadBalancer"): POSTGRES,
    ("staging", "loadBalancer"): POSTGRES,
    ("prod", "loadBalancer"): sorted([CERTIFICATE, *POSTGRES]),
    ("dev", "gateway"): sorted([HTTPROUTE, *POSTGRES]),
    ("staging", "gateway"): sorted([HTTPROUTE, *POSTGRES]),
    ("prod", "gateway"): sorted([CERTIFICATE, ISSUER, HTTPROUTE, *POSTGRES]),
}
EXAMPLE_KINDS = [
    ("barmancloud.cnpg.io/v1", "ObjectStore"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
]

_gateway_cache: dict[str, Rendered] = {}


def rendered_case(tmp_root: Path, stack: str, exposure: str) -> Rendered:
    if exposure == "loadBalancer":  # shared with the other tests' renders (tests/rendering.py)
        return rendered(tmp_root / stack, stack, "kubernetes")
    if stack not in _gateway_cache:
        out = tmp_root / f"{stack}-gateway"
        _gateway_cache[stack] = render(stack, "kubernetes", out, settings=GATEWAY_SETTINGS[stack])
    return _gateway_cache[stack]


def custom_resources(result: Rendered) -> list[dict[str, Any]]:
    """The rendered manifests whose API group Kubernetes itself does not serve."""
    found = []
    for path in sorted((result.out / "kubernetes").rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and str(obj["apiVersion"]).rpartition("/")[0] not in BUILT_IN_GROUPS:
                found.append(obj)
    return found


def of_kind(objects: list[dict[str, Any]], kind: tuple[str, str]) -> dict[str, Any]:
    [obj] = [o for o in objects if (o["apiVersion"], o["kind"]) == kind]
    return copy.deepcopy(obj)


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{e}" for s, e in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[str, str], Rendered]:
    stack, exposure = request.param
    return (stack, exposure), rendered_case(tmp_path_factory.getbasetemp(), stack, exposure)


@pytest.fixture(scope="module")
def prod_gateway(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return custom_resources(rendered_case(tmp_path_factory.getbasetemp(), "prod", "gateway"))


# --- CEL rules, evaluated by hand -------------------------------------------------------------
# crd_schema lists every x-kubernetes-validations rule on a present field as not evaluated. The
# ones the program's objects and the examples meet are translated here, keyed by the rule's
# message, with a piece of the rule's text that must still be in it (a changed rule under the
# same message fails instead of being checked by an outdated translation). Transition rules
# (on oldSelf) apply to updates only and are not evaluated on create, by the API server either.
Check = Callable[[Any], bool]
HAND_EVALUATED: dict[str, tuple[str, Check]] = {}


def _rule(message: str, fragment: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        HAND_EVALUATED[message] = (fragment, check)
        return check

    return register


def _filters_with(filters: list[dict[str, Any]], kind: str) -> int:
    """How many filters have <kind>.path.type ReplacePrefixMatch with a replacePrefixMatch."""
    paths = [f.get(kind, {}).get("path") for f in filters]
    return sum(1 for p in paths if p and p.get("type") == "ReplacePrefixMatch" and "replacePrefixMatch" in p)


def _one_prefix_match(rule: dict[str, Any]) -> bool:
    matches = rule.get("matches", [])
    return len(matches) == 1 and matches[0].get("path", {}).get("type") == "PathPrefix"


for _kind, _name in (("requestRedirect", "RequestRedirect"), ("urlRewrite", "URLRewrite")):

    def _on_rule(rule: dict[str, Any], kind: str = _kind) -> bool:
        return _filters_with(rule.get("filters", []), kind) != 1 or _one_prefix_match(rule)

    def _in_backends(rule: dict[str, Any], kind: str = _kind) -> bool:
        backends = rule.get("backendRefs", [])
        with_filter = sum(1 for b in backends if _filters_with(b.get("filters", []), kind) == 1)
        return with_filter != 1 or _one_prefix_match(rule)

    _rule(
        f"When using {_name} filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        f"f.{_kind}.path.type == 'ReplacePrefixMatch'",
    )(_on_rule)
    _when = "When" if _kind == "urlRewrite" else "when"
    _rule(
        f"Within backendRefs, {_when} using {_name} filter with path.replacePrefixMatch, exactly one PathPrefix "
        "match must be specified",
        f"self.backendRefs.exists_one(b, (has(b.filters) && b.filters.exists_one(f, has(f.{_kind})",
    )(_in_backends)


@_rule(
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route "
    "must be less than 128",
    "(self.size() > 15 ? self[15].matches.size() : 0) <= 128",
)
def _total_matches(rules: list[dict[str, Any]]) -> bool:
    return sum(len(r.get("matches", [])) for r in rules[:16]) <= 128


@_rule(
    "RequestRedirect filter must not be used together with backendRefs", "self.filters.all(f, !has(f.requestRedirect))"
)
def _redirect_without_backends(rule: dict[str, Any]) -> bool:
    return not rule.get("backendRefs") or all("requestRedirect" not in f for f in rule.get("filters", []))


@_rule("Must have port for Service reference", "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port)")
def _service_port(ref: dict[str, Any]) -> bool:
    return not (ref.get("group") == "" and ref.get("kind") == "Service") or "port" in ref


def _prefix_or_exact(path: dict[str, Any]) -> bool:
    return path.get("type") in ("Exact", "PathPrefix")


@_rule(
    "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
    "self.value.startsWith('/')",
)
def _absolute(path: dict[str, Any]) -> bool:
    return not _prefix_or_exact(path) or path["value"].startswith("/")


for _bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
    _rule(f"must not contain '{_bad}' when type one of ['Exact', 'PathPrefix']", f"!self.value.contains('{_bad}')")(
        lambda path, bad=_bad: not _prefix_or_exact(path) or bad not in path["value"]
    )
for _end in ("/..", "/."):
    _rule(f"must not end with '{_end}' when type one of ['Exact', 'PathPrefix']", f"!self.value.endsWith('{_end}')")(
        lambda path, end=_end: not _prefix_or_exact(path) or not path["value"].endswith(end)
    )


@_rule(
    "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
    "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'",
)
def _path_type(path: dict[str, Any]) -> bool:
    return path.get("type") in ("Exact", "PathPrefix", "RegularExpression")


PATH_CHARACTERS = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"


@_rule(
    f"must only contain valid characters (matching {PATH_CHARACTERS}) for types ['Exact', 'PathPrefix']",
    PATH_CHARACTERS,
)
def _path_characters(path: dict[str, Any]) -> bool:
    return not _prefix_or_exact(path) or re.search(PATH_CHARACTERS, path["value"]) is not None


def _same_parent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same = all(a.get(k) == b.get(k) for k in ("group", "kind", "name"))
    return same and (a.get("namespace") or "") == (b.get("namespace") or "")


@_rule(
    "sectionName must be specified when parentRefs includes 2 or more references to the same parent",
    "self.all(p1, self.all(p2, p1.group == p2.group",
)
def _section_specified(refs: list[dict[str, Any]]) -> bool:
    return all(
        bool(a.get("sectionName")) == bool(b.get("sectionName")) for a in refs for b in refs if _same_parent(a, b)
    )


@_rule(
    "sectionName must be unique when parentRefs includes 2 or more references to the same parent",
    "self.all(p1, self.exists_one(p2, p1.group == p2.group",
)
def _section_unique(refs: list[dict[str, Any]]) -> bool:
    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return _same_parent(a, b) and (a.get("sectionName") or "") == (b.get("sectionName") or "")

    return all(sum(1 for b in refs if same(a, b)) == 1 for a in refs)


# The examples' rules (CloudNativePG Cluster, Barman Cloud ObjectStore).
_rule("imageName and imageCatalogRef are mutually exclusive", "!(has(self.imageCatalogRef) && has(self.imageName))")(
    lambda spec: not ("imageCatalogRef" in spec and "imageName" in spec)
)
for _field, _provider in (("builtinLocale", "builtin"), ("icuLocale", "icu"), ("icuRules", "icu")):
    _rule(
        f"{_field} is only available when localeProvider is set to `{_provider}`",
        f"!has(self.{_field}) || self.localeProvider == '{_provider}'",
    )(lambda initdb, f=_field, p=_provider: f not in initdb or initdb.get("localeProvider") == p)
_rule("use the 'serverName' plugin parameter in the Cluster resource", "!has(self.serverName)")(
    lambda configuration: "serverName" not in configuration
)


# The program's Cluster with synchronous replicas (prod): spec.postgresql and its synchronous.
def _nonempty(obj: dict[str, Any], key: str) -> bool:
    return len(obj.get(key) or []) > 0


@_rule(
    "syncReplicaElectionConstraint and synchronous failure domain keys are mutually exclusive",
    "!(has(self.syncReplicaElectionConstraint) && self.syncReplicaElectionConstraint.enabled && has(self.synchronous)",
)
def _election_or_failure_domains(postgresql: dict[str, Any]) -> bool:
    constraint = postgresql.get("syncReplicaElectionConstraint")
    synchronous = postgresql.get("synchronous")
    domains = synchronous is not None and (
        _nonempty(synchronous, "podFailureDomainKeys") or _nonempty(synchronous, "nodeFailureDomainKeys")
    )
    return not (constraint is not None and constraint["enabled"] and domains)


@_rule(
    "dataDurability set to 'preferred' requires empty 'standbyNamesPre' and empty 'standbyNamesPost'",
    "self.dataDurability!='preferred' || ((!has(self.standbyNamesPre) || self.standbyNamesPre.size()==0)",
)
def _preferred_without_standby_names(synchronous: dict[str, Any]) -> bool:
    pre, post = _nonempty(synchronous, "standbyNamesPre"), _nonempty(synchronous, "standbyNamesPost")
    # CEL: self.dataDurability on an absent field (the schema defaults none) is an error, and
    # `error || x` is x only when x is true (CEL's || absorbs an error on either side by a true).
    if "dataDurability" not in synchronous:
        return not pre and not post
    return synchronous["dataDurability"] != "preferred" or (not pre and not post)


@_rule(
    "podFailureDomainKeys and nodeFailureDomainKeys are mutually exclusive",
    "!(has(self.podFailureDomainKeys) && self.podFailureDomainKeys.size() > 0 && has(self.nodeFailureDomainKeys)",
)
def _pod_or_node_domains(synchronous: dict[str, Any]) -> bool:
    return not (_nonempty(synchronous, "podFailureDomainKeys") and _nonempty(synchronous, "nodeFailureDomainKeys"))


@_rule("The number of synchronous replicas should be greater than zero", "self > 0")
def _some_synchronous_replicas(number: int) -> bool:
    return number > 0


def at(obj: Any, parts: tuple[str | int, ...]) -> Any:
    for part in parts:
        obj = obj[part]
    return obj


def cel_verdicts(result: Result) -> list[tuple[CelRule, str]]:
    """Each rule the validator could not evaluate, evaluated here: holds, false, transition (not on
    create), untranslated (add it to HAND_EVALUATED) or changed (the rule is not the one translated)."""
    verdicts = []
    for rule in result.not_evaluated:
        if rule.transition:
            verdicts.append((rule, "transition"))
        elif rule.message not in HAND_EVALUATED:
            verdicts.append((rule, "untranslated"))
        else:
            fragment, check = HAND_EVALUATED[rule.message]
            if fragment not in rule.rule:
                verdicts.append((rule, "changed"))
            else:
                verdicts.append((rule, "holds" if check(at(result.defaulted, rule.parts)) else "false"))
    return verdicts


WHAT_TO_DO = {
    "untranslated": "untranslated: translate it into HAND_EVALUATED (tests/test_custom_resources.py)",
    "changed": "changed: the rule is not the one HAND_EVALUATED translates; translate it again",
    "false": "false",
}


def cel_problems(result: Result) -> list[str]:
    verdicts = cel_verdicts(result)
    return [f"{rule} -- {WHAT_TO_DO[verdict]}" for rule, verdict in verdicts if verdict not in ("holds", "transition")]


# --- The program's custom resources ----------------------------------------------------------


def test_every_custom_resource_matches_its_crd(case: tuple[tuple[str, str], Rendered]) -> None:
    _, result = case
    for obj in custom_resources(result):
        checked = validate(obj)
        assert checked.errors == [], f"{obj['kind']} {obj['metadata']['name']}: {checked.errors}"


def test_the_custom_resource_kinds_are_exactly_the_listed_ones(case: tuple[tuple[str, str], Rendered]) -> None:
    key, result = case
    objects = custom_resources(result)
    assert sorted({(o["apiVersion"], o["kind"]) for o in objects}) == EXPECTED_KINDS[key]
    # The same objects render lists as needing their CRD in the cluster.
    listed = sorted(result.custom_resources)
    assert sorted(f"{o['apiVersion']} {o['kind']} {o['metadata']['name']}" for o in objects) == listed


def test_every_cel_rule_the_programs_objects_meet_holds(case: tuple[tuple[str, str], Rendered]) -> None:
    _, result = case
    for obj in custom_resources(result):
        assert cel_problems(validate(obj)) == []


def test_the_httproute_meets_its_cel_rules_as_listed(prod_gateway: list[dict[str, Any]]) -> None:
    """What the validator leaves to CEL for the program's HTTPRoute, after defaulting."""
    checked = validate(of_kind(prod_gateway, HTTPROUTE))
    where = sorted({(r.path, r.message) for r in checked.not_evaluated})
    paths = sorted({path for path, _ in where})
    assert paths == [
        "$.spec.parentRefs",
        "$.spec.rules",
        "$.spec.rules[0]",
        "$.spec.rules[0].backendRefs[0]",
        "$.spec.rules[0].matches[0].path",
    ]
    assert len(where) == 20
    # The API server's defaults, which the rules see: a match on every path, a Gateway parent.
    assert checked.defaulted["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert checked.defaulted["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert checked.defaulted["spec"]["rules"][0]["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "edge",
        "port": 8080,
        "weight": 1,
    }
    assert validate(of_kind(prod_gateway, CERTIFICATE)).not_evaluated == []  # cert-manager's CRD has none


def test_the_hand_evaluated_rules_bite(prod_gateway: list[dict[str, Any]]) -> None:
    route = of_kind(prod_gateway, HTTPROUTE)
    del route["spec"]["rules"][0]["backendRefs"][0]["port"]
    route["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "api//v1"}}]
    route["spec"]["parentRefs"].append(dict(route["spec"]["parentRefs"][0]))
    checked = validate(route)
    assert checked.errors == []  # none of these is the schema's to see
    false = sorted((rule.path, rule.message) for rule, verdict in cel_verdicts(checked) if verdict == "false")
    assert false == [
        (
            "$.spec.parentRefs",
            "sectionName must be unique when parentRefs includes 2 or more references to the same parent",
        ),
        ("$.spec.rules[0].backendRefs[0]", "Must have port for Service reference"),
        ("$.spec.rules[0].matches[0].path", "must not contain '//' when type one of ['Exact', 'PathPrefix']"),
        (
            "$.spec.rules[0].matches[0].path",
            "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
        ),
    ]


def test_the_postgres_cluster_meets_its_cel_rules_as_listed(prod_gateway: list[dict[str, Any]]) -> None:
    """Prod's Cluster (three instances, one synchronous standby): the rules CEL leaves, by path."""
    checked = validate(of_kind(prod_gateway, CLUSTER))
    assert checked.errors == []
    where = sorted((r.path, r.message) for r in checked.not_evaluated)
    assert [path for path, _ in where] == [
        "$.spec",
        "$.spec.bootstrap.initdb",
        "$.spec.bootstrap.initdb",
        "$.spec.bootstrap.initdb",
        "$.spec.postgresql",
        "$.spec.postgresql.synchronous",
        "$.spec.postgresql.synchronous",
        "$.spec.postgresql.synchronous.number",
    ]
    assert {verdict for _, verdict in cel_verdicts(checked)} == {"holds"}
    scheduled = validate(of_kind(prod_gateway, SCHEDULED_BACKUP))
    assert [verdict for _, verdict in cel_verdicts(scheduled)] == ["transition"]  # cluster is immutable
    store = validate(of_kind(prod_gateway, OBJECT_STORE))
    assert [(r.path, v) for r, v in cel_verdicts(store)] == [("$.spec.configuration", "holds")]


def test_the_synchronous_rules_bite(prod_gateway: list[dict[str, Any]]) -> None:
    cluster = of_kind(prod_gateway, CLUSTER)
    synchronous = cluster["spec"]["postgresql"]["synchronous"]
    synchronous["number"] = 0
    synchronous["standbyNamesPre"] = ["postgres-9"]
    synchronous["podFailureDomainKeys"] = ["zone"]
    synchronous["nodeFailureDomainKeys"] = ["topology.kubernetes.io/zone"]
    checked = validate(cluster)
    assert checked.errors == []
    false = sorted(rule.message for rule, verdict in cel_verdicts(checked) if verdict == "false")
    # dataDurability absent: its comparison errs, and with standby names the other side is false.
    durability = "dataDurability set to 'preferred' requires empty 'standbyNamesPre' and empty 'standbyNamesPost'"
    assert false == [
        "The number of synchronous replicas should be greater than zero",
        durability,
        "podFailureDomainKeys and nodeFailureDomainKeys are mutually exclusive",
    ]
    cluster["spec"]["postgresql"]["syncReplicaElectionConstraint"] = {"enabled": True}
    false = sorted(rule.message for rule, verdict in cel_verdicts(validate(cluster)) if verdict == "false")
    assert "syncReplicaElectionConstraint and synchronous failure domain keys are mutually exclusive" in false
    # 'required' satisfies the durability rule whatever the standby names; 'preferred' does not.
    synchronous["dataDurability"] = "required"
    false = [rule.message for rule, verdict in cel_verdicts(validate(cluster)) if verdict == "false"]
    assert durability not in false
    synchronous["dataDurability"] = "preferred"
    false = [rule.message for rule, verdict in cel_verdicts(validate(cluster)) if verdict == "false"]
    assert durability in false


def test_a_restoring_cluster_matches_its_crd(tmp_path: Path) -> None:
    """backup.restoreFrom: bootstrap.recovery from an external cluster read through the plugin."""
    settings = {"backup.restoreFrom": "postgres", "backup.serverName": "postgres-2"}
    settings["backup.restoreTargetTime"] = "2026-11-29T08:00:00Z"
    objects = custom_resources(render("staging", "kubernetes", tmp_path, settings=settings))
    assert sorted({(o["apiVersion"], o["kind"]) for o in objects}) == POSTGRES
    cluster = of_kind(objects, CLUSTER)
    assert set(cluster["spec"]["bootstrap"]) == {"recovery"} and cluster["spec"]["externalClusters"]
    for obj in objects:
        checked = validate(obj)
        assert checked.errors == [], f"{obj['kind']}: {checked.errors}"
        assert cel_problems(checked) == []


def test_the_issuer_solves_http01_on_the_routes_gateway(prod_gateway: list[dict[str, Any]]) -> None:
    """Behind a Gateway cert-manager's gatewayHTTPRoute solver attaches to the Gateway the edge's
    HTTPRoute uses, and the Certificate is issued by that Issuer."""
    issuer = of_kind(prod_gateway, ISSUER)
    route = of_kind(prod_gateway, HTTPROUTE)
    [solver] = issuer["spec"]["acme"]["solvers"]
    assert set(solver) == {"http01"} and set(solver["http01"]) == {"gatewayHTTPRoute"}
    parents = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert parents == [{"name": "public", "namespace": "gateway-system", "kind": "Gateway"}]
    assert [{**p, "kind": "Gateway"} for p in route["spec"]["parentRefs"]] == parents
    assert issuer["spec"]["acme"]["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert issuer["spec"]["acme"]["email"] == "ops@aixsss.example.com"
    cert = of_kind(prod_gateway, CERTIFICATE)
    assert cert["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert cert["metadata"]["namespace"] == issuer["metadata"]["namespace"]
    assert validate(issuer).not_evaluated == []  # cert-manager's CRD has no CEL rules


def test_an_unknown_solver_in_an_issuer(prod_gateway: list[dict[str, Any]]) -> None:
    issuer = of_kind(prod_gateway, ISSUER)
    http01 = issuer["spec"]["acme"]["solvers"][0]["http01"]
    http01["gatewayRoute"] = http01.pop("gatewayHTTPRoute")
    del issuer["spec"]["acme"]["server"]
    assert errors_of(issuer) == [
        "$.spec.acme.server: required field is missing",
        "$.spec.acme.solvers[0].http01.gatewayRoute: unknown field",
    ]


# --- Negative controls: the validator bites, and says where ----------------------------------


def errors_of(obj: dict[str, Any]) -> list[str]:
    return validate(obj).errors


def test_an_unknown_field_in_a_certificate_spec(prod_gateway: list[dict[str, Any]]) -> None:
    cert = of_kind(prod_gateway, CERTIFICATE)
    cert["spec"]["dnsName"] = cert["spec"]["dnsNames"][0]
    cert["spec"]["privateKey"]["rotation"] = "Always"
    assert errors_of(cert) == ["$.spec.dnsName: unknown field", "$.spec.privateKey.rotation: unknown field"]


def test_a_string_where_an_integer_goes(prod_gateway: list[dict[str, Any]]) -> None:
    cert = of_kind(prod_gateway, CERTIFICATE)
    cert["spec"]["privateKey"]["size"] = "256"
    assert errors_of(cert) == ["$.spec.privateKey.size: '256' is not of type 'integer'"]
    cert["spec"]["privateKey"]["size"] = 256.0  # as in JSON 256.0: not an integer either
    assert errors_of(cert) == ["$.spec.privateKey.size: 256.0 is not of type 'integer'"]


def test_a_missing_required_field(prod_gateway: list[dict[str, Any]]) -> None:
    cert = of_kind(prod_gateway, CERTIFICATE)
    del cert["spec"]["issuerRef"]["name"]
    del cert["spec"]["secretName"]
    assert errors_of(cert) == [
        "$.spec.secretName: required field is missing",
        "$.spec.issuerRef.name: required field is missing",
    ]


def test_an_invalid_enum_value(prod_gateway: list[dict[str, Any]]) -> None:
    cert = of_kind(prod_gateway, CERTIFICATE)
    cert["spec"]["privateKey"]["algorithm"] = "EC"
    [error] = errors_of(cert)
    assert error.startswith("$.spec.privateKey.algorithm: 'EC' is not one of ['RSA', 'ECDSA', 'Ed25519'")


def test_an_httproute_with_a_bad_hostname(prod_gateway: list[dict[str, Any]]) -> None:
    route = of_kind(prod_gateway, HTTPROUTE)
    route["spec"]["hostnames"] = ["aixsss.example.com", "Bad_Host.example.com", "*.example.com"]
    [error] = errors_of(route)
    pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    assert error == f"$.spec.hostnames[1]: 'Bad_Host.example.com' does not match {pattern!r}"


def test_more_of_what_an_api_server_refuses(prod_gateway: list[dict[str, Any]]) -> None:
    route = of_kind(prod_gateway, HTTPROUTE)
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000  # maximum 65535
    route["spec"]["hostnames"] = []  # allowed: minItems is not set on hostnames
    route["spec"]["parentRefs"] = [route["spec"]["parentRefs"][0]] * 33  # maxItems 32
    route["metadata"]["labels"]["app.kubernetes.io/name"] = "no spaces allowed"
    route["metadata"]["uid2"] = "x"
    route["status"] = None
    assert errors_of(route) == [
        "$.metadata.uid2: unknown field",
        "$.metadata.labels['app.kubernetes.io/name']: 'no spaces allowed' does not match "
        "'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'",
        "$.spec.parentRefs: 33 items, the maximum is 32",
        "$.spec.rules[0].backendRefs[0].port: 70000 is greater than the maximum of 65535",
        "$.status: None is not of type 'object'",
    ]


def test_int_or_string_and_unserved_versions() -> None:
    monitor = yaml.safe_load((EXAMPLES / "podmonitor.yaml").read_text())
    monitor["spec"]["podMetricsEndpoints"][0]["targetPort"] = 9187
    assert errors_of(monitor) == []
    monitor["spec"]["podMetricsEndpoints"][0]["targetPort"] = "metrics"
    assert errors_of(monitor) == []
    monitor["spec"]["podMetricsEndpoints"][0]["targetPort"] = 9187.5
    assert errors_of(monitor) == ["$.spec.podMetricsEndpoints[0].targetPort: 9187.5 must be an integer or a string"]
    monitor["apiVersion"] = "monitoring.coreos.com/v1alpha1"
    assert errors_of(monitor) == [
        "$: podmonitors.monitoring.coreos.com has no version v1alpha1 (it has ['v1'])",
    ]
    assert errors_of({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}) == [
        "$: no CRD for kind Widget in group 'example.com'"
    ]


def test_a_cluster_scoped_kind_takes_no_namespace() -> None:
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt", "namespace": "aixsss-prod"},
        "spec": {"selfSigned": {}},
    }
    assert errors_of(issuer) == ["$.metadata.namespace: unknown field"]
    del issuer["metadata"]
    assert errors_of(issuer) == ["$.metadata: required field is missing"]
    issuer["metadata"] = {"labels": {"a": "b"}}
    assert errors_of(issuer) == ["$.metadata: name or generateName is required"]
    issuer["metadata"] = {"name": "Lets_Encrypt"}
    [error] = errors_of(issuer)
    assert error.startswith("$.metadata.name: 'Lets_Encrypt' does not match")


# --- Example shapes of the kinds the program will declare (tests/crds/examples) ---------------


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("path", examples(), ids=[p.stem for p in examples()])
def test_the_example_matches_its_crd(path: Path) -> None:
    example = yaml.safe_load(path.read_text())
    checked = validate(example)
    assert checked.errors == []
    assert cel_problems(checked) == []


def test_the_examples_cover_the_kinds_to_come() -> None:
    found = [yaml.safe_load(p.read_text()) for p in examples()]
    assert sorted((o["apiVersion"], o["kind"]) for o in found) == EXAMPLE_KINDS
    by_kind = {o["kind"]: o for o in found}
    cluster, scheduled, store = by_kind["Cluster"], by_kind["ScheduledBackup"], by_kind["ObjectStore"]
    assert cluster["spec"]["instances"] == 3
    [plugin] = cluster["spec"]["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io" and plugin["isWALArchiver"] is True
    assert plugin["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert scheduled["spec"]["method"] == "plugin"
    assert scheduled["spec"]["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    configuration = store["spec"]["configuration"]
    assert {"destinationPath", "s3Credentials", "endpointURL", "endpointCA", "wal"} <= set(configuration)
    assert configuration["wal"]["compression"] and store["spec"]["retentionPolicy"]


def test_example_shapes_that_are_easy_to_get_wrong() -> None:
    """What an API server would refuse in shapes one might write from memory."""
    store = yaml.safe_load((EXAMPLES / "objectstore.yaml").read_text())
    misplaced = copy.deepcopy(store)
    misplaced["spec"]["configuration"]["retentionPolicy"] = misplaced["spec"].pop("retentionPolicy")
    assert errors_of(misplaced) == ["$.spec.configuration.retentionPolicy: unknown field"]
    no_compression = copy.deepcopy(store)  # the field's description names "" as the default; the enum has no ""
    no_compression["spec"]["configuration"]["wal"]["compression"] = ""
    [error] = errors_of(no_compression)
    assert error.startswith("$.spec.configuration.wal.compression: '' is not one of ['bzip2', 'gzip'")
    cron_days = copy.deepcopy(store)
    cron_days["spec"]["retentionPolicy"] = "30 days"
    assert errors_of(cron_days) == ["$.spec.retentionPolicy: '30 days' does not match '^[1-9][0-9]*[dwm]$'"]
    server_name = copy.deepcopy(store)
    server_name["spec"]["configuration"]["serverName"] = "aixsss-db"
    checked = validate(server_name)
    assert checked.errors == []  # a CEL rule forbids it, and only the hand evaluation sees that
    assert [p.rsplit(" -- ", 1)[1] for p in cel_problems(checked)] == ["false"]

    cluster = yaml.safe_load((EXAMPLES / "cluster.yaml").read_text())
    cluster["spec"]["plugins"][0]["barmanObjectName"] = "aixsss-backups"  # a parameter, not a field
    cluster["spec"]["instances"] = "3"
    assert errors_of(cluster) == [
        "$.spec.instances: '3' is not of type 'integer'",
        "$.spec.plugins[0].barmanObjectName: unknown field",
    ]
    scheduled = yaml.safe_load((EXAMPLES / "scheduledbackup.yaml").read_text())
    scheduled["spec"]["method"] = "barmanCloud"
    del scheduled["spec"]["pluginConfiguration"]["name"]
    [method, name] = errors_of(scheduled)
    assert method.startswith("$.spec.method: 'barmanCloud' is not one of ['barmanObjectStore', 'volumeSnapshot'")
    assert name == "$.spec.pluginConfiguration.name: required field is missing"


def test_every_crd_in_tests_crds_is_loaded() -> None:
    crds = Crds()
    kinds = "Backup Certificate Cluster ClusterIssuer Gateway HTTPRoute Issuer ObjectStore PodMonitor Pooler"
    assert sorted(kind for _, kind in crds.by_kind) == [
        *kinds.split(),
        "PrometheusRule",
        "ScaledObject",
        "ScheduledBackup",
        "ServiceMonitor",
        "TriggerAuthentication",
    ]
    sources = (CRD_DIR / "SOURCES.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in sources) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))


def test_cel_rules_are_listed_not_passed() -> None:
    """A rule the validator cannot run is reported with its field's path, not taken as passing."""
    store = yaml.safe_load((EXAMPLES / "objectstore.yaml").read_text())
    [rule] = validate(store).not_evaluated
    assert rule == CelRule(
        "$.spec.configuration", "!has(self.serverName)", "use the 'serverName' plugin parameter in the Cluster resource"
    )
    assert str(rule).startswith("$.spec.configuration: not evaluated: !has(self.serverName)")
