"""When an environment accepts changes: freezes, deny and allow windows, decided at an instant.

Pure: the clock's reading is an argument. The controller holds a change while the
environment is closed and looks again at `WindowState.until`, so a change pushed during a
freeze goes live by itself when the freeze ends; `qrelease windows` prints the same state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qrelease.model.environment import DenyWindow, Policy, RecurringWindow

HORIZON = timedelta(days=400)
"""How far ahead the next opening or closing is looked for."""


@dataclass(frozen=True)
class WindowState:
    """Whether changes may go live now, why not, and when that may change (None: not soon)."""

    open: bool
    reason: str
    until: datetime | None


def window_state(policy: Policy, now: datetime) -> WindowState:
    """The environment's state at `now` and the next instant it flips.

    >>> from qrelease.model.environment import Freeze
    >>> freeze = Freeze(start="2026-12-20T00:00:00Z", end="2026-12-27T00:00:00Z", reason="holidays")
    >>> state = window_state(Policy(freezes=(freeze,)), datetime(2026, 12, 21, tzinfo=UTC))
    >>> state.open, state.reason, state.until.isoformat()
    (False, 'frozen until 2026-12-27T00:00:00+00:00: holidays', '2026-12-27T00:00:00+00:00')
    """
    closed = _closed_by(policy, now)
    flips = (
        t for t in _boundaries(policy, now) if (_closed_by(policy, t) is None) != (closed is None)
    )
    return WindowState(
        closed is None, closed or "outside every deny window and freeze", next(flips, None)
    )


def next_change(policy: Policy, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(the next time changes stop being allowed, the next time they are allowed again)."""
    closes = opens = None
    was_open = _closed_by(policy, now) is None
    for moment in _boundaries(policy, now):
        is_open = _closed_by(policy, moment) is None
        if is_open != was_open:
            opens = opens or (moment if is_open else None)
            closes = closes or (None if is_open else moment)
            was_open = is_open
        if opens is not None and closes is not None:
            break
    return closes, opens


def _closed_by(policy: Policy, moment: datetime) -> str | None:
    """Why changes are not allowed at `moment`, or None when they are."""
    for freeze in policy.freezes:
        if freeze.start <= moment < freeze.end:
            return f"frozen until {freeze.end.isoformat()}" + _because(freeze.reason)
    allows = [w for w in policy.windows if isinstance(w, RecurringWindow) and w.kind == "allow"]
    for window in policy.windows:
        if isinstance(window, DenyWindow) and window.covers(moment):
            days = ",".join(window.days)
            return f"deny window {days} {window.start}-{window.end} UTC" + _because(window.reason)
        if isinstance(window, RecurringWindow) and window.kind == "deny":
            occurrence = window.occurrence(moment)
            if occurrence is not None:
                end = occurrence[1].astimezone(UTC).isoformat()
                return f"deny window {window.rrule} until {end}" + _because(window.reason)
    if allows and not any(window.covers(moment) for window in allows):
        return "outside every allow window"
    return None


def _boundaries(policy: Policy, now: datetime) -> Iterator[datetime]:
    """Every instant after `now` (within HORIZON) where a window or freeze starts or ends.

    Walks forward one edge at a time, so the edges of a weekly window are found after a
    long freeze too.
    """
    moment, horizon = now, now + HORIZON
    while True:
        edges = [t for freeze in policy.freezes for t in (freeze.start, freeze.end) if t > moment]
        edges += [edge for w in policy.windows if (edge := min(_edges(w, moment), default=None))]
        if not edges or min(edges) > horizon:
            return
        moment = min(edges)
        yield moment


def _edges(window: DenyWindow | RecurringWindow, now: datetime) -> Iterator[datetime]:
    if isinstance(window, RecurringWindow):
        current = window.occurrence(now)
        if current is not None:
            yield current[1]
        start = window.next_start(now)
        for _ in range(2):  # the next two occurrences are enough to find both edges
            if start is None:
                return
            yield start
            yield window.end_from(start)
            start = window.next_start(start)
        return
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in range(-1, 9):
        day = midnight + timedelta(days=offset)
        for clock in (window.start, window.end):
            edge = day.replace(hour=clock.hour, minute=clock.minute, second=clock.second)
            if edge > now:
                yield edge


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""
