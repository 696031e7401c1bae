"""Credentials inside connection URLs."""

from __future__ import annotations

from urllib.parse import quote


def url_quote(credential: str) -> str:
    """``credential`` percent-encoded for the userinfo of a URL (RFC 3986): ``@ : / ? #`` and
    every other reserved character become ``%XX``, so the URL parses back to the same host."""
    return quote(credential, safe="")
