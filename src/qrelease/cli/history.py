"""Commands that read the record: `history` and `audit verify|export`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from qrelease.cli.common import (
    Failed,
    Output,
    branch_rev,
    check_names,
    common_options,
    load_snapshot,
    location_options,
    make_context,
    opened,
)
from qrelease.cli.output import output_formats, print_table

F = TypeVar("F", bound=Callable[..., Any])
ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z")


def parse_since(text: str, now: datetime) -> datetime:
    """A moment: ISO 8601 (UTC unless a zone is given) or a time ago (`2h`, `30m`, `1d12h`).

    >>> now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    >>> parse_since("2h", now).isoformat(), parse_since("2026-12-01", now).isoformat()
    ('2026-12-03T10:00:00+00:00', '2026-12-01T00:00:00+00:00')
    """
    text = text.strip()
    for form in ISO_FORMATS:
        try:
            moment = datetime.strptime(text, form)
        except ValueError:
            continue
        return moment.replace(tzinfo=moment.tzinfo or UTC)
    from qrelease.model.types import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time ago (30m, 2h, 7d) nor ISO 8601 "
            "(2026-12-01 or 2026-12-01T09:30:00)"
        ) from None


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """The --since callback: a usage error for text that is no time."""
    if value is None:
        return None
    try:
        return parse_since(value, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def since_option(what: str = "Only from this time") -> Callable[[F], F]:
    """`--since AGO|ISO`: the command receives `since` as an aware datetime (or None)."""
    return click.option(
        "--since",
        callback=_since,
        metavar="AGO|ISO",
        help=f"{what}: a time ago (30m, 2h, 7d) or ISO 8601 (UTC unless a zone is given).",
    )


HISTORY_SHOWN = ["time", "env", "app", "action", "from_version", "to_version", "actor", "outcome"]
HISTORY_WIDE = ["revision", "source"]
STREAMED = ("json", "jsonl", "csv")
"""Formats written row by row as the timeline is read, however long it is."""


@click.command()
@location_options
@output_formats("table", "wide", "json", "yaml", "jsonl", "csv")
@click.option("--app", help="Only this app.")
@click.option("--env", "env_name", help="Only this environment.")
@since_option()
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    help="Only the newest N entries (still printed oldest first).",
)
@click.option(
    "--before",
    type=click.IntRange(min=1),
    metavar="SEQ",
    help="Only entries before event SEQ: the next page after one whose oldest seq was SEQ.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv"]),
    help="Same as -o (kept for scripts).",
)
def history(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str | None,
    env_name: str | None,
    since: datetime | None,
    limit: int | None,
    before: int | None,
    fmt: str | None,
) -> None:
    """One timeline: who changed which pin (Git) and what the controller did.

    JSON, JSON Lines and CSV are written as they are read (JSON as one array written as it
    goes), so a long history streams. A table is aligned, so it holds its rows first; give
    it a --limit (or use another format) for a long history.
    """
    from qrelease.history import iter_timeline
    from qrelease.wiring import open_state

    if fmt is not None:
        output = Output(fmt)
    ctx = make_context(repo, state, config, output)
    store = open_state(ctx.state_dir, ctx.store_url)
    try:
        with opened(ctx) as git_repo:
            entries = iter_timeline(
                store,
                git_repo,
                branch_rev(ctx, git_repo),
                env=env_name,
                app=app,
                since=since,
                limit=limit,
                before=before,
            )
            written, oldest = _write_history(entries, output)
            if not written and (env_name or app):  # nothing found: was a name misspelt?
                snapshot = load_snapshot(git_repo, branch_rev(ctx, git_repo), ctx.state_dir)
                check_names(snapshot, env_name, app)
    finally:
        store.close()
    if limit and oldest is not None and output.name in ("table", "wide"):
        click.echo(f"(older entries: --before {oldest})", err=True)


def _write_history(entries: Iterator[Any], output: Output) -> tuple[int, int | None]:
    """Write the entries in the output's format; returns how many, and the oldest seq."""
    out = sys.stdout
    count = 0
    oldest: int | None = None
    if output.name not in STREAMED:
        rows = []
        for entry in entries:
            oldest = entry.seq if oldest is None and entry.seq is not None else oldest
            rows.append(entry.as_json())
        _print_history(rows, output)
        return len(rows), oldest
    writer = None
    if output.name == "csv":
        import csv

        from qrelease.history import COLUMNS

        writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
        writer.writeheader()
    elif output.name == "json":
        out.write("[")
    for entry in entries:
        oldest = entry.seq if oldest is None and entry.seq is not None else oldest
        row = entry.as_json()
        if writer is not None:
            writer.writerow(row)
        elif output.name == "jsonl":
            out.write(json.dumps(row, default=str) + "\n")
        else:
            out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(row, default=str))
        count += 1
    if output.name == "json":
        out.write("\n]\n" if count else "]\n")
    return count, oldest


