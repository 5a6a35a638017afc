"""What the web pages show, as plain values: the matrix, an app's environments, history filters.

Pure functions of the controller's status rows, the environments of the last pass and the
events the data layer read, so the templates only lay values out and tests check the
decisions without a browser. The rows are the same `StatusRow`s that `/status`, the CLI
and the TUI render: nothing here re-derives sync or health.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from difflib import get_close_matches
from typing import Any

from qrelease.history import Entry
from qrelease.model.environment import Environment, promotion_order
from qrelease.model.events import Event
from qrelease.model.types import format_duration, parse_duration
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow
from qrelease.planning.upstream import GateLine

MAX_FILTER_LENGTH = 100


@dataclass(frozen=True)
class Live:
    """The controller's picture when a page is asked for (from its shared view)."""

    rows: Mapping[tuple[str, str], StatusRow]
    environments: Mapping[str, Environment] = field(default_factory=dict)
    revision: str | None = None
    fetched_revision: str | None = None
    source: str = ""
    branch: str = "main"
    last_pass: Mapping[str, Any] | None = None
    ready: bool = False
    reasons: tuple[str, ...] = ()
    source_error: str | None = None


# -- the matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One (environment, app) as the matrix shows it: words first, colour only as a hint."""

    env: str
    app: str
    row: StatusRow | None
    versions: str
    badges: tuple[tuple[str, str], ...]
    """(text, css class) pairs: sync, health, rollout, target, approvals."""
    note: str = ""

    @property
    def tone(self) -> str:
        """The cell's colour class: the worst thing it shows."""
        classes = [css for _, css in self.badges]
        for tone in ("bad", "warn", "busy", "muted"):
            if tone in classes:
                return tone
        return "good" if self.row is not None else "empty"


_SYNC_CSS = {Sync.SYNCED: "good", Sync.OUT_OF_SYNC: "warn", Sync.UNKNOWN: "muted"}
_HEALTH_CSS = {
    Health.HEALTHY: "good",
    Health.SUSPENDED: "muted",
    Health.PROGRESSING: "busy",
    Health.MISSING: "bad",
    Health.DEGRADED: "bad",
    Health.UNKNOWN: "muted",
}
_ROLLOUT_CSS = {Rollout.FAILED: "bad", Rollout.HELD: "warn", Rollout.RUNNING: "busy"}


def cell(env: str, app: str, row: StatusRow | None) -> Cell:
    """The matrix cell of one row (an empty cell when the app is not in the environment).

    >>> row = StatusRow("prod", "a", "1.1.0", "1.0.0", Sync.OUT_OF_SYNC, Health.HEALTHY,
    ...                 Rollout.HELD, "soak,approvals", "t", Availability.AVAILABLE,
    ...                 "held by policy: soak: 4s (soak 1h); approvals: 1 of 2 approvals (ada)",
    ...                 None)
    >>> c = cell("prod", "a", row)
    >>> c.versions, c.tone
    ('1.0.0 → 1.1.0', 'warn')
    >>> [text for text, _ in c.badges]
    ['OutOfSync', 'Healthy', 'Held (soak, approvals)', 'approvals: 1 of 2']
    """
    if row is None:
        return Cell(env, app, None, "not deployed here", ())
    versions = row.deployed or "nothing"
    if row.desired != row.deployed:
        versions += f" → {row.desired or 'removed'}"
    badges = [(str(row.sync), _SYNC_CSS[row.sync]), (str(row.health), _HEALTH_CSS[row.health])]
    if row.rollout is not None and row.rollout != Rollout.SUCCEEDED:
        label = str(row.rollout) + (f" ({row.step.replace(',', ', ')})" if row.step else "")
        badges.append((label, _ROLLOUT_CSS.get(row.rollout, "muted")))
    if row.deployed and row.availability != Availability.AVAILABLE:
        css = "bad" if row.availability == Availability.UNAVAILABLE else "warn"
        badges.append((f"target {row.availability}", css))
    approvals = approval_detail(row)
    if approvals:
        badges.append((f"approvals: {approvals}", "warn"))
    return Cell(env, app, row, versions, tuple(badges), row.message)


def approval_detail(row: StatusRow) -> str:
    """How far a release waiting for approvals is (`1 of 2`), from its hold's message."""
    if row.rollout != Rollout.HELD or "approvals" not in row.step.split(","):
        return ""
    _, found, rest = row.message.partition("approvals: ")
    if not found:
        return "waiting"
    detail = rest.split(";", 1)[0].strip()
    return detail.split(" approvals", 1)[0] if " approvals" in detail else detail


@dataclass(frozen=True)
class EnvHeader:
    """An environment's column head: its name and the policy a manager should know about."""

    name: str
    notes: tuple[str, ...]


def env_header(name: str, environment: Environment | None) -> EnvHeader:
    """Promotion source, soak, approvals, auto-promotion and suspended apps, in a few words."""
    if environment is None:
        return EnvHeader(name, ())
    policy = environment.policy
    notes = []
    if environment.promote_from:
        notes.append(f"from {environment.promote_from}")
    if policy.soak:
        notes.append(f"soak {format_duration(policy.soak)}")
    if policy.approvals is not None:
        rule = policy.approvals
        notes.append(f"{rule.required} of {len(rule.approvers)} approvals")
    if policy.auto_promote:
        notes.append("auto-promote")
    if policy.suspended:
        notes.append(f"{len(policy.suspended)} suspended")
    return EnvHeader(name, tuple(notes))


