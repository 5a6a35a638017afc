"""Each domain rule is written once and every caller uses that one."""

from __future__ import annotations

from qrelease.planning import policy, upstream


def test_healthy_upstream_is_decided_in_one_place() -> None:
    from qrelease.promotion import auto, promote
    from qrelease.tui import board

    for module in (auto, promote, board, policy):
        assert module.healthy_release is upstream.healthy_release, module.__name__


def test_the_newest_result_of_each_gate_is_found_in_one_place() -> None:
    from qrelease import evidence
    from qrelease.engine import gates
    from qrelease.tui import data

    for module in (gates, evidence, data):
        assert module.newest_gates is upstream.newest_gates, module.__name__


def test_the_status_of_a_row_is_decided_in_one_place() -> None:
    from qrelease.cli.render import print_status  # noqa: F401 the CLI renders rows, never decides them
    from qrelease.daemon import reconciler
    from qrelease.engine import record
    from qrelease.planning import status
    from qrelease.tui import board, data

    assert record.row_of is status.row_of and reconciler.row_of is status.row_of
    assert board.pinned_rows is status.pinned_rows  # what status_rows does, rows made once
    assert data.recorded_rows is status.recorded_rows
