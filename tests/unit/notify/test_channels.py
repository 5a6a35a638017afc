"""The webhook and GitHub channels against loopback receivers, and building channels from config."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from qrelease.config import ChannelConfig
from qrelease.daemon.webhooks import verify
from qrelease.model.events import Event
from qrelease.notify import DeliveryError, Message, build_channels, render
from qrelease.notify.channels import GitHubStatusChannel, WebhookChannel
from tests.helpers.receivers import Receiver

SECRET = "hook-secret-Xy7"
TOKEN = "ghp_testtoken123456"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def message(action: str = "deploy", outcome: str = "Failed", **fields: object) -> Message:
    event = Event.model_validate(
        {
            "seq": 12,
            "time": T0,
            "prev_hash": "0" * 64,
            "hash": "f" * 64,
            "env": "prod",
            "app": "bell-service",
            "to_version": "1.1.0",
            "from_version": "1.0.0",
            "revision": "a" * 40,
            "action": action,
            "outcome": outcome,
            "reason": "health check failed",
            **fields,
        }
    )
    rendered = render(event, link="http://127.0.0.1:8080")
    assert rendered is not None
    return rendered


def test_a_webhook_gets_the_event_as_json_signed_with_hmac(receiver: Receiver) -> None:
    channel = WebhookChannel("hook", receiver.url + "/in", SECRET, timedelta(seconds=5))
    channel.send(message())
    channel.close()
    [request] = receiver.received()
    assert request.path == "/in"
    assert request.headers["X-Qrelease-Event"] == "deploy-failed"
    assert request.headers["X-Qrelease-Delivery"] == f"12-{'f' * 16}"
    lower = {name.lower(): value for name, value in request.headers.items()}
    assert verify(lower, request.body, SECRET).valid  # what our own receiver checks
    assert not verify(lower, request.body, "another-secret").valid
    body = request.json()
    assert body["kind"] == "deploy-failed" and body["id"] == f"12-{'f' * 16}"
    assert body["event"]["seq"] == 12 and body["event"]["to_version"] == "1.1.0"
    assert body["link"] == "http://127.0.0.1:8080/apps/bell-service"


@pytest.mark.parametrize(
    ("status", "permanent"), [(500, False), (503, False), (429, False), (404, True), (400, True)]
)
def test_a_refusal_says_whether_trying_again_can_help(
    receiver: Receiver, status: int, permanent: bool
) -> None:
    receiver.answer(status, Retry_After="7")
    channel = WebhookChannel("hook", receiver.url, SECRET, timedelta(seconds=5))
    with pytest.raises(DeliveryError) as raised:
        channel.send(message())
    channel.close()
    assert raised.value.permanent is permanent
    assert raised.value.retry_after == 7.0
    assert f"answered {status}" in str(raised.value)


def test_an_unreachable_receiver_is_worth_retrying_and_the_error_hides_the_secret() -> None:
    server = Receiver()
    url = server.url
    server.close()
    channel = WebhookChannel("hook", f"{url}/{SECRET}", SECRET, timedelta(seconds=2))
    with pytest.raises(DeliveryError) as raised:
        channel.send(message())
    channel.close()
    assert not raised.value.permanent
    assert SECRET not in str(raised.value)


def test_github_gets_a_commit_status_per_environment_and_app(receiver: Receiver) -> None:
    channel = GitHubStatusChannel(
        "gh", receiver.url + "/api/v3", "org/gitops", TOKEN, "qrelease", timedelta(seconds=5)
    )
    channel.send(message())
    channel.send(message("deploy", "Healthy"))
    channel.send(message("hold", "Held", details={"cause": "approvals"}))
    channel.close()
    failed, healthy, held = receiver.received()
    assert failed.path == f"/api/v3/repos/org/gitops/statuses/{'a' * 40}"
    assert failed.headers["Authorization"] == f"Bearer {TOKEN}"
    assert failed.json() == {
        "state": "failure",
        "context": "qrelease/prod/bell-service",
        "description": "deploy-failed: ✗ prod/bell-service 1.1.0 did not go live",
        "target_url": "http://127.0.0.1:8080/apps/bell-service",
    }
    assert healthy.json()["state"] == "success"
    assert held.json()["state"] == "pending"
    assert held.json()["description"].startswith("approval-needed: ")


def test_github_skips_events_without_a_commit() -> None:
    channel = GitHubStatusChannel(
        "gh", "http://127.0.0.1:9", "org/gitops", TOKEN, "qrelease", timedelta(seconds=1)
    )
    assert channel.accepts(message())
    assert not channel.accepts(message(revision=None))
    assert not channel.accepts(message(revision="abc123"))
    channel.close()


def test_a_channel_whose_secret_is_not_set_is_reported_by_name_not_started() -> None:
    configs = {
        "hook": ChannelConfig(kind="webhook", url="http://127.0.0.1:9/in", secret_env="HOOK"),
        "gh": ChannelConfig(kind="github", repository="org/gitops", token_env="GH_TOKEN"),
        "ops": ChannelConfig(kind="slack", url_env="SLACK_URL"),
    }
    built = build_channels(configs, {"HOOK": SECRET})
    assert list(built.channels) == ["hook"]
    assert built.secrets == (SECRET,)
    assert built.problems == (
        "notifications.channels.gh: GH_TOKEN is not set (it holds the channel's secret)",
        "notifications.channels.ops: SLACK_URL is not set (it holds the channel's secret)",
    )
    for channel in built.channels.values():
        channel.close()