@dataclass(frozen=True)
class Matrix:
    """Apps × environments."""

    envs: tuple[EnvHeader, ...]
    apps: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]

    def at(self, app: str, env: str) -> Cell:
        """The cell of one app in one environment."""
        return self.cells[(app, env)]


def matrix(live: Live) -> Matrix:
    """The matrix of every row the controller holds, environments in promotion order."""
    names = promotion_order(live.environments, sorted({env for env, _ in live.rows}))
    apps = sorted({app for _, app in live.rows} | _pinned_apps(live.environments))
    cells = {(app, env): cell(env, app, live.rows.get((env, app))) for app in apps for env in names}
    headers = tuple(env_header(name, live.environments.get(name)) for name in names)
    return Matrix(headers, tuple(apps), cells)


def _pinned_apps(environments: Mapping[str, Environment]) -> set[str]:
    return {app for environment in environments.values() for app in environment.apps}


# -- the app page -------------------------------------------------------------------------


@dataclass(frozen=True)
class AppEnv:
    """One environment of the app page: the row, the release's gates, the newest events."""

    cell: Cell
    gates: tuple[GateLine, ...]
    events: tuple[Event, ...]
    suspended: str | None = None
    """Why the app is suspended here, if it is."""


def suggestions(name: str, known: Sequence[str]) -> list[str]:
    """Known names close to a misspelt one.

    >>> suggestions("bel-service", ["bell-service", "qrng"])
    ['bell-service']
    """
    return get_close_matches(name, list(known), n=3, cutoff=0.6)


# -- history ------------------------------------------------------------------------------


class FilterError(ValueError):
    """A history filter that cannot be used; the message names the field."""


@dataclass(frozen=True)
class HistoryQuery:
    """The history page's filters, as the query string gives them."""

    env: str | None = None
    app: str | None = None
    action: str | None = None
    outcome: str | None = None
    actor: str | None = None
    since: datetime | None = None
    page: int = 1

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this filter (with changes), for links and export URLs."""
        values = {
            "env": self.env,
            "app": self.app,
            "action": self.action,
            "outcome": self.outcome,
            "actor": self.actor,
            "since": self.since.isoformat() if self.since else None,
            "page": str(self.page) if self.page > 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}

    def keeps(self, entry: Entry) -> bool:
        """True when `entry` passes the filters the store leaves: action, outcome, actor."""
        return (
            self.action in (None, entry.action)
            and self.outcome in (None, entry.outcome)
            and (self.actor is None or self.actor.lower() in entry.actor.lower())
        )


def parse_query(params: Mapping[str, str], now: datetime) -> HistoryQuery:
    """Filters from a query string; `since` takes ISO 8601 or a duration back from now (`2h`).

    >>> now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    >>> parse_query({"env": "prod", "since": "2h", "page": "2"}, now).since.isoformat()
    '2026-05-04T10:00:00+00:00'
    >>> parse_query({"page": "x"}, now)
    Traceback (most recent call last):
    ...
    qrelease.web.pages.FilterError: page: 'x' is not a page number
    """
    text = {key: value.strip() for key, value in params.items() if value and value.strip()}
    for key, value in text.items():
        if len(value) > MAX_FILTER_LENGTH:
            raise FilterError(f"{key}: longer than {MAX_FILTER_LENGTH} characters")
    page = text.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        raise FilterError(f"page: {page!r} is not a page number")
    return HistoryQuery(
        env=text.get("env"),
        app=text.get("app"),
        action=text.get("action"),
        outcome=text.get("outcome"),
        actor=text.get("actor"),
        since=_since(text.get("since"), now),
        page=int(page),
    )


def _since(value: str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            back = parse_duration(value)
        except ValueError:
            raise FilterError(
                f"since: {value!r} is neither a time (2026-05-01T12:00:00Z) nor a duration (2h)"
            ) from None
        return now - back
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class HistoryPage:
    """One page of the timeline, newest first, and whether there are more."""

    entries: tuple[Entry, ...]
    total: int
    page: int
    pages: int
    actions: tuple[str, ...]
    outcomes: tuple[str, ...]


def history_page(entries: Sequence[Entry], query: HistoryQuery, size: int) -> HistoryPage:
    """Filter the timeline (oldest first, as `timeline` gives it); one page, newest first."""
    kept = [entry for entry in reversed(entries) if query.keeps(entry)]
    pages = max(1, -(-len(kept) // size))
    page = min(query.page, pages)
    shown = kept[(page - 1) * size : page * size]
    return HistoryPage(
        tuple(shown),
        len(kept),
        page,
        pages,
        tuple(sorted({entry.action for entry in entries})),
        tuple(sorted({entry.outcome for entry in entries if entry.outcome})),
    )


def since_text(moment: datetime | None, now: datetime) -> str:
    """How long ago, in words (`3m ago`).

    >>> now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    >>> since_text(now - timedelta(minutes=3, seconds=5), now)
    '3m5s ago'
    """
    if moment is None:
        return "never"
    whole = timedelta(seconds=int(max(timedelta(0), now - moment).total_seconds()))
    return f"{format_duration(whole)} ago"
