"""A running controller notifies loopback Slack, Teams and webhook receivers exactly once per
event, across a restart, on SQLite and PostgreSQL.

Real git remote, real store, real engine (fake deployer and quantum backends), real apprise
and httpx; Slack's and Teams' https calls go through a loopback TLS-intercepting proxy.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qrelease.config import ChannelConfig, NotificationsConfig, RuleConfig, StoreConfig
from qrelease.daemon import Controller
from qrelease.model.events import EventDraft
from qrelease.model.vocabulary import NotificationKind as K
from qrelease.store import open_store
from tests.helpers.daemon import Api, Rig, synced, wait_for
from tests.helpers.receivers import Receiver, https_proxy

SLACK_URL = "https://hooks.slack.com/services/T0QRELEASE/B0QRELEASE/sLaCkSeCrEt0123456789ab"
TEAMS_URL = "workflows://prod-01.westeurope.logic.azure.com:443/wfQrelease0123/tEaMsSiG0123456"
HOOK_SECRET = "hook-secret-0f9e8d"
HOSTS = ("hooks.slack.com", "prod-01.westeurope.logic.azure.com")
DELIVERY_SECONDS = 60.0
"""apprise paces each Slack and Teams webhook at about one message a second, as they ask."""


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with https_proxy(tmp_path) as (receiver, environ):
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**environ, "T_SLACK": SLACK_URL, "T_TEAMS": TEAMS_URL}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("T_HOOK", HOOK_SECRET)
        yield receiver


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def notifications(hook: Receiver) -> NotificationsConfig:
    return NotificationsConfig(
        channels={
            "chat": ChannelConfig(kind="slack", url_env="T_SLACK"),
            "team": ChannelConfig(kind="teams", url_env="T_TEAMS"),
            "hook": ChannelConfig(kind="webhook", url=hook.url + "/qrelease", secret_env="T_HOOK"),
        },
        rules=(
            RuleConfig(
                on=(K.DEPLOY_SUCCEEDED, K.DEPLOY_FAILED), to=("chat", "team", "hook"), envs=("dev",)
            ),
            RuleConfig(on=(K.PROMOTION,), to=("chat", "hook"), envs=("staging",)),
        ),
        poll=timedelta(milliseconds=100),
        link="http://qrelease.example",
    )


def test_each_event_reaches_every_receiver_once_across_a_restart(
    rig: Rig,
    proxy: Receiver,
    hook: Receiver,
    store_url: str | None,
    api_for: Callable[[Controller], Api],
) -> None:
    config = rig.config(notifications=notifications(hook), store=StoreConfig(url=store_url))
    location = store_url or str(rig.state)

    def expected() -> list[int]:
        with open_store(location) as store:
            return [
                e.seq
                for e in store.events()
                if (e.action, e.env) in (("deploy", "dev"), ("promote", "staging"))
            ]

    def hook_seqs() -> list[int]:
        return [request.json()["event"]["seq"] for request in hook.received()]

    def all_arrived() -> bool:
        wanted = expected()
        chat = len(proxy.received(HOSTS[0]))
        team = len(proxy.received(HOSTS[1]))
        promotions = len([s for s in hook.received() if s.json()["kind"] == "promotion"])
        return sorted(hook_seqs()) == wanted and chat == len(wanted) == team + promotions

    first = rig.start(config)
    api = api_for(first)
    wait_for("the first pass", lambda: synced(api))
    wait_for("the first deploys to be notified", all_arrived, DELIVERY_SECONDS)
    assert len(hook_seqs()) == 2  # both apps went live in dev
    rig.pin("dev", "bell-service", "1.1.0")
    wait_for("the new pin", lambda: api.row("dev", "bell-service")["deployed"] == "1.1.0")
    wait_for("its deploy to be notified", all_arrived, DELIVERY_SECONDS)
    assert first.close() == 0

    with open_store(location) as store:  # `qrelease promote` while the controller is down
        store.append(
            EventDraft(
                env="staging",
                app="qrng",
                action="promote",
                outcome="Committed",
                from_version="0.2.0",
                to_version="0.2.0",
                actor="ada@example.com",
                reason="ship it",
            )
        )
    second = rig.start(config)
    api = api_for(second)
    rig.pin("dev", "qrng", "0.1.0")
    wait_for("the second pin", lambda: api.row("dev", "qrng")["deployed"] == "0.1.0")
    wait_for("everything to be notified", all_arrived, DELIVERY_SECONDS)
    assert second.close() == 0

    seqs = hook_seqs()
    assert Counter(seqs).most_common(1)[0][1] == 1, "an event was delivered twice"
    assert sorted(seqs) == expected() and len(seqs) == 5
    ids = [request.headers["X-Qrelease-Delivery"] for request in hook.received()]
    assert len(set(ids)) == len(ids)
    for host in HOSTS:
        bodies = [request.body.decode() for request in proxy.received(host)]
        assert len(bodies) == len(set(bodies)), f"{host} got a message twice"
    promotion = next(r.json() for r in hook.received() if r.json()["kind"] == "promotion")
    assert promotion["text"].startswith("→ ada@example.com promoted qrng 0.2.0 -> 0.2.0")
    assert promotion["link"] == "http://qrelease.example/apps/qrng"
    log = rig.log.getvalue()
    for secret in (HOOK_SECRET, "sLaCkSeCrEt0123456789ab", "tEaMsSiG0123456"):
        assert secret not in log
    exposition = second.metrics.exposition().decode()  # on PostgreSQL, labelled by replica
    assert re.search(
        r'qrelease_notifications_total\{channel="hook",.*result="delivered"\}', exposition
    )


def test_a_channel_without_its_secret_is_reported_and_the_others_deliver(
    rig: Rig, hook: Receiver, monkeypatch: pytest.MonkeyPatch, api_for: Callable[[Controller], Api]
) -> None:
    monkeypatch.setenv("T_HOOK", HOOK_SECRET)
    monkeypatch.delenv("T_SLACK", raising=False)
    monkeypatch.delenv("T_TEAMS", raising=False)
    controller = rig.start(rig.config(notifications=notifications(hook)))
    api = api_for(controller)
    wait_for("the first pass", lambda: synced(api))
    wait_for("the webhook deliveries", lambda: len(hook.received()) == 2)
    assert controller.close() == 0
    log = rig.log.getvalue()
    assert "notifications.channels.chat: T_SLACK is not set" in log
    assert "notifications.channels.team: T_TEAMS is not set" in log
