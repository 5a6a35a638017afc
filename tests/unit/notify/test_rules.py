"""Which audit events are which notification kinds, which channels get them, what they say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qrelease.config import RuleConfig
from qrelease.model.events import Event
from qrelease.model.vocabulary import NotificationKind as K
from qrelease.notify import channels_for, kinds_of, render

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def event(action: str, outcome: str = "", seq: int = 7, **fields: Any) -> Event:
    base = {
        "seq": seq,
        "time": T0,
        "prev_hash": "0" * 64,
        "hash": "ab" * 32,
        "env": "prod",
        "app": "bell-service",
        "from_version": "1.0.0",
        "to_version": "1.1.0",
        "revision": "c" * 40,
    }
    return Event.model_validate({**base, **fields, "action": action, "outcome": outcome})


@pytest.mark.parametrize(
    ("action", "outcome", "details", "kinds"),
    [
        ("deploy", "Healthy", {}, {K.DEPLOY_SUCCEEDED}),
        ("deploy", "Failed", {"step": "health"}, {K.DEPLOY_FAILED}),
        ("auto-rollback", "Restored", {"restored": "1.0.0"}, {K.AUTO_ROLLBACK}),
        ("gate", "Failed", {"gate": "smoke"}, {K.GATE_FAILED}),
        ("gate", "Inconclusive", {"gate": "verification"}, {K.GATE_FAILED}),
        ("gate", "Passed", {"gate": "smoke"}, set()),
        ("hold", "Held", {"cause": "soak,window"}, {K.HOLD}),
        ("hold", "Held", {"cause": "soak,approvals"}, {K.HOLD, K.APPROVAL_NEEDED}),
        ("hold", "Held", {"cause": "target"}, {K.HOLD, K.TARGET_UNAVAILABLE}),
        ("promote", "Committed", {}, {K.PROMOTION}),
        ("rollback", "Committed", {}, {K.ROLLBACK}),
        ("install", "Succeeded", {}, set()),
        ("switch", "Succeeded", {}, set()),
        ("suspend", "Committed", {}, set()),
    ],
)
def test_each_audit_event_is_the_kinds_a_rule_names(
    action: str, outcome: str, details: dict[str, Any], kinds: set[K]
) -> None:
    assert kinds_of(event(action, outcome, details=details)) == kinds


def test_a_hold_recorded_before_causes_were_stored_is_read_from_its_reason() -> None:
    approvals = event("hold", "Held", reason="held by policy: approvals: 1 of 2 approvals (ada)")
    target = event("hold", "Held", reason="target ionq.qpu is Unavailable; rollout on hold")
    assert kinds_of(approvals) == {K.HOLD, K.APPROVAL_NEEDED}
    assert kinds_of(target) == {K.HOLD, K.TARGET_UNAVAILABLE}


def test_rules_pick_channels_by_kind_environment_and_app_and_name_each_once() -> None:
    rules = [
        RuleConfig(on=(K.DEPLOY_FAILED, K.GATE_FAILED), to=("ops", "hook")),
        RuleConfig(on=(K.DEPLOY_FAILED,), to=("ops",), envs=("prod",)),
        RuleConfig(on=(K.DEPLOY_SUCCEEDED,), to=("chat",), apps=("qrng",)),
        RuleConfig(on=(K.HOLD,), to=("pager",), envs=("staging",)),
    ]
    assert channels_for(event("deploy", "Failed"), rules) == {"ops", "hook"}
    assert channels_for(event("deploy", "Healthy"), rules) == set()
    assert channels_for(event("deploy", "Healthy", app="qrng"), rules) == {"chat"}
    assert channels_for(event("hold", "Held", details={"cause": "soak"}), rules) == set()
    assert channels_for(event("hold", "Held", env="staging"), rules) == {"pager"}
    assert channels_for(event("install", "Succeeded"), rules) == set()


def test_a_message_says_what_happened_where_and_why_and_links_the_app_page() -> None:
    failed = event(
        "deploy",
        "Failed",
        reason="health check failed: exit 3",
        details={"step": "health", "message": "exit 3"},
    )
    message = render(failed, link="https://qrelease.example/")
    assert message is not None
    assert message.title == "qrelease: deploy failed: bell-service in prod 1.1.0"
    assert message.text.splitlines() == [
        "✗ prod/bell-service 1.1.0 did not go live (failed at health)",
        "Reason: health check failed: exit 3",
        "Revision: cccccccccccc",
        "By qrelease-controller at 2026-05-04T09:00:00+00:00 (event 7)",
        "https://qrelease.example/apps/bell-service",
    ]
    assert message.severity == "failure" and message.kind == K.DEPLOY_FAILED
    assert message.delivery_id == f"7-{'ab' * 8}"
    assert message.payload()["event"]["details"] == {"step": "health", "message": "exit 3"}
    approval = render(event("hold", "Held", details={"cause": "approvals"}))
    assert approval is not None and approval.kinds == (K.APPROVAL_NEEDED, K.HOLD)
    assert render(event("install", "Succeeded")) is None


def test_a_message_masks_credentials_tokens_and_known_secrets_everywhere() -> None:
    leaky = event(
        "deploy",
        "Failed",
        reason="cannot fetch https://bot:hunter22@git.example/r.git with Bearer abc.def",
        details={"message": "token xoxb-1234-SECRET in output", "nested": ["ApiKey=k3y9"]},
    )
    message = render(leaky, secrets=["xoxb-1234-SECRET"])
    assert message is not None
    flat = message.title + message.text + repr(message.payload())
    for secret in ("hunter22", "abc.def", "xoxb-1234-SECRET", "k3y9"):
        assert secret not in flat
    assert "https://***@git.example/r.git" in message.text