def _print_history(rows: list[dict[str, Any]], output: Output) -> None:
    if output.structured:
        output.emit(rows)
        return
    shown = HISTORY_SHOWN + (HISTORY_WIDE if output.wide else []) + ["reason"]
    print_table(
        [c.upper() for c in shown],
        [[_history_cell(r, c, output.wide) for c in shown] for r in rows],
    )


def _history_cell(row: dict[str, Any], column: str, wide: bool) -> str:
    value = str(row.get(column) or "-")
    if column == "time":
        return value[:19]
    if column == "revision" and not wide:
        return value[:12]
    return value


@click.group()
def audit() -> None:
    """Audit the controller's history."""


@audit.command("verify")
@common_options
@click.option(
    "--from-export",
    "export_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Check a file written by `audit export` instead of the state dir's store.",
)
@click.option(
    "--controller",
    "controller_id",
    help="Compare with this controller's anchors (default: the state dir's, or the export's).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Read only the events after the newest anchor an earlier verify found intact.",
)
def audit_verify(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    export_file: Path | None,
    controller_id: str | None,
    incremental: bool,
) -> None:
    """Check the event chain, its anchors in Git and its links to Git; exit 1 on any break."""
    from qrelease.anchoring import read_controller_id
    from qrelease.history import ExportError, audit_export, audit_problems
    from qrelease.source.repo import SourceError
    from qrelease.source.signatures import TrustedKeys
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, output)
    keys = TrustedKeys(ctx.config.verify.trusted_keys, ctx.config.verify.gpg_home)
    try:
        if export_file is not None:
            with opened(ctx) as git_repo:
                rev = branch_rev(ctx, git_repo)
                findings = audit_export(
                    export_file, git_repo, rev, controller=controller_id, keys=keys
                )
        else:
            controller_id = controller_id or read_controller_id(ctx.state_dir)
            store = open_state(ctx.state_dir, ctx.store_url)
            try:
                with opened(ctx) as git_repo:
                    rev = branch_rev(ctx, git_repo)
                    findings = audit_problems(
                        store,
                        git_repo,
                        rev,
                        controller=controller_id,
                        keys=keys,
                        incremental=incremental,
                    )
            finally:
                store.close()
    except (ExportError, SourceError) as exc:
        raise Failed(str(exc)) from None
    _print_findings(findings, output)


def _print_findings(findings: Any, output: Output) -> None:
    """Problems on stderr, notes and the summary on stdout (or all as data); exit 1 on a problem."""
    if output.structured:
        output.emit(
            {
                "ok": findings.ok,
                "events": findings.events,
                "controller": findings.controller,
                "problems": findings.problems,
                "notes": findings.notes,
            }
        )
    else:
        for problem in findings.problems:
            click.echo(problem, err=True)
        for note in findings.notes:
            click.echo(note)
        click.echo(
            f"{findings.events} events: "
            + (
                "chain intact, every revision in Git"
                if findings.ok
                else f"{len(findings.problems)} problem(s); first: {findings.problems[0]}"
            )
        )
    if not findings.ok:
        sys.exit(1)


@audit.command("export")
@location_options
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (default: standard output).",
)
def audit_export_command(
    repo: str | None, state: Path | None, config: Path | None, output: Path | None
) -> None:
    """Write the event chain as JSON Lines, to check offline with `audit verify --from-export`."""
    import tempfile

    from qrelease.anchoring import read_controller_id
    from qrelease.history import export_chain
    from qrelease.source.repo import SourceError
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, Output())
    try:
        controller_id = read_controller_id(ctx.state_dir)
    except SourceError as exc:
        raise Failed(str(exc)) from None
    now = datetime.now(UTC)
    with open_state(ctx.state_dir, ctx.store_url) as store:
        if output is None:
            _export_or_fail(
                lambda: export_chain(store, sys.stdout, controller=controller_id, exported_at=now)
            )
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=output.parent, prefix=f".{output.name}.", delete=False
        ) as partial:
            try:
                count = _export_or_fail(
                    lambda: export_chain(store, partial, controller=controller_id, exported_at=now)
                )
            except BaseException:
                Path(partial.name).unlink()
                raise
    Path(partial.name).replace(output)
    click.echo(f"{count} events written to {output} (controller {controller_id or 'unknown'})")


def _export_or_fail(export: Callable[[], int]) -> int:
    """Run an export; a stored event that does not decode stops it with exit 1."""
    try:
        return export()
    except ValueError as exc:
        raise Failed(f"cannot export: {exc}; qrelease audit verify names the event") from None
