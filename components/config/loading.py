"""Read the stack's config, check all of it, and report every problem at once.

Stack files use flat, dotted keys in the project namespace (``aixsss:api.replicas: 2``) so that
``Pulumi.yaml`` can declare every key with a type and default (the CLI types only scalars and
arrays). Every problem — unknown or misspelt keys, wrong types, broken rules, supplied secrets
their consumers would refuse — becomes one line naming the stack file, the key, the value (never
a secret's) and what is allowed; they are raised together as one :class:`StackConfigError`
(a ``pulumi.RunError``: the CLI prints its message without a traceback).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pulumi
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from components.config.model import PROJECT, Environment, StackConfig
from components.config.supplied import SECRET_CHECKS, certificate_problems

# Secret keys a user may supply with `pulumi config set --secret` instead of generating them.
SUPPLIED_SECRET_KEYS: dict[str, str] = {
    "postgresPassword": "secrets.postgresPassword",
    "redisPassword": "secrets.redisPassword",
    "minioRootUser": "secrets.minioRootUser",
    "minioRootPassword": "secrets.minioRootPassword",
    "minioAppAccessKey": "secrets.minioAppAccessKey",
    "minioAppSecretKey": "secrets.minioAppSecretKey",
    "backupAccessKey": "secrets.backupAccessKey",
    "backupSecretKey": "secrets.backupSecretKey",
    "jwtSecret": "secrets.jwtSecret",
    "apiKeyEncryptionKey": "secrets.apiKeyEncryptionKey",
    "publicCertificatePem": "tls.suppliedCertificatePem",
    "publicPrivateKeyPem": "tls.suppliedPrivateKeyPem",
}
SECRET_SHOWN = "[secret]"
# Plain keys whose values may still hold credentials (a kubeconfig's contents carry tokens): never
# shown, and taken as written (a kubeconfig may well be JSON).
CREDENTIAL_KEYS = frozenset({"kubernetes.kubeconfig"})


class StackConfigError(pulumi.RunError):
    """Bad stack config; raised before any resource is registered."""


@dataclass(frozen=True)
class Problem:
    key: str  # as written in the stack file, namespace included
    shown: str  # the value as shown to the user; never a secret's value
    allowed: str
    default: bool = False

    def line(self, stack_file: str, missing_file: bool) -> str:
        source = ""
        if self.default:
            source = f" (default; {stack_file} does not exist)" if missing_file else " (default)"
        return f"{stack_file}: {self.key} = {self.shown}{source} is not allowed: {self.allowed}"


def leaf_keys(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every flat config key the model reads, mapped to its pydantic field info."""
    keys: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(leaf_keys(annotation, key + "."))
        else:
            keys[key] = field
    return keys


def pulumi_yaml_declarations() -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml, derived from the model (a test keeps them equal)."""
    declarations: dict[str, dict[str, Any]] = {}
    for key, field in leaf_keys().items():
        default = field.default
        if key == "environment":
            declarations[key] = {
                "type": "string",
                "default": "",
                "description": "dev, staging or prod; empty means the stack name",
            }
            continue
        if isinstance(default, StrEnum):
            default = default.value
        if isinstance(default, bool):
            type_ = "boolean"
        elif isinstance(default, int):
            type_ = "integer"
        elif isinstance(default, list):
            declarations[key] = {"type": "array", "items": {"type": "string"}, "default": list(default)}
            continue
        else:
            type_ = "string"
        declarations[key] = {"type": type_, "default": default}
    for key in SUPPLIED_SECRET_KEYS.values():
        # A secret-marked key may not carry a plain default in Pulumi.yaml, so these are declared
        # unmarked with an empty default; the program refuses a value that is not encrypted.
        declarations[key] = {"type": "string", "default": "", "description": "optional; set with --secret"}
    return declarations


def _known_keys() -> list[str]:
    return [*leaf_keys(), *SUPPLIED_SECRET_KEYS.values()]


def _unknown_key(key: str) -> str:
    """What to say about a key no field reads: its camelCase spelling, or the closest key."""
    known = _known_keys()
    camel = ".".join(to_camel(part) for part in key.split("."))
    if camel != key and camel in known:
        return f"no such key: keys are camelCase (did you mean {PROJECT}:{camel}?)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if not close:
        by_case = [k for k in known if k.lower() == key.lower()]
        close = by_case
    if close:
        return f"no such key (did you mean {PROJECT}:{close[0]}?)"
    return "no such key (see the config reference in README.md)"


def _is_string_field(field: FieldInfo) -> bool:
    return (isinstance(field.default, str) and not isinstance(field.default, StrEnum)) or field.annotation is str


def _json_shaped(value: Any) -> bool:
    """A list or object where a string belongs (the CLI passes YAML lists/maps as JSON text)."""
    if isinstance(value, (list, dict)):
        return True
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return isinstance(json.loads(value), (list, dict))
        except json.JSONDecodeError:
            return False
    return False


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _show(value: Any, secret: bool = False) -> str:
    """A value as the report shows it: a secret's never, only that there is one."""
    return SECRET_SHOWN if secret else repr(value)


