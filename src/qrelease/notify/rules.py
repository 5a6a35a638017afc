"""What a notification is: the kinds of an audit event, the channels its rules name, its text.

Pure functions of an event and the configuration, so what a user is told is decided in one
place and tested without a network. Every string that leaves here went through `redact`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from qrelease.config import RuleConfig
from qrelease.model.events import Event
from qrelease.model.vocabulary import EventKind, EventOutcome, NotificationKind
from qrelease.redaction import redact

Severity = Literal["success", "failure", "warning", "info"]
K = NotificationKind

_FAILED_GATE = frozenset({EventOutcome.FAILED, EventOutcome.INCONCLUSIVE})
_SEVERITY: Mapping[NotificationKind, Severity] = {
    K.DEPLOY_SUCCEEDED: "success",
    K.DEPLOY_FAILED: "failure",
    K.AUTO_ROLLBACK: "failure",
    K.GATE_FAILED: "failure",
    K.HOLD: "warning",
    K.APPROVAL_NEEDED: "warning",
    K.TARGET_UNAVAILABLE: "warning",
    K.PROMOTION: "info",
    K.ROLLBACK: "info",
}
_TITLES: Mapping[NotificationKind, str] = {
    K.DEPLOY_SUCCEEDED: "deployed",
    K.DEPLOY_FAILED: "deploy failed",
    K.AUTO_ROLLBACK: "rolled back automatically",
    K.GATE_FAILED: "quantum gate failed",
    K.HOLD: "held",
    K.APPROVAL_NEEDED: "approval needed",
    K.TARGET_UNAVAILABLE: "target unavailable",
    K.PROMOTION: "promoted",
    K.ROLLBACK: "rolled back",
}
_REASON_LIMIT = 600
"""A message quotes at most this many characters of an event's reason."""


def kinds_of(event: Event) -> frozenset[NotificationKind]:
    """The notification kinds an audit event is (none for steps nobody is told about).

    >>> from datetime import UTC, datetime
    >>> def event(**fields):
    ...     base = dict(seq=1, time=datetime(2026, 5, 1, tzinfo=UTC), prev_hash="0", hash="1")
    ...     return Event.model_validate({**base, **fields})
    >>> sorted(kinds_of(event(action="deploy", outcome="Healthy")))
    [<NotificationKind.DEPLOY_SUCCEEDED: 'deploy-succeeded'>]
    >>> sorted(kinds_of(event(action="hold", details={"cause": "soak,approvals"})))
    [<NotificationKind.APPROVAL_NEEDED: 'approval-needed'>, <NotificationKind.HOLD: 'hold'>]
    >>> kinds_of(event(action="install", outcome="Succeeded"))
    frozenset()
    """
    action, outcome = event.action, event.outcome
    if action == EventKind.DEPLOY:
        if outcome == EventOutcome.HEALTHY:
            return frozenset({K.DEPLOY_SUCCEEDED})
        return frozenset({K.DEPLOY_FAILED}) if outcome == EventOutcome.FAILED else frozenset()
    if action == EventKind.GATE:
        return frozenset({K.GATE_FAILED}) if outcome in _FAILED_GATE else frozenset()
    if action == EventKind.HOLD:
        return frozenset({K.HOLD, *_hold_causes(event)})
    simple: Mapping[str, NotificationKind] = {
        EventKind.AUTO_ROLLBACK: K.AUTO_ROLLBACK,
        EventKind.PROMOTE: K.PROMOTION,
        EventKind.ROLLBACK: K.ROLLBACK,
    }
    kind = simple.get(action)
    return frozenset({kind}) if kind is not None else frozenset()


def _hold_causes(event: Event) -> set[NotificationKind]:
    """approval-needed and target-unavailable, from the hold's cause (or, older, its reason)."""
    cause = str(event.details.get("cause", ""))
    causes = set(cause.split(",")) if cause else set()
    reason = event.reason
    found = set()
    if "approvals" in causes or (not cause and "approvals:" in reason):
        found.add(K.APPROVAL_NEEDED)
    if "target" in causes or (not cause and reason.endswith("; rollout on hold")):
        found.add(K.TARGET_UNAVAILABLE)
    return found


