"""Validate a custom resource against its operator's CRD, as an API server would.

Given a rendered object (apiVersion, kind, metadata, spec…), the CRD is found by group and kind
(tests/crds, see its README for where each file comes from), the object's version must be one
the CRD serves, and the object is checked against that version's ``openAPIV3Schema`` with
``jsonschema`` (Draft 4: the dialect of OpenAPI v3 schemas, where ``1.0`` is not an integer)
after a transform that gives the schema the API server's structural meaning:

- unknown fields are errors (``kubectl apply --validate=strict``): an object schema is closed
  unless it says ``x-kubernetes-preserve-unknown-fields: true`` or gives ``additionalProperties``
  (which is then used as given);
- ``x-kubernetes-int-or-string`` accepts an integer or a string, nothing else;
- ``nullable: true`` admits null; anywhere else null is reported (the API server would drop it
  silently, which is never what a program that wrote it meant);
- ``format``: the ones the API server checks and these CRDs use (date-time, byte, ipv4, ipv6,
  plus hostname, uri, cidr, uuid, email). ``int32``/``int64`` are not range-checked: the API
  server does not either;
- ``x-kubernetes-list-type: set`` items must be unique, ``map`` items unique by their
  ``x-kubernetes-list-map-keys``;
- ``default`` values are applied first, as the API server does before validating;
- ``metadata`` is checked loosely, as ObjectMeta: a name that is a DNS subdomain (custom resource
  names are), a DNS-label namespace (none on a cluster-scoped kind), string labels and
  annotations, and no other fields than ObjectMeta's.

``x-kubernetes-validations`` (CEL) rules cannot be evaluated here; every rule on a field that is
present in the object is returned in ``Result.not_evaluated`` with the field's path, so nothing
is silently taken as passing. Errors are strings ``<JSON path>: <what is wrong>``.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, Draft6Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

CRD_DIR = Path(__file__).resolve().parent / "crds"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# ObjectMeta, loosely: the fields a client may send, the ones a program sets checked as the API
# server's object-meta validation does (name, namespace, label keys and values).
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": f"^{_DNS_LABEL}$"},
        "labels": {
            "type": "object",
            "propertyNames": {"maxLength": 316, "pattern": _QUALIFIED_NAME},
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE},
        },
        "annotations": {**_STRING_MAP, "propertyNames": {"pattern": _QUALIFIED_NAME}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        **{k: {} for k in ("uid", "resourceVersion", "generation", "creationTimestamp", "selfLink")},
        **{k: {} for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields")},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
}

FORMATS = FormatChecker(formats=())
# Draft 4 (OpenAPI v3's dialect) plus propertyNames, for label and annotation keys.
Validator = validators.extend(Draft4Validator, {"propertyNames": Draft6Validator.VALIDATORS["propertyNames"]})


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value, re.IGNORECASE):
        raise ValueError("not an RFC 3339 date-time")
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@FORMATS.checks("byte", raises=ValueError)
def _byte(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


@FORMATS.checks("ipv4", raises=ValueError)
def _ipv4(value: object) -> bool:
    return not isinstance(value, str) or bool(ipaddress.IPv4Address(value))


@FORMATS.checks("ipv6", raises=ValueError)
def _ipv6(value: object) -> bool:
    return not isinstance(value, str) or bool(ipaddress.IPv6Address(value))


@FORMATS.checks("cidr", raises=ValueError)
def _cidr(value: object) -> bool:
    return not isinstance(value, str) or bool(ipaddress.ip_network(value, strict=False))


@FORMATS.checks("hostname")
def _hostname(value: object) -> bool:
    return not isinstance(value, str) or (len(value) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, value) is not None)


@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S*", value) is not None


@FORMATS.checks("uuid")
def _uuid(value: object) -> bool:
    hexes = r"[0-9a-fA-F]"
    return (
        not isinstance(value, str)
        or re.fullmatch(rf"{hexes}{{8}}(-{hexes}{{4}}){{3}}-{hexes}{{12}}", value) is not None
    )


@FORMATS.checks("email")
def _email(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[^@\s]+@[^@\s]+", value) is not None


@dataclass(frozen=True)
class CelRule:
    """An ``x-kubernetes-validations`` rule on a field present in the object, not evaluated."""

    path: str
    rule: str
    message: str
    # The field's place in Result.defaulted (the path above, unparsed).
    parts: tuple[str | int, ...] = field(default=(), compare=False)

    @property
    def transition(self) -> bool:
        """A rule on ``oldSelf`` is a transition rule: checked on update only, never on create."""
        return re.search(r"\boldSelf\b", self.rule) is not None

    def __str__(self) -> str:
        return f"{self.path}: not evaluated: {self.rule}" + (f" ({self.message})" if self.message else "")


@dataclass
class Result:
    errors: list[str] = field(default_factory=list)
    not_evaluated: list[CelRule] = field(default_factory=list)
    # The object after the API server's defaulting (what CEL rules would see).
    defaulted: dict[str, Any] = field(default_factory=dict)


def json_path(parts: Iterator[str | int] | list[str | int] | tuple[str | int, ...]) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            path += f".{part}"
        else:
            path += f"[{part!r}]"
    return path


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """An openAPIV3Schema node as a JSON Schema with the API server's meaning (module doc)."""
    out: dict[str, Any] = dict(schema)
    if "properties" in out:
        out["properties"] = {k: structural(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = structural(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(out["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [structural(s) for s in out[key]]
    if "not" in out:
        out["not"] = structural(out["not"])
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        out["properties"] = {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": METADATA_SCHEMA,
            **out.get("properties", {}),
        }
    is_object = out.get("type") == "object" or "properties" in out
    if is_object and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _children(value: Any, schema: dict[str, Any]) -> Iterator[tuple[str | int, Any, dict[str, Any]]]:
    """The present children of ``value`` with the schema node each one has."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield key, child, sub
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield index, child, schema["items"]


def _apply_defaults(value: Any, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
    for _, child, sub in _children(value, schema):
        _apply_defaults(child, sub)


def _walk(value: Any, schema: dict[str, Any], path: tuple[str | int, ...], result: Result) -> None:
    """CEL rules on present fields, and the list-type uniqueness the API server enforces."""
    where = json_path(path)
    for rule in schema.get("x-kubernetes-validations") or []:
        message = rule.get("message") or rule.get("messageExpression") or ""
        result.not_evaluated.append(CelRule(where, rule["rule"], message, path))
    list_type = schema.get("x-kubernetes-list-type")
    if isinstance(value, list) and list_type in ("set", "map"):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            identity = (
                repr([item.get(k) for k in keys]) if list_type == "map" and isinstance(item, dict) else repr(item)
            )
            if identity in seen:
                what = f"keys {keys} = {identity}" if list_type == "map" else f"value {item!r}"
                result.errors.append(f"{json_path((*path, index))}: duplicate {what} (item {seen[identity]})")
            seen.setdefault(identity, index)
    for key, child, sub in _children(value, schema):
        _walk(child, sub, (*path, key), result)


def _message(error: ValidationError) -> Iterator[str]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and error.validator_value is False:
        instance = error.instance if isinstance(error.instance, dict) else {}
        for key in instance:
            if key not in schema.get("properties", {}):
                yield f"{json_path([*path, key])}: unknown field"
        return
    if error.validator == "required":
        match = re.match(r"'(.*)' is a required property", error.message)
        yield f"{json_path([*path, match.group(1)]) if match else json_path(path)}: required field is missing"
        return
    limit = error.validator_value
    if error.validator in ("maxItems", "minItems") and isinstance(error.instance, list):
        bound = "maximum" if error.validator == "maxItems" else "minimum"
        yield f"{json_path(path)}: {len(error.instance)} items, the {bound} is {limit}"
        return
    if error.validator in ("maxLength", "minLength") and isinstance(error.instance, str):
        bound = "maximum" if error.validator == "maxLength" else "minimum"
        yield f"{json_path(path)}: {len(error.instance)} characters, the {bound} is {limit}"
        return
    alternatives = error.validator_value if error.validator == "anyOf" else None
    if isinstance(alternatives, list) and all(list(a) == ["required"] for a in alternatives):
        names = " or ".join(", ".join(a["required"]) for a in alternatives)
        yield f"{json_path(path)}: {names} is required"
        return
    if error.validator == "anyOf" and schema.get("x-kubernetes-int-or-string"):
        yield f"{json_path(path)}: {error.instance!r} must be an integer or a string"
        return
    yield f"{json_path(path)}: {error.message}"


class Crds:
    """The CRDs in a directory (default tests/crds), by (group, kind)."""

    def __init__(self, directory: Path = CRD_DIR) -> None:
        self.by_kind: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    spec = doc["spec"]
                    self.by_kind[(spec["group"], spec["names"]["kind"])] = doc

    def schema_of(self, api_version: str, kind: str) -> tuple[dict[str, Any], dict[str, Any]] | str:
        """(the CRD, the served version's openAPIV3Schema), or why there is none."""
        group, _, version = api_version.rpartition("/")
        crd = self.by_kind.get((group, kind))
        if crd is None:
            return f"no CRD for kind {kind} in group {group!r}"
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        if version not in versions:
            return f"{crd['metadata']['name']} has no version {version} (it has {sorted(versions)})"
        if not versions[version].get("served"):
            return f"{crd['metadata']['name']} does not serve version {version}"
        return crd, versions[version]["schema"]["openAPIV3Schema"]

    def validate(self, obj: dict[str, Any]) -> Result:
        result = Result(defaulted=copy.deepcopy(obj))
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        found = self.schema_of(api_version, kind)
        if isinstance(found, str):
            result.errors.append(f"$: {found}")
            return result
        crd, schema = found
        _apply_defaults(result.defaulted, schema)
        closed = structural(schema)
        closed.setdefault("properties", {})
        metadata: dict[str, Any] = copy.deepcopy(METADATA_SCHEMA)
        # A CRD may restrict metadata.name (and only that, with generateName) further.
        own_name = schema.get("properties", {}).get("metadata", {}).get("properties", {}).get("name")
        if own_name:
            metadata["properties"]["name"] = {"allOf": [metadata["properties"]["name"], structural(own_name)]}
        if crd["spec"]["scope"] == "Cluster":
            metadata["properties"].pop("namespace")
        closed["properties"]["metadata"] = metadata
        closed["properties"]["apiVersion"] = {"enum": [api_version]}
        closed["properties"]["kind"] = {"enum": [kind]}
        closed["required"] = sorted({*closed.get("required", []), "apiVersion", "kind", "metadata"})
        validator = Validator(closed, format_checker=FORMATS)
        errors = sorted(validator.iter_errors(result.defaulted), key=lambda e: [str(p) for p in e.absolute_path])
        for error in errors:
            result.errors.extend(_message(error))
        _walk(result.defaulted, schema, (), result)
        return result


_default: Crds | None = None


def validate(obj: dict[str, Any]) -> Result:
    """Validate ``obj`` against the CRDs in tests/crds (loaded once)."""
    global _default
    if _default is None:
        _default = Crds()
    return _default.validate(obj)
