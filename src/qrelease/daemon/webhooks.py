"""Checking that a webhook call comes from someone who knows the shared secret.

A webhook only tells the controller "look now": the payload is never parsed or trusted,
so the only question is whether the caller holds the secret. Each Git host proves it its
own way; every comparison is constant-time. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES = 1 << 20
GITHUB_HEADER = "x-hub-signature-256"
GITLAB_HEADER = "x-gitlab-token"
GENERIC_HEADER = "x-qrelease-signature"
AUTHORIZATION = "authorization"


@dataclass(frozen=True)
class Verdict:
    """Who called (the provider the headers claim) and whether the proof holds."""

    provider: str
    valid: bool


def sign(body: bytes, secret: str) -> str:
    """The `sha256=<hex>` HMAC signature GitHub and the generic form carry.

    >>> sign(b"{}", "s3cret")
    'sha256=adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b'
    """
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Verdict:
    """Check the proof of whichever provider the headers name; no proof at all is invalid.

    `headers` must have lower-case names (as ASGI servers deliver them).

    >>> verify({"x-gitlab-token": "s3cret"}, b"", "s3cret")
    Verdict(provider='gitlab', valid=True)
    >>> verify({}, b"", "s3cret")
    Verdict(provider='unknown', valid=False)
    """
    if GITHUB_HEADER in headers:
        return Verdict("github", _same(headers[GITHUB_HEADER], sign(body, secret)))
    if GENERIC_HEADER in headers:
        return Verdict("generic", _same(headers[GENERIC_HEADER], sign(body, secret)))
    if GITLAB_HEADER in headers:
        return Verdict("gitlab", _same(headers[GITLAB_HEADER], secret))
    if AUTHORIZATION in headers:
        password = basic_auth_password(headers[AUTHORIZATION])
        return Verdict("azure-devops", password is not None and _same(password, secret))
    return Verdict("unknown", valid=False)


def basic_auth_password(authorization: str) -> str | None:
    """The password of an HTTP basic `Authorization` value (Azure DevOps service hooks).

    >>> basic_auth_password("Basic " + base64.b64encode(b"hook:pw").decode())
    'pw'
    >>> basic_auth_password("Bearer abc") is None
    True
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def declared_too_large(content_length: str | None, limit: int = MAX_BODY_BYTES) -> bool:
    """True when a Content-Length header already announces more than `limit` bytes.

    >>> declared_too_large(str(MAX_BODY_BYTES + 1))
    True
    >>> declared_too_large("junk")
    False
    """
    if content_length is None or not content_length.strip().isdigit():
        return False
    return int(content_length) > limit


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of two strings of any characters."""
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))
