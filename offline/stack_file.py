"""Stack files as the Pulumi CLI reads them and hands them to the program, for `make render`.

- YAML is read as ``gopkg.in/yaml.v3`` reads it into ``any`` (the CLI's parser): only
  ``true``/``false`` are booleans, dates and ``12:30`` stay strings.
- Every value reaches the program as a string, as ``config.Value.Value`` gives it
  (sdk/go/common/resource/config/value.go, object.go, plaintext.go): a string as written, a
  number or boolean as its JSON text, an object or array as JSON.
- ``{secure: v1:…}`` values (``pulumi config set --secret``) are secret config. With the
  passphrase they are decrypted as Pulumi decrypts them (offline/passphrase.py); without it a
  stand-in of the shape the program accepts takes their place, and the caller is told which.
  A stand-in is kept while its ciphertext is unchanged (``kept``, from the render's state).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from offline import values
from offline.passphrase import PASSPHRASE_ENV, Decrypter, IncorrectPassphrase, SecretsError

# Pulumi's own rule for stack names; it also keeps a name from reaching outside build/.
_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
NOT_DECRYPTED = "secure value not decrypted"


class StackFileError(Exception):
    """A stack file that cannot be read or decrypted; the message is one line for the user."""


class _CliYamlLoader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1 (``yes`` is true, ``2025-01-01`` a date, ``1:30`` the int 90);
    the CLI's yaml.v3 keeps all of those strings. The resolvers are rebuilt to match it."""


_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_KEEP = {"tag:yaml.org,2002:null", "tag:yaml.org,2002:merge"}
_CliYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEEP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CliYamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CliYamlLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_CliYamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_CliYamlLoader)  # a SafeLoader subclass: no arbitrary objects


@dataclass(frozen=True)
class Secure:
    """A ``{secure: <ciphertext>}`` leaf of a stack file."""

    ciphertext: str


