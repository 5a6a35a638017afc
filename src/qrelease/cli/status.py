"""Commands that read what runs: `status` (and `--watch`), `get APP` and `wait APP`.

All three render the rows the engine recorded (with what Git pins now that no pass has
taken yet), from the store and the repo alone: none of them touches an environment.
`--watch` and `wait` poll: the repo and the store stay open between polls, and the loader
re-reads only what changed in Git.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import click

from qrelease.cli.common import (
    Context,
    Failed,
    Output,
    check_names,
    common_options,
    make_context,
)
from qrelease.cli.output import print_table
from qrelease.cli.render import live_jobs_of, print_status, rollout_cell, short_time

if TYPE_CHECKING:
    from qrelease.model.events import Event
    from qrelease.planning.status import StatusRow
    from qrelease.planning.upstream import GateLine
    from qrelease.source.loader import Loader, Snapshot
    from qrelease.source.repo import GitRepo
    from qrelease.store.base import StateStore
    from qrelease.store.parsecache import ParseCache
    from qrelease.verdicts import ReviewRecord

_sleep: Callable[[float], None] = time.sleep
"""How the polling commands wait between polls (tests replace it to step time themselves)."""
_clock: Callable[[], float] = time.monotonic
"""How they measure their timeout."""


class RowSource:
    """The repo, its loader (with the state dir's parse cache) and the store, open for polls."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._repo: GitRepo | None = None
        self._loader: Loader | None = None
        self._cache: ParseCache | None = None
        self._store: StateStore | None = None

    def __enter__(self) -> Self:
        from qrelease.source.loader import Loader
        from qrelease.source.repo import SourceError
        from qrelease.source.workspace import open_repo
        from qrelease.store import open_parse_cache
        from qrelease.wiring import open_state

        try:
            self._repo = open_repo(self.ctx.repo, self.ctx.state_dir)
        except SourceError as exc:
            raise Failed(str(exc)) from None
        self._store = open_state(self.ctx.state_dir, self.ctx.store_url)
        self._cache = open_parse_cache(self.ctx.state_dir)
        self._loader = Loader(self._repo, cache=self._cache)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._cache is not None:
            self._cache.close()
        if self._store is not None:
            self._store.close()
        if self._repo is not None:
            self._repo.close()

    @property
    def store(self) -> StateStore:
        """The open store."""
        assert self._store is not None, "use RowSource as a context manager"
        return self._store

    @property
    def repo(self) -> GitRepo:
        """The open GitOps repo."""
        assert self._repo is not None, "use RowSource as a context manager"
        return self._repo

    def snapshot(self, refresh: bool = False) -> Snapshot:
        """The desired state at HEAD (a remote repo's mirror fetched first when `refresh`)."""
        from qrelease.source.repo import SourceError
        from qrelease.source.workspace import is_local_repo, mirror_path, refresh_mirror

        assert self._loader is not None, "use RowSource as a context manager"
        try:
            if refresh and not is_local_repo(self.ctx.repo):
                refresh_mirror(self.ctx.repo, mirror_path(self.ctx.repo, self.ctx.state_dir))
            return self._loader.load("HEAD")
        except SourceError as exc:
            raise Failed(str(exc)) from None

    def rows(self, snapshot: Snapshot, env_name: str | None, app: str | None) -> list[StatusRow]:
        """The status rows of the selection: recorded, with what Git pins now."""
        from qrelease.planning.status import status_rows

        recorded = [
            state
            for state in self.store.all_observed()
            if env_name in (None, state.env) and app in (None, state.app)
        ]
        pins = {key: pin for key, pin in snapshot.pins(env_name).items() if app in (None, key[1])}
        return status_rows(recorded, pins, snapshot.revision)


@click.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--app", help="Only this app.")
@click.option("--watch", "-w", is_flag=True, help="Keep showing the status as it changes.")
@click.option(
    "--interval",
    default="2s",
    show_default=True,
    metavar="DURATION",
    help="How often --watch looks again.",
)
def status(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str | None,
    app: str | None,
    watch: bool,
    interval: str,
) -> None:
    """Apps x environments: desired, deployed, sync, health, last rollout, target."""
    ctx = make_context(repo, state, config, output)
    every = _duration("--interval", interval)
    with RowSource(ctx) as source:
        snapshot = source.snapshot()
        check_names(snapshot, env_name, app)
        rows = source.rows(snapshot, env_name, app)
        if not watch:
            print_status(rows, output, _live_jobs(source, snapshot) if output.structured else None)
            return
        _watch(source, env_name, app, every, output)


def _live_jobs(source: RowSource, snapshot: Snapshot) -> dict[tuple[str, str], Any]:
    """Each watched live release's quantum jobs (`-o json|yaml`), as `/status` shows them."""
    from datetime import UTC, datetime

    from qrelease.engine.monitor import live_jobs_json

    recorded = source.store.all_observed()
    return dict(live_jobs_json(source.store, snapshot.environments, recorded, datetime.now(UTC)))


def _watch(
    source: RowSource, env_name: str | None, app: str | None, every: float, output: Output
) -> None:
    """Print the rows again whenever they change, until Ctrl-C (a terminal redraws in place)."""
    terminal = sys.stdout.isatty() and not output.structured
    shown: list[Any] | None = None
    try:
        while True:
            rows = source.rows(source.snapshot(refresh=True), env_name, app)
            if terminal:
                click.clear()
                stamp = time.strftime("%H:%M:%S")
                click.echo(f"every {every:g}s: qrelease status   {stamp}   (Ctrl-C stops)\n")
                print_status(rows, output)
            elif rows != shown:
                if shown is not None and not output.structured:
                    click.echo("")
                print_status(rows, output)
            shown = rows
            _sleep(every)
    except KeyboardInterrupt:
        return


def _duration(flag: str, text: str) -> float:
    """Seconds of a `30s`/`5m` option, or a usage error naming the flag."""
    from qrelease.model.types import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


# -- get ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppInEnv:
    """Everything `get` shows of one app in one environment."""

    row: StatusRow
    pin: str | None
    gates: tuple[GateLine, ...]
    events: tuple[Event, ...]
    jobs: Mapping[str, Any] | None = None
    """The live release's quantum jobs (Azure Quantum environments), as `/status` has them."""
    review: ReviewRecord | None = None
    """The newest counting review (`qrelease check --record`) of the desired release."""

    def as_json(self) -> dict[str, Any]:
        """The row's fields, the pin's place in Git, the gates, the quantum jobs of the live
        release (when watched) and the recent events."""
        return {
            **self.row.as_json(),
            **({"quantum_jobs": dict(self.jobs)} if self.jobs else {}),
            "pin": self.pin,
            "gates": [
                {
                    "gate": g.gate,
                    "outcome": g.outcome,
                    "message": g.message,
                    "qir_sha256": g.qir_sha256,
                }
                for g in self.gates
            ],
            "events": [event.model_dump(mode="json") for event in self.events],
            "review": None if self.review is None else _review_json(self.review),
        }


def app_in_env(store: StateStore, snapshot: Snapshot, row: StatusRow, events: int) -> AppInEnv:
    """Gather what `get` shows for one row: its pin line, newest gate results, recent events."""
    from qrelease.model.vocabulary import EventKind
    from qrelease.planning.upstream import GATE_EVENTS_SCANNED, newest_gates

    version = row.desired or row.deployed
    gates: tuple[GateLine, ...] = ()
    if version:
        scanned = store.iter_events(
            env=row.env,
            app=row.app,
            actions=[EventKind.GATE],
            descending=True,
            limit=GATE_EVENTS_SCANNED,
        )
        gates = newest_gates(scanned, version)
    recent = store.events(env=row.env, app=row.app, limit=events, descending=True)
    line = snapshot.pin_lines.get(row.key)
    path = snapshot.env_paths.get(row.env)
    pin = f"{path}:{line}" if path and line else path
    return AppInEnv(row, pin, gates, tuple(recent))


@click.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", help="Only this environment.")
@click.option(
    "--events", "event_count", default=5, show_default=True, help="Recent events per environment."
)
def get(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str | None,
    event_count: int,
) -> None:
    """One app in each environment: pins, sync, health, last rollout, gates, recent events."""
    ctx = make_context(repo, state, config, output)
    with RowSource(ctx) as source:
        snapshot = source.snapshot()
        check_names(snapshot, env_name, app)
        rows = source.rows(snapshot, env_name, app)
        jobs = _live_jobs(source, snapshot)
        reviews = _reviews_of(ctx, source.repo, snapshot, rows)
        found = [
            replace(
                app_in_env(source.store, snapshot, row, event_count),
                jobs=live_jobs_of(jobs, row),
                review=reviews.get(row.env),
            )
            for row in rows
        ]
    if not found:
        raise Failed(f"{app} is not pinned in {env_name or 'any environment'} and never ran there")
    if output.structured:
        output.emit(
            {
                "app": app,
                "revision": snapshot.revision,
                "environments": [f.as_json() for f in found],
            }
        )
        return
    click.echo(f"{app}  (Git at {snapshot.revision[:12]})")
    for each in found:
        _print_app_in_env(each, wide=output.wide)


def _print_app_in_env(each: AppInEnv, *, wide: bool) -> None:
    row = each.row
    click.echo("")
    click.echo(row.env)
    fields = [
        ("desired", (row.desired or "-") + (f"  ({each.pin})" if each.pin else "")),
        ("deployed", row.deployed or "-"),
        ("sync", str(row.sync)),
        ("health", str(row.health)),
        ("rollout", rollout_cell(row)),
        ("target", f"{row.target or '-'}  ({row.availability})"),
    ]
    if row.message:
        fields.append(("message", row.message))
    if row.retry_at:
        fields.append(("next look", short_time(row.retry_at) + " UTC"))
    if wide:
        fields.append(("revision", row.revision or "-"))
    for name, value in fields:
        click.echo(f"  {name:<10}{value}")
    _print_gates(each.gates, wide=wide)
    if each.review is not None:
        click.echo(f"  {'review':<10}{_clip(review_line(each.review), wide)}")
    if each.jobs:
        click.echo(f"  {'jobs':<10}{jobs_line(each.jobs)}")
    _print_events(each.events, wide=wide)


def _reviews_of(
    ctx: Context, repo: GitRepo, snapshot: Snapshot, rows: Sequence[StatusRow]
) -> dict[str, ReviewRecord]:
    """Per environment, the newest counting review of the release it wants (desired)."""
    from qrelease.evidence import release_digest
    from qrelease.verdicts import newest_review, read_reviews
    from qrelease.wiring import trusted_keys

    records = None
    found = {}
    for row in rows:
        manifest = snapshot.manifest(row.app, row.desired) if row.desired else None
        if manifest is None:
            continue
        if records is None:
            records = read_reviews(repo, trusted_keys(ctx.config))
        digest = release_digest(snapshot, manifest)
        review = newest_review(records, manifest.app, manifest.version, digest)
        if review is not None:
            found[row.env] = review
    return found


def review_line(review: ReviewRecord) -> str:
    """What a review said of this exact release, and for which QIR.

    >>> from datetime import datetime, UTC
    >>> from qrelease.verdicts import ReviewRecord
    >>> review_line(ReviewRecord("ab" * 20, "a", "1.0.0", "d", "cd" * 32, True, "ef" * 20,
    ...                          "ci@example.com", datetime(2026, 12, 1, tzinfo=UTC)))
    'gates passed in review abababababab by ci@example.com for QIR sha256 cdcdcdcdcdcd…'
    """
    word = "passed" if review.passed else "failed"
    qir = f" for QIR sha256 {review.qir_sha256[:12]}…" if review.qir_sha256 else ""
    return f"gates {word} in review {review.commit[:12]} by {review.reviewer}{qir}"


def _review_json(review: ReviewRecord) -> dict[str, Any]:
    return {
        "commit": review.commit,
        "passed": review.passed,
        "reviewer": review.reviewer,
        "qir_sha256": review.qir_sha256,
        "digest": review.digest,
        "reviewed": review.reviewed,
        "at": review.at.isoformat(),
    }


def jobs_line(jobs: Mapping[str, Any]) -> str:
    """One line of a live release's quantum jobs.

    >>> jobs_line({"submitted": 40, "succeeded": 36, "failed": 3, "cancelled": 1, "running": 0,
    ...     "queue_seconds": {"p50": 4.0, "p95": 31.5}, "cost": {"USD": 1.2},
    ...     "window": {"failure_rate": 0.075}}).split("; ")  # doctest: +NORMALIZE_WHITESPACE
    ['40 submitted: 36 succeeded, 3 failed, 1 cancelled', 'queue p50 4s p95 32s',
     'cost USD 1.20', 'failure rate 7.5% in the health window']
    """
    parts = [
        f"{jobs['submitted']} submitted: {jobs['succeeded']} succeeded, {jobs['failed']} failed, "
        f"{jobs['cancelled']} cancelled"
        + (f", {jobs['running']} running" if jobs["running"] else "")
    ]
    queue = jobs.get("queue_seconds") or {}
    if queue.get("p50") is not None:
        parts.append(f"queue p50 {queue['p50']:.0f}s p95 {queue['p95']:.0f}s")
    for currency, amount in sorted((jobs.get("cost") or {}).items()):
        parts.append(f"cost {currency} {amount:.2f}")
    rate = (jobs.get("window") or {}).get("failure_rate")
    if rate is not None:
        parts.append(f"failure rate {rate:.1%} in the health window")
    return "; ".join(parts)


def _clip(text: str, wide: bool, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if wide or len(text) <= limit else text[: limit - 1] + "…"


def _print_gates(gates: Sequence[GateLine], *, wide: bool) -> None:
    if not gates:
        click.echo(f"  {'gates':<10}-")
        return
    for index, gate in enumerate(gates):
        mark = {"Passed": "✓", "Failed": "✗"}.get(gate.outcome, "?")
        label = "gates" if index == 0 else ""
        line = f"{mark} {gate.gate} {gate.outcome}: {gate.message}"
        click.echo(f"  {label:<10}{_clip(line, wide)}")


def _print_events(events: Sequence[Event], *, wide: bool) -> None:
    if not events:
        click.echo(f"  {'events':<10}-")
        return
    click.echo("  events")
    rows = []
    for event in events:
        change = f"{event.from_version or '-'} -> {event.to_version or '-'}"
        rows.append(
            [
                "   ",
                short_time(event.time),
                event.action,
                event.outcome or "-",
                change,
                _clip(event.reason, wide, 60) or "-",
            ]
        )
    print_table(["   ", "TIME", "ACTION", "OUTCOME", "VERSIONS", "REASON"], rows)


# -- wait -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """What `wait` waits for."""

    sync: bool
    health: bool

    def describe(self) -> str:
        """`Synced and Healthy`."""
        return " and ".join(
            word for word, on in (("Synced", self.sync), ("Healthy", self.health)) if on
        )

    def met(self, row: StatusRow) -> bool:
        """True when the row is as wanted."""
        from qrelease.model.vocabulary import Health, Sync

        return (not self.sync or row.sync == Sync.SYNCED) and (
            not self.health or row.health == Health.HEALTHY
        )


def stuck(row: StatusRow, wanted: Wanted) -> str | None:
    """Why the row cannot become as wanted without someone acting, or None."""
    from qrelease.model.vocabulary import Health, Rollout

    if wanted.met(row):
        return None
    if row.rollout == Rollout.FAILED and row.retry_at is None and row.desired != row.deployed:
        return f"rollout Failed ({row.step}): {row.message}"
    if wanted.health and row.health == Health.SUSPENDED:
        return f"suspended: {row.message}"
    return None


@click.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", help="Only this environment (default: every one pinning it).")
@click.option("--sync", "want_sync", is_flag=True, help="Wait until Synced.")
@click.option("--health", "want_health", is_flag=True, help="Wait until Healthy.")
@click.option("--timeout", default="5m", show_default=True, metavar="DURATION")
@click.option("--interval", default="2s", show_default=True, metavar="DURATION")
def wait(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str | None,
    want_sync: bool,
    want_health: bool,
    timeout: str,
    interval: str,
) -> None:
    """Wait until the app is Synced and/or Healthy (both when neither flag is given).

    Exit 0 when it is, 1 at the timeout or as soon as it cannot get there by itself (a
    rollout that failed and waits for a new revision, a suspended app).
    """
    ctx = make_context(repo, state, config, output)
    wanted = Wanted(want_sync or not want_health, want_health or not want_sync)
    limit, every = _duration("--timeout", timeout), _duration("--interval", interval)
    deadline = _clock() + limit
    seen: dict[tuple[str, str], str] = {}
    with RowSource(ctx) as source:
        snapshot = source.snapshot()
        check_names(snapshot, env_name, app)
        while True:
            rows = source.rows(snapshot, env_name, app)
            if not rows:
                raise Failed(f"{app} is not pinned in {env_name or 'any environment'}")
            _report_changes(rows, seen)
            problems = [f"{r.env}/{r.app}: {why}" for r in rows if (why := stuck(r, wanted))]
            if problems:
                print_status(rows, output)
                raise Failed("; ".join(problems))
            if all(wanted.met(row) for row in rows):
                print_status(rows, output)
                return
            if _clock() >= deadline:
                print_status(rows, output)
                late = ", ".join(f"{r.env}/{r.app}" for r in rows if not wanted.met(r))
                raise Failed(
                    f"timed out after {timeout} waiting for {late} to be {wanted.describe()}"
                )
            _sleep(every)
            snapshot = source.snapshot(refresh=True)


def _report_changes(rows: Sequence[StatusRow], seen: dict[tuple[str, str], str]) -> None:
    """One stderr line per row whose sync, health or rollout changed since the last poll."""
    for row in rows:
        if seen.get(row.key) != row.summary:
            seen[row.key] = row.summary
            click.echo(f"{row.env}/{row.app}: {row.summary}", err=True)
