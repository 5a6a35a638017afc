"""Masking secrets in text: one rule, used by the logs, the installers, the mirror and Azure.

Secrets reach messages by accident: a URL with credentials in a git or uv error, an API
key in a connection string an SDK echoes, a SAS signature in a blob URL, a bearer token in
a logged header. Every message that leaves qrelease (log lines, status messages, audit
events, CLI errors) goes through `redact`, so no call site has to know which forms exist.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
MIN_SECRET_LENGTH = 4
"""Known secret values shorter than this are not masked (they would mask ordinary words)."""

SENSITIVE_KEY = re.compile(
    r"secret|token|passw(or)?d|authori[sz]ation|credential|api[_-]?key|cookie", re.IGNORECASE
)
"""Field names whose values are secrets whatever they hold (log keys, header names)."""

_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?:[^/@:\s'\"<>]*:[^\s'\"<>?#]*|[^/@\s'\"<>]+)@"  # user:password (to the last @) or user
)
_SCP_USERINFO = re.compile(
    r"(?<![\w/:@.-])[\w.+-]+:[^\s'\"<>]*@(?P<host>[\w.-]+|\[[0-9A-Fa-f:.]+\]):"
)
_SECRET_FIELDS = re.compile(
    r"(?P<key>\b(?:ApiKey|AccountKey|SharedAccessKey|sig|client_secret|x-ms-quantum-api-key"
    r"|password|passwd|access_token|refresh_token)['\"]?\s*[=:]\s*['\"]?)(?P<value>[^;&\s'\",}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)")


def redact_url(url: str) -> str:
    """A URL (or scp-like git address) without the credentials in it.

    >>> redact_url("https://user:token@example.com/repo.git")
    'https://***@example.com/repo.git'
    >>> redact_url("bot:hunter22@git.example:org/repo.git")
    '***@git.example:org/repo.git'
    >>> redact_url("git@github.com:org/repo.git")
    'git@github.com:org/repo.git'

    A password may hold `@`, `:` or `/` where git would not parse it; it is masked anyway:

    >>> redact_url("https://bot:p@ss/w:rd@example.com/repo.git")
    'https://***@example.com/repo.git'
    >>> redact_url("bot:p@ss/w:rd@[::1]:org/repo.git")
    '***@[::1]:org/repo.git'
    """
    masked = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", url)
    return _SCP_USERINFO.sub(lambda m: f"{REDACTED}@{m.group('host')}:", masked)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL credentials, API keys, signatures, tokens and the given values masked.

    >>> redact("cannot fetch https://bot:hunter22@git.example/r.git: denied")
    'cannot fetch https://***@git.example/r.git: denied'
    >>> redact("SubscriptionId=s;ApiKey=abc123;QuantumEndpoint=https://q/")
    'SubscriptionId=s;ApiKey=***;QuantumEndpoint=https://q/'
    >>> redact("GET https://blob/c/b?sv=1&sig=Zm9v%3D&se=2 with Bearer eyJ0.x-y")
    'GET https://blob/c/b?sv=1&sig=***&se=2 with Bearer ***'
    >>> redact("token is hunter22", ["hunter22"])
    'token is ***'
    """
    cleaned = redact_url(text)
    cleaned = _SECRET_FIELDS.sub(lambda m: m.group("key") + REDACTED, cleaned)
    cleaned = _BEARER.sub(lambda m: m.group("key") + REDACTED, cleaned)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            cleaned = cleaned.replace(secret, REDACTED)
    return cleaned
