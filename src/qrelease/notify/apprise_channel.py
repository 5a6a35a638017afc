"""Slack, Microsoft Teams, email and any other apprise service: the only apprise importer.

apprise is a maintained library that knows over a hundred notification services, their
URL forms and their message formats (Slack blocks, Teams adaptive cards, MIME mail), so
qrelease writes none of those clients. A channel is one apprise URL, read from the
environment because it carries the service's token or password. apprise reports a
failure only as `False` plus log lines; the lines are captured, redacted and become the
error. apprise cannot say whether a failure is lasting, so every failure is retried.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from qrelease.notify.channels import ChannelError, DeliveryError
from qrelease.notify.rules import Message
from qrelease.redaction import redact

SCHEMES: dict[str, tuple[str, ...]] = {
    "slack": ("slack", "https"),
    "teams": ("workflow", "workflows", "msteams", "https"),
    "email": ("mailto", "mailtos"),
}
"""The URL schemes each kind takes (`https` for the services' own webhook URLs)."""
HTTPS_HOSTS: dict[str, tuple[str, ...]] = {
    "slack": ("hooks.slack.com", "hooks.slack-gov.com"),
    "teams": (".logic.azure.com", ".powerautomate.com", ".environment.api.powerplatform.com"),
}
MAX_ERROR = 500
_load_lock = threading.Lock()


def _apprise() -> Any:
    """The apprise module, its service plugins loaded once.

    apprise imports every plugin on first use; one of them imports the standard library's
    `imghdr`, which warns that it is deprecated on Python 3.11+. That warning is about
    apprise's import, not about anything qrelease does, so it is silenced here only.
    """
    with _load_lock, warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".imghdr. is deprecated", category=DeprecationWarning
        )
        module = importlib.import_module("apprise")
        importlib.import_module("apprise.manager_plugins").NotificationManager().load_modules()
    return module


class AppriseChannel:
    """One apprise URL; the URL itself is a secret and never appears in a message or log."""

    def __init__(self, name: str, kind: str, url: str, timeout: timedelta) -> None:
        self.name = name
        self.kind = kind
        self._url = url
        _check_kind(kind, url)
        self._apprise = _apprise()
        plugin = self._apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise ChannelError(f"the {kind} URL in its variable is not one apprise understands")
        plugin.socket_connect_timeout = timeout.total_seconds()
        plugin.socket_read_timeout = timeout.total_seconds()
        self._plugin = plugin
        self._secrets = [url, *_url_parts(url)]

    def accepts(self, message: Message) -> bool:
        """Chat and mail take every message."""
        return True

    def send(self, message: Message) -> None:
        """Notify through apprise; a False answer becomes a DeliveryError with apprise's words."""
        notify_type = self._apprise.NotifyType
        types = {
            "success": notify_type.SUCCESS,
            "failure": notify_type.FAILURE,
            "warning": notify_type.WARNING,
            "info": notify_type.INFO,
        }
        with self._apprise.LogCapture(level=self._apprise.logging.WARNING) as captured:
            delivered = self._plugin.notify(
                body=message.text, title=message.title, notify_type=types[message.severity]
            )
        if not delivered:
            said = " ".join(
                line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines() if line
            )
            reason = redact(said, self._secrets)[:MAX_ERROR] or "apprise reported a failure"
            raise DeliveryError(f"{self.kind} channel {self.name}: {reason}")

    def close(self) -> None:
        """apprise holds no connection between messages."""


def _check_kind(kind: str, url: str) -> None:
    """Refuse a URL of another service than the channel's kind says (a pasted wrong variable)."""
    if kind == "apprise":
        return
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    allowed = SCHEMES[kind]
    if scheme not in allowed:
        raise ChannelError(
            f"a {kind} channel takes {', '.join(s + '://' for s in allowed)} URLs, "
            f"not {scheme or 'schemeless'} ones"
        )
    if scheme == "https" and not host.endswith(HTTPS_HOSTS[kind]) and host not in HTTPS_HOSTS[kind]:
        raise ChannelError(f"a {kind} channel's https URL must be the service's webhook URL")


def _url_parts(url: str) -> list[str]:
    """The URL's path segments, user and password: each may be a token to mask on its own."""
    parts = urlsplit(url)
    pieces = [piece for piece in parts.path.split("/") if len(piece) >= 8]
    if parts.netloc and ("@" in parts.netloc or parts.scheme in ("slack", "workflow", "workflows")):
        pieces.append(parts.netloc)
    pieces += [value for value in (parts.username, parts.password) if value]
    return pieces