def check_stack_config(
    flat: dict[str, Any], stack: str, secret_keys: Collection[str] = ()
) -> tuple[StackConfig, list[Problem]]:
    """Validate flat ``key -> value`` config (without namespace) for ``stack``: every problem
    found (types, unknown keys and rules together), and the config checked once the refused
    values were dropped (what the rest of the checks can rely on; never deployed with problems).
    Values of ``secret_keys`` (set with --secret, even under a misspelt key) are never shown."""
    fields = leaf_keys()
    hidden = set(secret_keys) | CREDENTIAL_KEYS
    given = {k: v for k, v in flat.items() if k not in SUPPLIED_SECRET_KEYS.values()}
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, value in given.items():
        shown = _show(value, key in hidden)
        if key not in fields:
            problems.append(Problem(f"{PROJECT}:{key}", shown, _unknown_key(key)))
        elif _is_string_field(fields[key]) and key not in CREDENTIAL_KEYS and _json_shaped(value):
            problems.append(
                Problem(f"{PROJECT}:{key}", shown, "a string, not a YAML list or object (quote it in the file)")
            )
        else:
            values[key] = value
    if not values.get("environment"):
        values["environment"] = stack
    dropped: set[str] = set()
    config: StackConfig | None = None
    # Each pass drops the values pydantic refused (reporting them), so the rules still run on the
    # rest: one bad value must not hide the others.
    for _ in range(len(values) + 1):
        try:
            config = StackConfig.model_validate(_nest(values))
            break
        except ValidationError as exc:
            for error in exc.errors():
                key = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
                if key not in values:
                    key = next((k for k in values if key.startswith(k + ".")), key)
                allowed = error["msg"].removeprefix("Value error, ")
                if key == "environment":
                    allowed = (
                        "dev, staging or prod (the stack name is used when aixsss:environment is not set: "
                        f"set it with `pulumi config set {PROJECT}:environment staging`)"
                    )
                shown = _show(error.get("input"), key in hidden)
                problems.append(Problem(f"{PROJECT}:{key}", shown, allowed, default=key not in flat))
                dropped.add(key)
                # A refused environment falls back to dev so the other rules can still be checked.
                values.pop(key, None)
                if key == "environment":
                    values["environment"] = Environment.DEV.value
    if config is None:  # pragma: no cover - every pass drops at least one value
        raise StackConfigError("invalid stack config: could not be checked")
    for violation in config.all_problems():
        if dropped & {violation.key, *violation.uses}:
            continue
        shown = _show(violation.value, violation.key in hidden)
        problems.append(Problem(f"{PROJECT}:{violation.key}", shown, violation.allowed, violation.key not in flat))
    return config, problems


def format_problems(problems: list[Problem], stack: str, missing_file: bool = False) -> str:
    stack_file = f"Pulumi.{stack}.yaml"
    lines = [p.line(stack_file, missing_file) for p in problems]
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    # Without the file every value is a default: say so first, as the likely cause (a misspelt
    # stack name); `--config-file` or `stackConfigDir` users see the note only with problems.
    note = (
        f"\n  note: there is no {stack_file} next to Pulumi.yaml, so every value is a default "
        f"(`pulumi config set {PROJECT}:environment dev|staging|prod` creates it)"
        if missing_file
        else ""
    )
    return (
        f"invalid config for stack {stack} ({count}; nothing was deployed):{note}\n  "
        + "\n  ".join(lines)
        + f"\nFix them with `pulumi config set {PROJECT}:<key> <value>` (or edit {stack_file}) and run again."
    )


def parse_stack_config(flat: dict[str, Any], stack: str) -> StackConfig:
    """Validate flat ``key -> value`` config (without namespace) for ``stack``."""
    config, problems = check_stack_config(flat, stack)
    if problems:
        raise StackConfigError(format_problems(problems, stack))
    return config


def _coerce(raw: str, field: FieldInfo) -> Any:
    """Pulumi hands config to the program as strings; arrays and objects as JSON."""
    if isinstance(field.default, (bool, int, list)) and not isinstance(field.default, StrEnum):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _all_config() -> dict[str, Any]:
    """All config the engine passed: the PULUMI_CONFIG environment and the explicit map."""
    from pulumi.runtime import config as runtime_config

    return {**(runtime_config.get_config_env() or {}), **runtime_config.CONFIG.get()}


def _is_secret(key: str) -> bool:
    from pulumi.runtime import config as runtime_config

    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def _project_dir() -> Path:
    # The engine reports the directory of Pulumi.yaml; older engines and mocks report nothing
    # usable, and then the CLI's working directory (the project directory) is the answer.
    try:
        root = Path(pulumi.get_root_directory() or "")
    except Exception:
        root = Path()
    return root if root.is_absolute() and (root / "Pulumi.yaml").is_file() else Path.cwd()


def _near_namespace(namespace: str) -> bool:
    return namespace != PROJECT and difflib.SequenceMatcher(None, namespace.lower(), PROJECT).ratio() >= 0.8


