"""Status rows as the CLI prints them: the table, the wide table, JSON and YAML.

The rows are the engine's `StatusRow`s, decided once in `planning.status`; this module
only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from qrelease.cli.output import Output, print_table

if TYPE_CHECKING:
    from qrelease.planning.status import StatusRow

STATUS_COLUMNS = (
    "ENV",
    "APP",
    "DESIRED",
    "DEPLOYED",
    "SYNC",
    "HEALTH",
    "ROLLOUT",
    "TARGET",
    "AVAILABILITY",
    "MESSAGE",
)
WIDE_COLUMNS = ("REVISION", "RETRY AT")
"""What `-o wide` adds before MESSAGE."""


def rollout_cell(row: StatusRow) -> str:
    """`Succeeded`, `Held (soak)` or `-`."""
    if row.rollout is None:
        return "-"
    return f"{row.rollout}" + (f" ({row.step})" if row.step else "")


def short_time(moment: datetime | None) -> str:
    """A time as the tables show it, in UTC to the second."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def status_cells(row: StatusRow, *, wide: bool = False) -> list[str]:
    """One row's cells in STATUS_COLUMNS order (with WIDE_COLUMNS before MESSAGE when wide)."""
    cells = [
        row.env,
        row.app,
        row.desired or "-",
        row.deployed or "-",
        str(row.sync),
        str(row.health),
        rollout_cell(row),
        row.target or "-",
        str(row.availability),
    ]
    if wide:
        cells += [(row.revision or "-")[:12], short_time(row.retry_at)]
    return [*cells, row.message]


def print_status(
    rows: Sequence[StatusRow],
    output: Output,
    jobs: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> None:
    """Print status rows in the chosen format (structured rows carry `quantum_jobs`: the live
    release's job statistics, where `jobs` has them for the release deployed)."""
    if output.structured:
        output.emit([row.as_json() | _jobs_field(live_jobs_of(jobs or {}, row)) for row in rows])
        return
    headers = list(STATUS_COLUMNS)
    if output.wide:
        headers[-1:-1] = WIDE_COLUMNS
    print_table(headers, [status_cells(row, wide=output.wide) for row in rows])


def live_jobs_of(
    jobs: Mapping[tuple[str, str], Mapping[str, Any]], row: StatusRow
) -> Mapping[str, Any] | None:
    """The row's live release's job statistics, if the monitor has them for that release."""
    found = jobs.get(row.key)
    return found if found and found["version"] == row.deployed else None


def _jobs_field(found: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"quantum_jobs": dict(found)} if found else {}