def _secure_leaves(value: Any) -> Any:
    """The value with each ``{secure: "<text>"}`` map (exactly that one key) made a Secure."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("secure"), str):
            return Secure(value["secure"])
        return {str(k): _secure_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secure_leaves(v) for v in value]
    return value


def has_secure(value: Any) -> bool:
    if isinstance(value, Secure):
        return True
    if isinstance(value, dict):
        return any(has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(has_secure(v) for v in value)
    return False


@dataclass
class StackFile:
    path: Path
    config: dict[str, Any]  # full key (namespace:name) -> value, secure leaves as Secure
    encryption_salt: str | None
    secrets_provider: str | None

    @property
    def secure_keys(self) -> list[str]:
        return [key for key, value in self.config.items() if has_secure(value)]


def stack_file_path(project_dir: Path, stack: str) -> Path:
    if not _STACK_NAME.match(stack) or stack in (".", ".."):
        raise StackFileError(f"{stack!r} is not a stack name (letters, digits, '-', '_' and '.')")
    return project_dir / f"Pulumi.{stack}.yaml"


def read(project_dir: Path, stack: str) -> StackFile:
    path = stack_file_path(project_dir, stack)
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml"))
        raise StackFileError(f"no stack {stack!r}: {path} does not exist (stacks here: {', '.join(known) or 'none'})")
    try:
        document = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path.name} is not valid YAML: {' '.join(str(exc).split())}") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(config or {}, dict):
        raise StackFileError(f"{path.name}: expected a mapping with a config: mapping of key: value")
    # The CLI refuses these too (config.ParseKey: keys are `<namespace>:<name>`).
    bare = [str(k) for k in (config or {}) if ":" not in str(k)]
    if bare:
        raise StackFileError(
            f"{path.name}: config keys without a namespace: {', '.join(bare)} "
            f"(write them as aixsss:{bare[0]}; the CLI refuses them as well)"
        )
    return StackFile(
        path=path,
        config={str(k): _secure_leaves(v) for k, v in (config or {}).items()},
        encryption_salt=document.get("encryptionsalt") or None,
        secrets_provider=document.get("secretsprovider") or None,
    )


def integral(value: Any) -> Any:
    """Numbers as Go's encoding/json writes a float64: a whole number without a fraction, through
    lists, dicts and secret markers; fractions (2.5), bools, inf and values past 1e21 unchanged."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def config_string(value: Any) -> str:
    """The string the CLI passes to the program for a (decrypted) config value."""
    if isinstance(value, str):
        return value
    # Go's json.Marshal: compact, map keys sorted, UTF-8 unescaped.
    return json.dumps(integral(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _alnum(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


# Stand-ins for the keys a user supplies with `config set --secret`: each of the shape the program
# and the services accept (URL-safe passwords, JWT secret >= 32 chars, a 32-byte base64 key).
_STAND_INS = {
    "secrets.postgresPassword": lambda: _alnum(32),
    "secrets.redisPassword": lambda: _alnum(32),
    "secrets.minioRootUser": lambda: _alnum(16),
    "secrets.minioRootPassword": lambda: _alnum(32),
    "secrets.minioAppAccessKey": lambda: _alnum(20, string.ascii_uppercase + string.digits),
    "secrets.minioAppSecretKey": lambda: _alnum(32),
    "secrets.backupAccessKey": lambda: _alnum(20, string.ascii_uppercase + string.digits),
    "secrets.backupSecretKey": lambda: _alnum(32),
    "secrets.jwtSecret": lambda: _alnum(64),
    "secrets.apiKeyEncryptionKey": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
}
CERTIFICATE_KEY, PRIVATE_KEY_KEY = "tls.suppliedCertificatePem", "tls.suppliedPrivateKeyPem"


def stand_in_certificate(domain: str) -> tuple[str, str]:
    """A self-signed certificate for ``domain`` and its key, valid for a year, in PEM."""
    key_pem = values.private_key_outputs(values.private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"}))
    cert = values.self_signed_cert(
        {
            "privateKeyPem": key_pem["privateKeyPem"],
            "subject": {"commonName": domain, "organization": "aixsss render stand-in"},
            "dnsNames": [domain],
            "validityPeriodHours": 24 * 365,
            "allowedUses": ["digital_signature", "key_encipherment", "server_auth"],
        }
    )
    return cert["certPem"], key_pem["privateKeyPem"]


@dataclass
class SecureConfig:
    """The stack's secure values as the program receives them, and the ones that are stand-ins."""

    values: dict[str, str] = field(default_factory=dict)  # full key -> config string
    stand_ins: dict[str, str] = field(default_factory=dict)  # full key -> why it is not the real value
    # full key -> (what the stand-in stands for, its value): to keep it for the next render
    stand_in_values: dict[str, tuple[str, str]] = field(default_factory=dict)


def resolve(
    stack_file: StackFile,
    project: str,
    passphrase: str | None,
    *,
    domain: str,
    defaults: dict[str, Any],
    kept: Mapping[str, tuple[str, str]] | None = None,
) -> SecureConfig:
    """Decrypt the project's secure values, or stand in for them when they cannot be known.

    ``defaults`` (Pulumi.yaml's, keys without namespace) shape the stand-in of a secure value
    for an ordinary key, so the program still accepts it. ``kept`` are an earlier render's
    stand-ins (``SecureConfig.stand_in_values``): each is used again while it stands for the same.
    """
    name = stack_file.path.name
    resolved = SecureConfig()
    keys = [k for k in stack_file.secure_keys if k.partition(":")[0] == project]
    decrypter: Decrypter | None = None
    why = ""
    if stack_file.encryption_salt is None:
        provider = stack_file.secrets_provider or "the Pulumi Cloud service"
        why = f"its secrets provider is {provider}; render decrypts passphrase-encrypted stacks only"
    elif passphrase is None:
        why = f"set {PASSPHRASE_ENV} to render the real one"
    else:
        # Pulumi checks the passphrase whenever it opens the stack's secrets, used or not.
        try:
            decrypter = Decrypter.from_state(passphrase, stack_file.encryption_salt)
        except IncorrectPassphrase:
            raise StackFileError(
                f"{name}: incorrect passphrase (from {PASSPHRASE_ENV} or {PASSPHRASE_ENV}_FILE) for its encryptionsalt"
            ) from None
        except SecretsError as exc:
            raise StackFileError(f"{name}: encryptionsalt: {exc}") from None

    certificate_pair: tuple[str, str] | None = None

    def stand_in(key: str) -> str:
        nonlocal certificate_pair
        short = key.partition(":")[2]
        if short in (CERTIFICATE_KEY, PRIVATE_KEY_KEY):
            certificate_pair = certificate_pair or stand_in_certificate(domain)
            return certificate_pair[0] if short == CERTIFICATE_KEY else certificate_pair[1]
        if short in _STAND_INS:
            return _STAND_INS[short]()
        default = defaults.get(short)
        if default not in (None, "", [], {}):
            return config_string(default)
        return _alnum(32)

    def leaf(key: str, value: Any, top: bool) -> Any:
        if isinstance(value, Secure):
            if decrypter is None:
                # Nested leaves have no shape to honour; a top-level key has its key's shape.
                return stand_in(key) if top else _alnum(32)
            try:
                return decrypter.decrypt(value.ciphertext)
            except SecretsError as exc:
                raise StackFileError(f"{name}: {key}: cannot decrypt its secure value: {exc}") from None
        if isinstance(value, dict):
            return {k: leaf(key, v, False) for k, v in value.items()}
        if isinstance(value, list):
            return [leaf(key, v, False) for v in value]
        return value

    def stands_for(key: str) -> str:
        # The ciphertext (a new `config set --secret` gets a new stand-in); the certificate pair
        # also stands for the domain it is issued for.
        raw = json.dumps(stack_file.config[key], default=lambda s: s.ciphertext, sort_keys=True)
        pair = key.partition(":")[2] in (CERTIFICATE_KEY, PRIVATE_KEY_KEY)
        return hashlib.sha256(f"{raw}\0{domain if pair else ''}".encode()).hexdigest()

    reuse = {k: value for k, (what, value) in (kept or {}).items() if k in keys and what == stands_for(k)}
    pair = [k for k in keys if k.partition(":")[2] in (CERTIFICATE_KEY, PRIVATE_KEY_KEY)]
    if not all(k in reuse for k in pair):  # a certificate and key are kept together or not at all
        for k in pair:
            reuse.pop(k, None)
    for key in keys:
        if decrypter is None and key in reuse:
            resolved.values[key] = reuse[key]
        else:
            resolved.values[key] = config_string(leaf(key, stack_file.config[key], True))
        if decrypter is None:
            resolved.stand_ins[key] = why
            resolved.stand_in_values[key] = (stands_for(key), resolved.values[key])
    return resolved
