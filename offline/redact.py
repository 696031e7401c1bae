"""Redaction of secret values in everything `make render` writes."""

from __future__ import annotations

import hashlib
from typing import Any

from offline.engine import is_secret

REDACTED = "[redacted]"


def hex_form(atom: str) -> str:
    """A secret as it appears inside hex-encoded bytes (byte-aligned, lower case)."""
    return atom.encode().hex()


def sha256_form(atom: str) -> str:
    """A secret as its SHA-256 hex digest (Redis ACL password hashes)."""
    return hashlib.sha256(atom.encode()).hexdigest()


class Redactor:
    """Replaces every known secret value, wherever it is embedded, unless secrets are shown.

    ``atoms`` are the values providers generated and the stack's secret config. A value the
    program marked secret that embeds no atom (a derived secret) is replaced whole.
    """

    def __init__(self, atoms: list[str], show_secrets: bool) -> None:
        # Each also hex-encoded: HAProxy's Redis health check sends the password as hex RESP
        # (components/conf/redis_ha.py, `tcp-check send-binary`).
        # And as SHA-256 hex: redis.conf lists the Redis passwords' hashes (ACL `#<hash>`).
        encoded = [*atoms, *(hex_form(a) for a in atoms if a), *(sha256_form(a) for a in atoms if a)]
        # Longest first, so a PEM block goes before any shorter value it might contain.
        self.atoms = sorted({a for a in encoded if a}, key=len, reverse=True)
        self.show_secrets = show_secrets

    def contains_secret(self, text: str) -> bool:
        return any(atom in text for atom in self.atoms)

    def text(self, text: str) -> str:
        if self.show_secrets:
            return text
        for atom in self.atoms:
            text = text.replace(atom, REDACTED)
        return text

    def value(self, value: Any, *, inside_secret: bool = False) -> Any:
        """A property tree without secret markers, its secrets redacted (or shown)."""
        if is_secret(value):
            return self.value(value["value"], inside_secret=True)
        if isinstance(value, dict):
            return {k: self.value(v, inside_secret=inside_secret) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, inside_secret=inside_secret) for v in value]
        if isinstance(value, str):
            redacted = self.text(value)
            if inside_secret and not self.show_secrets and redacted == value and value:
                return REDACTED
            return redacted
        return value

    def holds_secret(self, value: Any) -> bool:
        """True if ``value`` carries a secret (a marker or an embedded atom): write it 0600."""
        if is_secret(value):
            return True
        if isinstance(value, dict):
            return any(self.holds_secret(v) for v in value.values())
        if isinstance(value, list):
            return any(self.holds_secret(v) for v in value)
        return isinstance(value, str) and self.contains_secret(value)
