"""Delivery from the audit log: in order, once, retried with backoff, across restarts.

Real stores (SQLite and PostgreSQL), a webhook channel posting to a loopback receiver and a
hand-moved clock: each `tick` is one look at the log, as the notifier thread makes it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qrelease.config import ChannelConfig, NotificationsConfig, RuleConfig
from qrelease.daemon.logs import make_logger
from qrelease.model.events import EventDraft
from qrelease.model.vocabulary import NotificationKind as K
from qrelease.notify import Message, Notifier
from qrelease.notify.channels import WebhookChannel
from qrelease.store import StateStore, open_store
from tests.helpers.clock import ManualClock
from tests.helpers.receivers import Receiver

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SECRET = "notifier-secret-77"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(location: str) -> Iterator[StateStore]:
    with open_store(location) as opened:
        yield opened


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class Rig:
    """Notifiers over one store, posting to one receiver, on one clock."""

    def __init__(self, store: StateStore, receiver: Receiver, **settings: Any) -> None:
        self.store = store
        self.receiver = receiver
        self.clock = ManualClock(T0)
        self.log = io.StringIO()
        rules = settings.pop(
            "rules",
            (RuleConfig(on=(K.DEPLOY_FAILED, K.DEPLOY_SUCCEEDED, K.GATE_FAILED), to=("hook",)),),
        )
        self.config = NotificationsConfig(
            channels={"hook": ChannelConfig(kind="webhook", url=receiver.url, secret_env="X")},
            rules=rules,
            **settings,
        )
        self.notifiers: list[Notifier] = []

    def notifier(self, owner: str = "controller-a", store: StateStore | None = None) -> Notifier:
        channel = WebhookChannel("hook", self.receiver.url, SECRET, timedelta(seconds=5))
        notifier = Notifier(
            store or self.store,
            {"hook": channel},
            self.config,
            owner=owner,
            clock=self.clock,
            log=make_logger(stream=self.log),
            secrets=[SECRET],
        )
        self.notifiers.append(notifier)
        return notifier

    def record(self, action: str, outcome: str, version: str = "1.1.0", **fields: Any) -> int:
        draft = EventDraft(
            env="prod", app="bell", action=action, outcome=outcome, to_version=version, **fields
        )
        return self.store.append(draft, time=self.clock()).seq

    def delivered(self) -> list[int]:
        return [request.json()["event"]["seq"] for request in self.receiver.received()]

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines()]
        return [line for line in lines if line["event"] == event]

    def close(self) -> None:
        for notifier in self.notifiers:
            notifier.close()


@pytest.fixture
def rig(store: StateStore, receiver: Receiver) -> Iterator[Rig]:
    the_rig = Rig(store, receiver, start="beginning")
    yield the_rig
    the_rig.close()


def test_matching_events_are_delivered_in_order_once(rig: Rig) -> None:
    failed = rig.record("deploy", "Failed", reason="health check failed")
    rig.record("install", "Succeeded")
    gate = rig.record("gate", "Failed", details={"gate": "smoke"})
    rig.record("gate", "Passed", details={"gate": "estimate"})
    notifier = rig.notifier()
    notifier.tick()
    notifier.tick()
    assert rig.delivered() == [failed, gate]
    healthy = rig.record("deploy", "Healthy", version="1.2.0")
    notifier.tick()
    assert rig.delivered() == [failed, gate, healthy]
    assert rig.store.get_meta("notify.cursor.hook") == str(healthy)


def test_an_event_two_rules_send_to_one_channel_goes_there_once(
    store: StateStore, receiver: Receiver
) -> None:
    rules = (
        RuleConfig(on=(K.HOLD,), to=("hook",)),
        RuleConfig(on=(K.APPROVAL_NEEDED,), to=("hook",), envs=("prod",)),
    )
    rig = Rig(store, receiver, rules=rules, start="beginning")
    held = rig.record("hold", "Held", details={"cause": "approvals"})
    rig.notifier().tick()
    [request] = receiver.received()
    assert request.json()["event"]["seq"] == held
    assert request.json()["kinds"] == ["approval-needed", "hold"]
    rig.close()


def test_start_now_leaves_the_history_before_the_first_start_alone(
    store: StateStore, receiver: Receiver
) -> None:
    rig = Rig(store, receiver)  # start = "now", the default
    rig.record("deploy", "Failed")
    notifier = rig.notifier()
    notifier.tick()
    assert rig.delivered() == []
    later = rig.record("deploy", "Failed", version="1.2.0")
    notifier.tick()
    assert rig.delivered() == [later]
    rig.close()


def test_a_failing_receiver_is_retried_with_backoff_and_holds_later_events_back(
    rig: Rig,
) -> None:
    first = rig.record("deploy", "Failed")
    second = rig.record("deploy", "Healthy", version="1.2.0")
    rig.receiver.answer(503, times=3)
    notifier = rig.notifier()
    assert notifier.tick() == timedelta(seconds=5)  # backoff, doubling from 5s
    assert notifier.tick() == timedelta(seconds=5)  # not due yet: nothing sent
    rig.clock.advance(timedelta(seconds=5))
    assert notifier.tick() == timedelta(seconds=5)  # poll is 5s: the 10s retry wakes then
    rig.clock.advance(timedelta(seconds=9))
    notifier.tick()
    assert len(rig.receiver.received()) == 2
    rig.clock.advance(timedelta(seconds=1))
    notifier.tick()  # third failure: next in 20s
    rig.clock.advance(timedelta(seconds=20))
    notifier.tick()
    assert rig.delivered() == [first, first, first, first, second]
    retried = rig.logged("notification not delivered; will retry")
    assert [entry["attempt"] for entry in retried] == [1, 2, 3]
    assert "answered 503" in retried[0]["error"]


def test_a_receiver_that_refuses_for_good_is_given_up_and_the_next_event_goes_on(
    rig: Rig,
) -> None:
    refused = rig.record("deploy", "Failed")
    after = rig.record("deploy", "Healthy", version="1.2.0")
    rig.receiver.answer(404)
    rig.notifier().tick()
    assert rig.delivered() == [refused, after]
    [given_up] = rig.logged("notification given up")
    assert given_up["seq"] == refused and given_up["why"] == "refused for good"


def test_an_event_failing_longer_than_give_up_after_is_dropped(
    store: StateStore, receiver: Receiver
) -> None:
    rig = Rig(store, receiver, start="beginning", give_up_after=timedelta(minutes=1))
    stuck = rig.record("deploy", "Failed")
    rig.receiver.answer(500, times=100)
    notifier = rig.notifier()
    for _ in range(5):
        notifier.tick()
        rig.clock.advance(timedelta(seconds=20))
    assert rig.store.get_meta("notify.cursor.hook") == str(stuck)
    [given_up] = rig.logged("notification given up")
    assert given_up["why"] == "failing too long"
    rig.close()


def test_a_restarted_notifier_goes_on_after_the_last_delivered_event(rig: Rig) -> None:
    first = rig.record("deploy", "Failed")
    rig.notifier().tick()
    second = rig.record("deploy", "Healthy", version="1.2.0")
    rig.record("install", "Succeeded")
    restarted = rig.notifier()  # same owner: its own lease, taken back at once
    restarted.tick()
    restarted.tick()
    assert rig.delivered() == [first, second]


def test_of_two_controllers_on_one_store_only_the_lease_holder_sends(
    rig: Rig, location: str
) -> None:
    with open_store(location) as other_connection:
        leader = rig.notifier("controller-a")
        follower = rig.notifier("controller-b", other_connection)
        first = rig.record("deploy", "Failed")
        leader.tick()
        follower.tick()
        second = rig.record("deploy", "Failed", version="1.2.0")
        follower.tick()
        assert rig.delivered() == [first]
        rig.clock.advance(timedelta(seconds=61))  # the leader is gone: its lease runs out
        follower.tick()
        follower.tick()
        assert rig.delivered() == [first, second]
        leader.tick()  # back, but the lease is the follower's now
        assert rig.delivered() == [first, second]


class RacedChannel:
    """A channel during whose first send another notifier moves the cursor on."""

    name = "hook"

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.sent: list[int] = []

    def accepts(self, message: Message) -> bool:
        return True

    def send(self, message: Message) -> None:
        self.sent.append(message.event["seq"])
        if len(self.sent) == 1:
            self.store.set_meta("notify.cursor.hook", str(message.event["seq"]))

    def close(self) -> None:
        pass


def test_a_notifier_whose_cursor_another_moved_stops_instead_of_sending_twice(rig: Rig) -> None:
    first = rig.record("deploy", "Failed")
    rig.record("deploy", "Failed", version="1.2.0")
    channel = RacedChannel(rig.store)
    notifier = Notifier(
        rig.store,
        {"hook": channel},
        rig.config,
        owner="controller-a",
        clock=rig.clock,
        log=make_logger(stream=rig.log),
    )
    notifier.tick()
    assert channel.sent == [first]
    assert rig.logged("notification cursor moved by another controller")
    assert rig.store.get_meta("notify.cursor.hook") == str(first)


def test_messages_and_logs_keep_the_channel_secret_out(rig: Rig) -> None:
    rig.record("deploy", "Failed", reason=f"output mentioned {SECRET}")
    rig.receiver.answer(500, Some_Header=SECRET)
    rig.notifier().tick()
    rig.clock.advance(timedelta(seconds=5))
    rig.notifiers[0].tick()
    assert all(SECRET not in request.body.decode() for request in rig.receiver.received())
    assert SECRET not in rig.log.getvalue()


class SlowChannel:
    """Each send takes 25 s of the clock; meanwhile another controller tries for the lease."""

    name = "hook"

    def __init__(self, rig: Rig, rival: Notifier) -> None:
        self.rig = rig
        self.rival = rival
        self.sent: list[int] = []
        self.rival_got_lease: list[bool] = []

    def accepts(self, message: Message) -> bool:
        return True

    def send(self, message: Message) -> None:
        self.rig.clock.advance(timedelta(seconds=25))
        self.sent.append(message.event["seq"])
        self.rival_got_lease.append(self.rival.ledger.hold_lease())

    def close(self) -> None:
        pass


def test_a_long_run_of_slow_sends_keeps_renewing_the_lease(rig: Rig, location: str) -> None:
    seqs = [rig.record("deploy", "Failed", version=f"1.{minor}.0") for minor in range(6)]
    with open_store(location) as other_connection:
        rival = rig.notifier("controller-b", other_connection)
        channel = SlowChannel(rig, rival)
        leader = Notifier(
            rig.store,
            {"hook": channel},
            rig.config,
            owner="controller-a",
            clock=rig.clock,
            log=make_logger(stream=rig.log),
        )
        leader.tick()  # 6 sends x 25 s: well past the 60 s lease taken at the start
        assert channel.sent == seqs
        assert channel.rival_got_lease == [False] * 6