def ordered(kinds: Iterable[NotificationKind]) -> tuple[NotificationKind, ...]:
    """Kinds in the vocabulary's order, the most specific first (a hold's cause before `hold`).

    >>> ordered([K.HOLD, K.APPROVAL_NEEDED])
    (<NotificationKind.APPROVAL_NEEDED: 'approval-needed'>, <NotificationKind.HOLD: 'hold'>)
    """
    rank = {kind: index for index, kind in enumerate(NotificationKind)}
    chosen = set(kinds)
    specific = sorted(chosen - {K.HOLD}, key=rank.__getitem__)
    return (*specific, K.HOLD) if K.HOLD in chosen else tuple(specific)


def channels_for(event: Event, rules: Sequence[RuleConfig]) -> frozenset[str]:
    """Every channel a rule sends this event to (each at most once, however many rules match)."""
    kinds = kinds_of(event)
    if not kinds:
        return frozenset()
    return frozenset(
        name
        for rule in rules
        if kinds.intersection(rule.on)
        and (not rule.envs or event.env in rule.envs)
        and (not rule.apps or event.app in rule.apps)
        for name in rule.to
    )


@dataclass(frozen=True)
class Message:
    """One event as every channel tells it: a title, a few lines, and the event's fields."""

    kinds: tuple[NotificationKind, ...]
    title: str
    text: str
    severity: Severity
    event: dict[str, Any]
    link: str | None
    delivery_id: str
    """Stable for the event: a receiver that saw it already can drop a repeat."""

    @property
    def kind(self) -> NotificationKind:
        """The most specific kind."""
        return self.kinds[0]

    def payload(self) -> dict[str, Any]:
        """The JSON body of a generic webhook."""
        return {
            "id": self.delivery_id,
            "kind": str(self.kind),
            "kinds": [str(kind) for kind in self.kinds],
            "title": self.title,
            "text": self.text,
            "severity": self.severity,
            "link": self.link,
            "event": self.event,
        }


def render(
    event: Event, link: str | None = None, secrets: Iterable[str | None] = ()
) -> Message | None:
    """The message for `event` (None when it is of no notification kind), redacted."""
    kinds = ordered(kinds_of(event))
    if not kinds:
        return None
    secrets = list(secrets)
    where = f"{event.app} in {event.env}" if event.env else event.app
    version = event.to_version or event.from_version or ""
    title = f"qrelease: {_TITLES[kinds[0]]}: {where}" + (f" {version}" if version else "")
    lines = [_headline(event, kinds[0])]
    reason = _clip(event.reason or str(event.details.get("message", "")))
    if reason:
        lines.append(f"Reason: {reason}")
    if event.revision:
        lines.append(f"Revision: {event.revision[:12]}")
    lines.append(f"By {event.actor} at {event.time.isoformat()} (event {event.seq})")
    page = f"{link.rstrip('/')}/apps/{quote(event.app)}" if link and event.app else link
    if page:
        lines.append(page)
    body = event.model_dump(mode="json")
    return Message(
        kinds=kinds,
        title=redact(title, secrets),
        text=redact("\n".join(lines), secrets),
        severity=_SEVERITY[kinds[0]],
        event=_redacted(body, secrets),
        link=page,
        delivery_id=f"{event.seq}-{event.hash[:16]}",
    )


def _headline(event: Event, kind: NotificationKind) -> str:
    """One sentence saying what happened."""
    where = f"{event.env}/{event.app}"
    old, new = event.from_version or "nothing", event.to_version or "nothing"
    gate = str(event.details.get("gate", "a"))
    cause = str(event.details.get("cause", ""))
    restored = str(event.details.get("restored", old))
    headlines = {
        K.DEPLOY_SUCCEEDED: f"✓ {where} {new} is live (was {old})",
        K.DEPLOY_FAILED: f"✗ {where} {new} did not go live"
        + (f" (failed at {event.details['step']})" if event.details.get("step") else ""),
        K.AUTO_ROLLBACK: f"↩ {where} switched back to {restored} after {new} failed",
        K.GATE_FAILED: f"✗ {where} {new}: {gate} gate {event.outcome}",
        K.HOLD: f"… {where} {new} is held" + (f" ({cause})" if cause else ""),
        K.APPROVAL_NEEDED: f"… {where} {new} waits for approvals",
        K.TARGET_UNAVAILABLE: f"⊘ {where} {new} is held: its quantum target is not available",
        K.PROMOTION: f"→ {event.actor} promoted {event.app} {old} -> {new} in {event.env}",
        K.ROLLBACK: f"← {event.actor} rolled {event.app} back {old} -> {new} in {event.env}",
    }
    return headlines[kind]


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _redacted(value: Any, secrets: list[str | None]) -> Any:
    """Every string in a JSON value, redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in value]
    return value
