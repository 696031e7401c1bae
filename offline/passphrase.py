"""Pulumi's passphrase secrets provider, offline: decrypt the ``secure:`` values of a stack file.

`make render` has no Pulumi CLI, so it reads ``Pulumi.<stack>.yaml`` itself. This module mirrors
the Go code of pulumi/pulumi byte for byte where it matters, so a stack file written by
`pulumi config set --secret` decrypts here exactly as `pulumi up` would decrypt it:

- ``pkg/secrets/passphrase/manager.go``:
  ``symmetricCrypterFromPhraseAndState`` — the stack file's ``encryptionsalt`` is
  ``v1:<base64 salt>:<the ciphertext of "pulumi">`` (``NewPassphraseSecretsManager`` draws an
  8-byte salt); any failure to decrypt that check value, or a plaintext other than ``pulumi``,
  is an incorrect passphrase. ``readPassphrase`` — ``PULUMI_CONFIG_PASSPHRASE`` wins if it is
  set at all (even empty); otherwise a non-empty ``PULUMI_CONFIG_PASSPHRASE_FILE`` is read and
  trimmed of surrounding whitespace.
- ``sdk/go/common/resource/config/crypt.go``:
  ``NewSymmetricCrypterFromPassphrase`` — key = PBKDF2-HMAC-SHA256(passphrase, salt,
  1,000,000 iterations, 32 bytes); ``symmetricCrypter.DecryptValue`` — a value is
  ``v1:<base64 12-byte nonce>:<base64 AES-256-GCM ciphertext with its tag>``, no associated data,
  standard base64 with padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
ITERATIONS = 1_000_000
KEY_BYTES = 32
NONCE_BYTES = 12
# What NewPassphraseSecretsManager encrypts into the encryptionsalt to check the passphrase later.
CHECK_PLAINTEXT = "pulumi"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"


class SecretsError(Exception):
    """A secure value or the encryption state cannot be used; the message is for the user."""


class IncorrectPassphrase(SecretsError):
    pass


def _b64(text: str, what: str) -> bytes:
    try:
        # Go's base64.StdEncoding rejects characters outside the alphabet and missing padding.
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretsError(f"bad {what}: not base64 ({exc})") from None


def derive_key(passphrase: str, salt: bytes) -> bytes:
    # surrogateescape: a passphrase from a non-UTF-8 environment keeps its exact bytes, as in Go.
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8", "surrogateescape"), salt, ITERATIONS, KEY_BYTES)


def decrypt_value(key: bytes, value: str) -> str:
    """``symmetricCrypter.DecryptValue``: the plaintext of one ``v1:<nonce>:<ciphertext>`` value."""
    parts = value.split(":")
    if len(parts) != 3:
        raise SecretsError("bad value: expected v1:<nonce>:<ciphertext>")
    if parts[0] != VERSION:
        raise SecretsError(f"unknown value version {parts[0]!r}")
    nonce, ciphertext = _b64(parts[1], "nonce"), _b64(parts[2], "ciphertext")
    if len(nonce) != NONCE_BYTES:
        raise SecretsError("bad value: nonce size is incorrect")
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise SecretsError("the value does not decrypt with this key (message authentication failed)") from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        # Config reaches the program as protobuf strings, which must be UTF-8.
        raise SecretsError("the decrypted value is not UTF-8 text") from None


@dataclass(frozen=True)
class Decrypter:
    """The crypter a stack's ``encryptionsalt`` and a passphrase give, checked like Pulumi checks it."""

    key: bytes

    @classmethod
    def from_state(cls, passphrase: str, state: str) -> Decrypter:
        """``symmetricCrypterFromPhraseAndState``: raises IncorrectPassphrase for a wrong passphrase."""
        version, _, rest = state.partition(":")
        salt_b64, sep, check = rest.partition(":")
        if not sep:
            raise SecretsError("malformed encryptionsalt (expected v1:<salt>:<check value>)")
        if version != VERSION:
            raise SecretsError(f"unknown encryptionsalt version {version!r}")
        key = derive_key(passphrase, _b64(salt_b64, "encryptionsalt"))
        try:
            checked = decrypt_value(key, check)
        except SecretsError:
            raise IncorrectPassphrase("incorrect passphrase") from None
        if checked != CHECK_PLAINTEXT:
            raise IncorrectPassphrase("incorrect passphrase")
        return cls(key)

    def decrypt(self, value: str) -> str:
        return decrypt_value(self.key, value)


def passphrase_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``readPassphrase`` without the prompt: the passphrase the environment gives, or None."""
    env = os.environ if environ is None else environ
    if PASSPHRASE_ENV in env:
        return env[PASSPHRASE_ENV]
    path = env.get(PASSPHRASE_FILE_ENV)
    if not path:
        return None
    try:
        raw = Path(path).absolute().read_bytes()
    except OSError as exc:
        raise SecretsError(f"unable to read {PASSPHRASE_FILE_ENV} ({path}): {exc.strerror}") from None
    return raw.decode("utf-8", "surrogateescape").strip()
