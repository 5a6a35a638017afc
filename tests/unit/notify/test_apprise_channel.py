"""Slack, Teams and email through apprise, against loopback receivers.

apprise's Slack and Teams plugins call the services' own https hosts; the requests go
through a loopback HTTPS proxy that terminates TLS with a test CA (tests/helpers/receivers).
Email goes to a loopback SMTP server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qrelease.model.events import Event
from qrelease.notify import ChannelError, DeliveryError, Message, render
from qrelease.notify.apprise_channel import AppriseChannel
from tests.helpers.receivers import Receiver, SmtpReceiver, https_proxy

SLACK_URL = "https://hooks.slack.com/services/T0QRELEASE/B0QRELEASE/sEcReTtOkEn0123456789ab"
TEAMS_URL = "workflows://prod-01.westeurope.logic.azure.com:443/wfQrelease0123/sigSeCrEt0123456"
TIMEOUT = timedelta(seconds=5)


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with https_proxy(tmp_path) as (receiver, environ):
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        yield receiver


def message(**fields: object) -> Message:
    event = Event.model_validate(
        {
            "seq": 3,
            "time": datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
            "prev_hash": "0" * 64,
            "hash": "e" * 64,
            "env": "prod",
            "app": "bell-service",
            "from_version": "1.0.0",
            "to_version": "1.1.0",
            "action": "auto-rollback",
            "outcome": "Restored",
            "reason": "health check failed: exit 3",
            "details": {"restored": "1.0.0"},
            **fields,
        }
    )
    rendered = render(event)
    assert rendered is not None
    return rendered


def test_slack_gets_the_message_on_its_webhook_url(proxy: Receiver) -> None:
    AppriseChannel("ops", "slack", SLACK_URL, TIMEOUT).send(message())
    [request] = proxy.received("hooks.slack.com")
    assert request.path == "/services/T0QRELEASE/B0QRELEASE/sEcReTtOkEn0123456789ab"
    posted = request.body.decode()
    assert "prod/bell-service switched back to 1.0.0 after 1.1.0 failed" in posted
    assert "health check failed: exit 3" in posted


def test_teams_gets_an_adaptive_card_through_its_workflow(proxy: Receiver) -> None:
    AppriseChannel("team", "teams", TEAMS_URL, TIMEOUT).send(message())
    [request] = proxy.received("prod-01.westeurope.logic.azure.com")
    assert request.path.startswith("/workflows/wfQrelease0123/triggers/manual/paths/invoke")
    card = request.json()
    assert card["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "switched back to 1.0.0" in request.body.decode()


def test_email_is_sent_over_smtp() -> None:
    smtp = SmtpReceiver()
    try:
        url = f"mailto://127.0.0.1:{smtp.port}?from=qrelease@example.com&to=ops@example.com"
        AppriseChannel("mail", "email", url + "&mode=insecure", TIMEOUT).send(message())
    finally:
        smtp.close()
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["ops@example.com"]
    content = bytes(mail.content or b"").decode()
    assert "Subject: qrelease: rolled back automatically: bell-service in prod 1.1.0" in content


def test_a_failed_delivery_says_why_without_the_token(proxy: Receiver) -> None:
    proxy.answer(500)
    channel = AppriseChannel("ops", "slack", SLACK_URL, TIMEOUT)
    with pytest.raises(DeliveryError) as raised:
        channel.send(message())
    assert not raised.value.permanent
    assert "slack channel ops:" in str(raised.value)
    assert "sEcReTtOkEn0123456789ab" not in str(raised.value)


def test_a_url_of_another_service_than_the_channel_kind_is_refused() -> None:
    with pytest.raises(ChannelError, match="a slack channel takes slack://, https:// URLs"):
        AppriseChannel("ops", "slack", "mailto://ops@example.com", TIMEOUT)
    with pytest.raises(ChannelError, match="must be the service's webhook URL"):
        AppriseChannel("ops", "slack", "https://evil.example/services/a/b/c", TIMEOUT)
    with pytest.raises(ChannelError, match="not one apprise understands"):
        AppriseChannel("x", "apprise", "nosuchservice://token", TIMEOUT)
