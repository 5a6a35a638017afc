"""What the web pages decide from status rows, environments and the timeline (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qrelease.history import Entry
from qrelease.model.environment import Environment
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.planning.status import StatusRow
from qrelease.web.pages import (
    FilterError,
    Live,
    approval_detail,
    cell,
    history_page,
    matrix,
    parse_query,
)

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def row(env: str, app: str, **fields: object) -> StatusRow:
    values: dict[str, object] = {
        "desired": "1.0.0",
        "deployed": "1.0.0",
        "sync": Sync.SYNCED,
        "health": Health.HEALTHY,
        "rollout": Rollout.SUCCEEDED,
        "step": "",
        "target": "ionq.simulator",
        "availability": Availability.AVAILABLE,
        "message": "",
        "revision": "r" * 40,
    }
    values.update(fields)
    return StatusRow(env, app, **values)  # type: ignore[arg-type]


def entry(seq: int, action: str, outcome: str, actor: str = "qrelease-controller") -> Entry:
    return Entry(
        seq,
        NOW + timedelta(seconds=seq),
        "prod",
        "a",
        action,
        None,
        "1.0.0",
        None,
        actor,
        "",
        outcome,
        None,
        "controller",
    )


def test_a_healthy_cell_says_so_in_words_and_a_failed_one_names_its_step() -> None:
    healthy = cell("dev", "a", row("dev", "a"))
    assert healthy.versions == "1.0.0" and healthy.tone == "good"
    assert [text for text, _ in healthy.badges] == ["Synced", "Healthy"]
    failed = cell(
        "dev",
        "a",
        row(
            "dev",
            "a",
            desired="1.1.0",
            sync=Sync.OUT_OF_SYNC,
            rollout=Rollout.FAILED,
            step="health",
            message="health check failed",
        ),
    )
    assert failed.versions == "1.0.0 → 1.1.0" and failed.tone == "bad"
    assert ("Failed (health)", "bad") in failed.badges
    assert failed.note == "health check failed"


def test_suspended_held_and_unavailable_cells() -> None:
    suspended = cell(
        "prod",
        "a",
        row("prod", "a", health=Health.SUSPENDED, rollout=Rollout.HELD, step="suspended"),
    )
    assert [text for text, _ in suspended.badges] == ["Synced", "Suspended", "Held (suspended)"]
    down = cell("prod", "a", row("prod", "a", availability=Availability.UNAVAILABLE))
    assert ("target Unavailable", "bad") in down.badges and down.tone == "bad"
    nothing = cell(
        "prod",
        "a",
        row("prod", "a", deployed=None, health=Health.MISSING, availability=Availability.UNKNOWN),
    )
    assert nothing.versions == "nothing → 1.0.0"
    assert not any(text.startswith("target") for text, _ in nothing.badges)
    absent = cell("prod", "b", None)
    assert absent.versions == "not deployed here" and absent.tone == "empty"


@pytest.mark.parametrize(
    ("step", "message", "detail"),
    [
        (
            "approvals",
            "held by policy (judged again at x): approvals: 1 of 2 approvals (ada)",
            "1 of 2",
        ),
        (
            "soak,approvals",
            "held: soak: 4s (soak 1h); approvals: rejected by grace (no)",
            "rejected by grace (no)",
        ),
        ("soak", "held: soak: 4s (soak 1h)", ""),
    ],
)
def test_how_far_a_release_waiting_for_approvals_is(step: str, message: str, detail: str) -> None:
    held = row("prod", "a", rollout=Rollout.HELD, step=step, message=message)
    assert approval_detail(held) == detail


def test_the_matrix_orders_environments_by_promotion_and_lists_pinned_apps() -> None:
    environments = {
        "prod": Environment(environment="prod", promote_from="staging", apps={"a": "1.0.0"}),
        "dev": Environment(environment="dev", apps={"a": "1.0.0", "new": "0.1.0"}),
        "staging": Environment(environment="staging", promote_from="dev"),
    }
    rows = {("dev", "a"): row("dev", "a"), ("prod", "a"): row("prod", "a")}
    grid = matrix(Live(rows=rows, environments=environments))
    assert [env.name for env in grid.envs] == ["dev", "staging", "prod"]
    assert grid.apps == ("a", "new")
    assert grid.at("new", "dev").row is None
    assert grid.envs[2].notes == ("from staging",)


def test_history_filters_parse_with_errors_that_name_the_field() -> None:
    query = parse_query({"env": " prod ", "since": "2026-05-01", "action": "", "page": "3"}, NOW)
    assert query.env == "prod" and query.action is None and query.page == 3
    assert query.since == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_query({"since": "90m"}, NOW).since == NOW - timedelta(minutes=90)
    with pytest.raises(FilterError, match=r"^since: 'yesterday' is neither a time"):
        parse_query({"since": "yesterday"}, NOW)
    with pytest.raises(FilterError, match=r"^app: longer than 100 characters"):
        parse_query({"app": "x" * 101}, NOW)


def test_a_history_page_is_newest_first_filtered_and_cut() -> None:
    entries = [entry(seq, ("gate", "deploy")[seq % 2], "Passed") for seq in range(1, 26)]
    entries.append(entry(26, "promote", "Committed", actor="Ada <ada@example.com>"))
    first = history_page(entries, parse_query({}, NOW), size=10)
    assert [e.seq for e in first.entries][:3] == [26, 25, 24] and first.pages == 3
    last = history_page(entries, parse_query({"page": "9"}, NOW), size=10)
    assert last.page == 3 and [e.seq for e in last.entries] == [6, 5, 4, 3, 2, 1]
    deploys = history_page(entries, parse_query({"action": "deploy"}, NOW), size=10)
    assert deploys.total == 13 and all(e.action == "deploy" for e in deploys.entries)
    by_ada = history_page(entries, parse_query({"actor": "ADA"}, NOW), size=10)
    assert [e.seq for e in by_ada.entries] == [26]
    assert first.actions == ("deploy", "gate", "promote")
