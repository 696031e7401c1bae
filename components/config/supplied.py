"""Checks on the secrets a user supplies with `pulumi config set --secret`.

Each check says what the consumer of the value accepts; none ever repeats the value itself.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# What may appear in a password that travels inside a URL the application parses itself: the
# app reads REDIS_URL with WHATWG `new URL()` and uses `url.password` without percent-decoding,
# so only characters that URL serialisation leaves untouched are safe (RFC 3986 unreserved).
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
# Characters that end or split a config line (redis.conf, env files) or a shell word.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")

Check = Callable[[str], str | None]


def _password(minimum: int, *, url_safe: bool = False, ascii_only: bool = False) -> Check:
    def check(value: str) -> str | None:
        if len(value) < minimum:
            return f"at least {minimum} characters"
        if _CONTROL_OR_SPACE.search(value):
            return "no spaces or control characters"
        if ascii_only and not value.isascii():
            return "ASCII characters only (its SCRAM verifier is computed without SASLprep)"
        if url_safe and not _URL_SAFE.match(value):
            return "only A-Z a-z 0-9 . _ ~ - (the application reads it from a URL without decoding)"
        return None

    return check


def _jwt_secret(value: str) -> str | None:
    # apps/api/src/config/env.ts: JWT_SECRET: z.string().min(32)
    return None if len(value) >= 32 else "at least 32 characters (the api refuses to start below that)"


def _encryption_key(value: str) -> str | None:
    # The api and worker decode it as base64 and use it as an AES-256 key only if it is exactly
    # 32 bytes; anything else silently becomes sha256(text), a different key from the one intended.
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    return None if len(raw) == 32 else f"base64 of 32 random bytes (e.g. `openssl rand -base64 32`), not {len(raw)}"


# Supplied key name -> what its consumer accepts.
SECRET_CHECKS: dict[str, Check] = {
    # 16 characters is this project's floor for a password (the generated ones have 32-40);
    # the services themselves would take less (MinIO: 8).
    # The program gives PostgreSQL the password's SCRAM verifier (conf/postgres.scram_verifier).
    "postgresPassword": _password(16, ascii_only=True),
    "redisPassword": _password(16, url_safe=True),
    # MinIO refuses a user (access key) under 3 characters, root's or one `mc admin user add` makes.
    "minioRootUser": _password(3),
    "minioRootPassword": _password(16),
    "minioAppAccessKey": _password(3),
    "minioAppSecretKey": _password(16),
    "backupAccessKey": _password(3),
    "backupSecretKey": _password(16),
    "jwtSecret": _jwt_secret,
    "apiKeyEncryptionKey": _encryption_key,
}


def _covers(names: list[str], domain: str) -> bool:
    for name in names:
        name = name.lower().rstrip(".")
        if name == domain:
            return True
        if name.startswith("*.") and domain.count(".") == name.count(".") and domain.endswith(name[1:]):
            return True
    return False


def _public_keys_match(certificate: x509.Certificate, key: object) -> bool:
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        return False
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == certificate.public_key().public_bytes(der, spki)


def certificate_problems(
    cert_pem: str, key_pem: str, domain: str, now: datetime.datetime | None = None
) -> list[tuple[str, str]]:
    """(key name, what is wrong) for a supplied public certificate and its private key."""
    now = now or datetime.datetime.now(datetime.UTC)
    problems: list[tuple[str, str]] = []
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return [("publicCertificatePem", "a PEM certificate chain (-----BEGIN CERTIFICATE-----), leaf first")]
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        problems.append(("publicPrivateKeyPem", "an unencrypted PEM private key (RSA, ECDSA or Ed25519)"))
        key = None
    if key is not None and not _public_keys_match(leaf, key):
        problems.append(("publicPrivateKeyPem", "the private key of the certificate's public key (they do not match)"))
    if leaf.not_valid_after_utc <= now:
        expired = f"{leaf.not_valid_after_utc:%Y-%m-%d}"
        problems.append(("publicCertificatePem", f"a certificate still valid (it expired {expired})"))
    elif leaf.not_valid_before_utc > now:
        starts = f"{leaf.not_valid_before_utc:%Y-%m-%d}"
        problems.append(("publicCertificatePem", f"a certificate already valid (it starts {starts})"))
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        names = []  # browsers ignore the common name: only SANs count
    if not _covers(names, domain):
        shown = ", ".join(names) or "no DNS names"
        problems.append(("publicCertificatePem", f"a certificate whose SANs cover {domain} (it names {shown})"))
    return problems