def _secret_problems(
    config: dict[str, Any],
    public_certificate: str | None,
    domain: str | None,
    object_store_mode: str | None = None,
    backups_external: bool = False,
) -> list[Problem]:
    problems: list[Problem] = []
    supplied: dict[str, str] = {}
    for name, key in SUPPLIED_SECRET_KEYS.items():
        full_key = f"{PROJECT}:{key}"
        raw = config.get(full_key)
        if not raw:
            continue
        if not _is_secret(full_key):
            problems.append(
                Problem(
                    full_key,
                    "(plain text)",
                    f"a secret: set it with `pulumi config set --secret {full_key}` (then remove the plain copy)",
                )
            )
            continue
        supplied[name] = raw
        check = SECRET_CHECKS.get(name)
        allowed = check(raw) if check else None
        if allowed:
            problems.append(Problem(full_key, SECRET_SHOWN, allowed))
    if object_store_mode == "external":
        # An external S3 service has no root user here: the app's own credentials are supplied,
        # and the backups' (a user of the backups bucket alone) when the cluster archives there.
        names = ["minioAppAccessKey", "minioAppSecretKey"]
        if backups_external:
            names += ["backupAccessKey", "backupSecretKey"]
        for name in names:
            key = f"{PROJECT}:{SUPPLIED_SECRET_KEYS[name]}"
            if not config.get(key):
                problems.append(
                    Problem(
                        key,
                        "''",
                        "set when objectStore.mode is external (credentials for your S3 service, each limited to "
                        "its bucket): "
                        f"`pulumi config set --secret {key}`",
                        default=True,
                    )
                )
    cert_keys = ("publicCertificatePem", "publicPrivateKeyPem")
    if public_certificate == "supplied":
        missing = [n for n in cert_keys if not config.get(f"{PROJECT}:{SUPPLIED_SECRET_KEYS[n]}")]
        for name in missing:
            key = f"{PROJECT}:{SUPPLIED_SECRET_KEYS[name]}"
            problems.append(
                Problem(
                    key,
                    "''",
                    f"set when tls.publicCertificate is supplied: `pulumi config set --secret {key} < file.pem`",
                    default=True,
                )
            )
        if domain and not missing and all(n in supplied for n in cert_keys):
            for name, allowed in certificate_problems(
                supplied["publicCertificatePem"], supplied["publicPrivateKeyPem"], domain
            ):
                problems.append(Problem(f"{PROJECT}:{SUPPLIED_SECRET_KEYS[name]}", SECRET_SHOWN, allowed))
    elif public_certificate is not None:
        for name in cert_keys:
            key = f"{PROJECT}:{SUPPLIED_SECRET_KEYS[name]}"
            if config.get(key):
                problems.append(
                    Problem(
                        key,
                        SECRET_SHOWN,
                        f"unused while tls.publicCertificate is {public_certificate}: set tls.publicCertificate "
                        f"supplied, or `pulumi config rm {key}`",
                    )
                )
    return problems


def load_stack_config() -> StackConfig:
    """Read this stack's ``aixsss:*`` config, check all of it, and raise every problem at once."""
    stack = pulumi.get_stack()
    fields = leaf_keys()
    config = _all_config()
    problems: list[Problem] = []
    flat: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for full_key, raw in config.items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            if _near_namespace(namespace):
                shown = SECRET_SHOWN if _is_secret(full_key) else _show(raw)
                problems.append(Problem(full_key, shown, f"no such namespace (did you mean {PROJECT}:{key}?)"))
            continue
        if key in SUPPLIED_SECRET_KEYS.values():
            continue
        if _is_secret(full_key):
            secret_keys.add(key)
        flat[key] = _coerce(raw, fields[key]) if key in fields else raw
    missing_file = not (_project_dir() / f"Pulumi.{stack}.yaml").exists()
    parsed, parse_problems = check_stack_config(flat, stack, secret_keys)
    problems += parse_problems
    refused = {p.key.partition(":")[2] for p in parse_problems}
    # A refused value was replaced by its default: check secrets against it only when it was not.
    public_certificate = None if "tls.publicCertificate" in refused else parsed.tls.public_certificate
    domain = None if "domain" in refused else parsed.domain
    mode = None if "objectStore.mode" in refused else parsed.object_store.mode
    # Backups go to the external store on both targets (Barman Cloud; pgBackRest on Docker), with
    # a user of the backups bucket alone that only the store's owner can create.
    backups_external = mode == "external" and parsed.backup.enabled
    problems += _secret_problems(config, public_certificate, domain, mode, backups_external)
    if problems:
        raise StackConfigError(format_problems(problems, stack, missing_file))
    for note in parsed.warnings():
        pulumi.log.warn(f"Pulumi.{stack}.yaml: {note}")
    return parsed


def supplied_secret(name: str) -> pulumi.Output[str] | None:
    """A secret the user supplied for ``name`` (see SUPPLIED_SECRET_KEYS), or None."""
    key = SUPPLIED_SECRET_KEYS[name]
    if not _all_config().get(f"{PROJECT}:{key}"):
        return None
    return pulumi.Config(PROJECT).require_secret(key)
