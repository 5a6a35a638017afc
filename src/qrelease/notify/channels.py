"""Where a notification goes: the `Channel` Protocol, the webhook and GitHub channels, and the
factory that builds every configured channel with its secret from the environment.

Slack, Microsoft Teams and email go through apprise (`notify/apprise.py`), which knows
those services' formats. Two channels are ours because no maintained library does them: a
generic webhook whose body is signed with HMAC-SHA256 (as GitHub signs its own webhooks,
so receivers can reuse their verification), and GitHub commit statuses on the GitOps repo.
A channel either delivers or raises `DeliveryError`, saying whether trying again can help.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from urllib.parse import quote

import httpx

from qrelease.config import APPRISE_KINDS, ChannelConfig
from qrelease.notify.rules import Message
from qrelease.redaction import redact

SIGNATURE_HEADER = "X-Qrelease-Signature"
DELIVERY_HEADER = "X-Qrelease-Delivery"
EVENT_HEADER = "X-Qrelease-Event"
USER_AGENT = "qrelease-notifier"
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ERROR_BODY = 200
"""How much of a refusing receiver's body an error quotes."""


class ChannelError(Exception):
    """A channel cannot be built (its secret is not set, its URL is not one it takes)."""


class DeliveryError(Exception):
    """A message did not arrive; `permanent` when the same request cannot succeed later."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(Protocol):
    """One destination of notifications."""

    name: str

    def accepts(self, message: Message) -> bool:
        """False for a message this channel cannot carry (it is skipped, not retried)."""
        ...

    def send(self, message: Message) -> None:
        """Deliver one message, or raise DeliveryError."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class Built:
    """The channels that could be built, the secrets they hold, and why others could not."""

    channels: Mapping[str, Channel]
    secrets: tuple[str, ...]
    problems: tuple[str, ...]


def build_channels(
    configs: Mapping[str, ChannelConfig], environ: Mapping[str, str] | None = None
) -> Built:
    """Every configured channel whose secret is set; a problem line for each one that is not."""
    env = os.environ if environ is None else environ
    channels: dict[str, Channel] = {}
    secrets: list[str] = []
    problems: list[str] = []
    for name, config in configs.items():
        try:
            channel, secret = _build(name, config, env)
        except ChannelError as error:
            problems.append(f"notifications.channels.{name}: {error}")
            continue
        channels[name] = channel
        secrets.append(secret)
    return Built(channels, tuple(secrets), tuple(problems))


def _build(name: str, config: ChannelConfig, env: Mapping[str, str]) -> tuple[Channel, str]:
    variable = config.url_env or config.secret_env or config.token_env or ""
    secret = env.get(variable, "").strip()
    if not secret:
        raise ChannelError(f"{variable} is not set (it holds the channel's secret)")
    if config.kind in APPRISE_KINDS:
        from qrelease.notify.apprise_channel import AppriseChannel

        return AppriseChannel(name, config.kind, secret, config.timeout), secret
    if config.kind == "webhook":
        assert config.url is not None  # ChannelConfig requires it for webhooks
        return WebhookChannel(name, config.url, secret, config.timeout), secret
    assert config.repository is not None  # ChannelConfig requires it for github
    status = GitHubStatusChannel(
        name, config.api_url, config.repository, secret, config.context, config.timeout
    )
    return status, secret


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: the HMAC-SHA256 of the body under the secret, as the header carries it.

    >>> sign(b'{"id": "1"}', "s3cret")
    'sha256=9b6cbdf1305168354d186eef3b0c32688153fba756a3fe2f7a03bf0283df458e'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _HttpChannel:
    """A channel that POSTs JSON with httpx; statuses are sorted into retry or give up."""

    def __init__(self, name: str, secret: str, timeout: timedelta) -> None:
        self.name = name
        self._secret = secret
        self._client = httpx.Client(
            timeout=timeout.total_seconds(), headers={"User-Agent": USER_AGENT}
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _post(self, url: str, body: bytes, headers: Mapping[str, str], where: str) -> None:
        try:
            response = self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as error:
            raise DeliveryError(self._clean(f"{where}: {type(error).__name__}: {error}")) from None
        if response.is_success:
            return
        status = response.status_code
        text = self._clean(f"{where} answered {status}: {response.text[:MAX_ERROR_BODY]}")
        raise DeliveryError(
            text,
            permanent=status not in TRANSIENT_STATUS and 400 <= status < 500,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    def _clean(self, text: str) -> str:
        return redact(text, [self._secret])


class WebhookChannel(_HttpChannel):
    """POST the message as JSON to a URL, the body signed with HMAC-SHA256.

    Headers: `X-Qrelease-Signature: sha256=<hex>`, `X-Qrelease-Delivery: <id>` (the same id
    on a repeat, so a receiver can drop it) and `X-Qrelease-Event: <kind>`.
    """

    def __init__(self, name: str, url: str, secret: str, timeout: timedelta) -> None:
        super().__init__(name, secret, timeout)
        self.url = url

    def accepts(self, message: Message) -> bool:
        """A webhook takes every message."""
        return True

    def send(self, message: Message) -> None:
        """POST the signed JSON body."""
        body = json.dumps(message.payload(), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret),
            DELIVERY_HEADER: message.delivery_id,
            EVENT_HEADER: str(message.kind),
        }
        self._post(self.url, body, headers, f"webhook {self.url}")


_STATES: Mapping[str, str] = {
    "success": "success",
    "failure": "failure",
    "warning": "pending",
    "info": "pending",
}
_GITHUB_DESCRIPTION = 140


class GitHubStatusChannel(_HttpChannel):
    """A commit status on the GitOps repo's revision the event cites, per environment and app.

    The context is `<context>/<env>/<app>`: success when a release went live, failure when a
    deploy, a gate or the live health check failed, pending while held or after a promotion
    or rollback commit that the controller has not applied yet.
    """

    def __init__(
        self,
        name: str,
        api_url: str,
        repository: str,
        token: str,
        context: str,
        timeout: timedelta,
    ) -> None:
        super().__init__(name, token, timeout)
        self.api_url = api_url
        self.repository = repository
        self.context = context

    def accepts(self, message: Message) -> bool:
        """Only events that name a full commit id and an (environment, app)."""
        revision = str(message.event.get("revision") or "")
        return len(revision) == 40 and bool(message.event.get("env") and message.event.get("app"))

    def send(self, message: Message) -> None:
        """POST /repos/{owner}/{repo}/statuses/{sha}."""
        event = message.event
        headline = message.text.splitlines()[0]
        status = {
            "state": _STATES[message.severity],
            "context": f"{self.context}/{event['env']}/{event['app']}",
            "description": _fit(f"{message.kind}: {headline}", _GITHUB_DESCRIPTION),
        }
        if message.link:
            status["target_url"] = message.link
        url = f"{self.api_url}/repos/{self.repository}/statuses/{quote(str(event['revision']))}"
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._secret}",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        self._post(url, json.dumps(status).encode(), headers, f"GitHub {self.repository}")


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis.

    >>> _fit("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; a date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
