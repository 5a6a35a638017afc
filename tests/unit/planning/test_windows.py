"""When an environment accepts changes: freezes, weekly and RRULE windows, allow windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from qrelease.model.environment import DenyWindow, Freeze, Policy, RecurringWindow
from qrelease.planning.windows import next_change, window_state

FRIDAY_EVENING = DenyWindow.model_validate(
    {"days": ["fri"], "start": "16:00", "end": "23:59", "reason": "no Friday-evening releases"}
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def recurring(**fields: Any) -> RecurringWindow:
    return RecurringWindow.model_validate(fields)


def test_a_weekly_window_is_found_after_a_freeze_longer_than_a_week() -> None:
    freeze = Freeze.model_validate(
        {"start": "2026-12-01T00:00:00Z", "end": "2027-01-04T00:00:00Z", "reason": "year-end"}
    )
    policy = Policy(windows=(FRIDAY_EVENING,), freezes=(freeze,))
    now = at("2026-12-03T09:00:00+00:00")
    state = window_state(policy, now)
    assert (state.open, state.until) == (False, at("2027-01-04T00:00:00+00:00"))
    assert state.reason == "frozen until 2027-01-04T00:00:00+00:00: year-end"
    assert next_change(policy, now) == (
        at("2027-01-08T16:00:00+00:00"),  # the first Friday evening after the freeze
        at("2027-01-04T00:00:00+00:00"),
    )


def test_a_rrule_window_keeps_its_local_time_across_daylight_saving() -> None:
    window = recurring(
        rrule="FREQ=MONTHLY;BYDAY=1TU;BYHOUR=2",
        duration="4h",
        timezone="Europe/Berlin",
        reason="cryostat maintenance",
    )
    policy = Policy(windows=(window,))
    winter, summer = at("2027-01-05T01:30:00+00:00"), at("2027-07-06T00:30:00+00:00")
    assert not window_state(policy, winter).open  # 02:30 CET is 01:30 UTC
    assert not window_state(policy, summer).open  # 02:30 CEST is 00:30 UTC
    assert window_state(policy, at("2027-07-06T04:30:00+00:00")).open  # 06:30 CEST: over
    state = window_state(policy, summer)
    assert state.until == at("2027-07-06T04:00:00+00:00")
    assert "cryostat maintenance" in state.reason


def test_allow_windows_open_the_environment_only_while_one_lasts() -> None:
    weekdays = recurring(
        kind="allow", rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH;BYHOUR=9", duration="8h"
    )
    policy = Policy(windows=(weekdays,))
    monday_morning, monday_night = at("2026-12-07T10:00:00+00:00"), at("2026-12-07T20:00:00+00:00")
    assert window_state(policy, monday_morning).open
    closed = window_state(policy, monday_night)
    assert (closed.open, closed.reason) == (False, "outside every allow window")
    assert closed.until == at("2026-12-08T09:00:00+00:00")
    thursday_evening = at("2026-12-10T18:00:00+00:00")
    assert next_change(policy, thursday_evening) == (
        at("2026-12-14T17:00:00+00:00"),
        at("2026-12-14T09:00:00+00:00"),  # after the weekend
    )


def test_overlapping_occurrences_merge_into_one_closure() -> None:
    hourly = recurring(rrule="FREQ=HOURLY;BYHOUR=1,2", duration="90m")
    state = window_state(Policy(windows=(hourly,)), at("2026-12-07T01:10:00+00:00"))
    assert (state.open, state.until) == (False, at("2026-12-07T03:30:00+00:00"))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"rrule": "FREQ=MINUTELY", "duration": "1m"}, "hourly at the finest"),
        ({"rrule": "FREQ=DAILY;BYHOUR=2", "duration": "0s"}, "duration must be positive"),
        ({"rrule": "FREQ=DAILY", "duration": "1h", "timezone": "Mars/Olympus"}, "IANA time zone"),
        ({"rrule": "NOT A RULE", "duration": "1h"}, "rrule:"),
    ],
)
def test_a_window_that_cannot_be_honoured_is_refused(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        recurring(**fields)


def test_no_window_means_open_with_nothing_ahead() -> None:
    now = at("2026-12-07T10:00:00+00:00")
    assert window_state(Policy(), now).open
    assert next_change(Policy(), now) == (None, None)
    friday = next_change(Policy(windows=(FRIDAY_EVENING,)), now)
    assert friday == (at("2026-12-11T16:00:00+00:00"), at("2026-12-11T23:59:00+00:00"))
