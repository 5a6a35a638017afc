"""History of one environment from a store of many events, against the raw indexed SQLite query.

The store is filled through `Store.append` (so every event is really hash-chained) in one
transaction, with events spread round-robin over three environments and the apps. Two
rows: the newest 100 events of one environment (what `qrelease history --env` shows
first), and that environment's whole history. The reference runs the same indexed SELECT
with plain `sqlite3` and builds plain tuples.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.bench_daemon import child_env
from benchmarks.gitdata import ENVIRONMENTS, app_name, gitops_repo, version_name
from benchmarks.harness import Context, Row, Stats, plain, ratio_row
from qrelease.model.events import GENESIS_HASH, EventDraft
from qrelease.store.sqlite import Store

TARGET = 2.0
VERIFY_TARGET = 1.3
RSS_TARGET_MIB = 150.0
INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
ENV = "prod"
PAGE = 100
STARTED = datetime(2024, 1, 1, tzinfo=UTC)
ACTIONS = ("gate", "gate", "gate", "install", "switch", "deploy")
COLUMNS = (
    "seq, time, env, app, action, from_version, to_version, revision, "
    "actor, reason, outcome, details, prev_hash, hash"
)


def draft(index: int, apps: int) -> EventDraft:
    """The event at `index`: a deploy's steps, round-robin over environments and apps."""
    step = ACTIONS[index % len(ACTIONS)]
    details = {"gate": "smoke", "seconds": 0.25} if step == "gate" else {"installed": True}
    return EventDraft(
        env=ENVIRONMENTS[(index // len(ACTIONS)) % len(ENVIRONMENTS)],
        app=app_name((index // (len(ACTIONS) * len(ENVIRONMENTS))) % apps),
        action=step,
        from_version=version_name(0),
        to_version=version_name(1),
        revision=f"{index:040x}",
        outcome="Passed" if step == "gate" else "Succeeded",
        details=details,
    )


def fill(path: Path, events: int, apps: int) -> None:
    """A store holding `events` chained events, appended in one transaction."""
    with Store.open(path) as store, store.transaction():
        for index in range(events):
            store.append(draft(index, apps), time=STARTED + timedelta(seconds=index))


def raw_query(connection: sqlite3.Connection, limit: int | None) -> list[tuple[object, ...]]:
    """Reference: the indexed SELECT, rows as plain tuples."""
    sql = f"SELECT {COLUMNS} FROM events WHERE env = ? ORDER BY seq DESC"  # noqa: S608 constant
    if limit is None:
        return connection.execute(sql, (ENV,)).fetchall()
    return connection.execute(sql + " LIMIT ?", (ENV, limit)).fetchall()


def fill_fast(path: Path, events: int, apps: int) -> None:
    """A store of `events` chained events, written straight into SQLite in batches.

    Hashes follow `Event.compute_hash` exactly (sha256 of the canonical JSON); the scale
    rows verify the whole chain, which proves it. `Store.append` would take minutes here.
    """
    Store.open(path).close()  # the schema
    prev = GENESIS_HASH
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        batch: list[tuple[object, ...]] = []
        for index in range(events):
            event = draft(index, apps)
            seq, moment = index + 1, STARTED + timedelta(seconds=index)
            body = _body(event)
            body.update(seq=seq, time=moment.isoformat(), prev_hash=prev)
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            details = json.dumps(event.details, sort_keys=True, ensure_ascii=False)
            batch.append(
                (
                    seq,
                    moment.isoformat(timespec="microseconds"),
                    event.env,
                    event.app,
                    event.action,
                    event.from_version,
                    event.to_version,
                    event.revision,
                    event.actor,
                    event.reason,
                    event.outcome,
                    details,
                    prev,
                    digest,
                )
            )
            prev = digest
            if len(batch) == 10_000:
                connection.executemany(INSERT, batch)
                batch = []
        connection.executemany(INSERT, batch)
        connection.execute("COMMIT")


def _body(event: EventDraft) -> dict[str, object]:
    """`EventDraft.model_dump(mode="json")` of the events `draft` makes, without pydantic."""
    return {name: getattr(event, name) for name in EventDraft.model_fields}


def raw_walk(connection: sqlite3.Connection) -> int:
    """Reference: every row's canonical JSON hashed and linked to its predecessor."""
    prev, count = GENESIS_HASH, 0
    cursor = connection.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq")  # noqa: S608 constant
    names = COLUMNS.split(", ")
    while rows := cursor.fetchmany(500):
        for row in rows:
            body = dict(zip(names, row, strict=True))
            body["details"] = json.loads(body["details"])
            body["time"] = datetime.fromisoformat(body["time"]).isoformat()
            stored = body.pop("hash")
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if (
                body["prev_hash"] != prev
                or hashlib.sha256(canonical.encode()).hexdigest() != stored
            ):
                raise AssertionError(f"the reference walk found a break at {row[0]}")
            prev, count = stored, count + 1
    return count


_HIGH_WATER = """\
import atexit, runpy, sys
out = sys.argv.pop(1)

def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            with open(out, "w") as file:
                file.write(line.split()[1])

atexit.register(high_water)
sys.argv[0] = "qrelease"
runpy.run_module("qrelease", run_name="__main__", alter_sys=True)
"""
"""Runs `python -m qrelease ARGS` and writes its VmHWM (KiB) to a file as it exits."""


def peak_rss_mib(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Run `python -m qrelease ...` with its output to /dev/null: (its peak RSS in MiB, seconds).

    The peak is the process's own VmHWM, read as it exits. Not `wait4`'s `ru_maxrss`: Linux
    carries the RSS the child had at fork (a copy of this benchmark process, with its data)
    across `exec` into that figure, so it measured the caller, not the command.
    """
    assert argv[1:3] == ["-m", "qrelease"], argv
    high_water = cwd / "high-water.txt"
    command = [argv[0], "-c", _HIGH_WATER, str(high_water), *argv[3:]]
    started = time.perf_counter()
    with Path(os.devnull).open("wb") as sink:
        done = subprocess.run(
            command, stdout=sink, stderr=subprocess.PIPE, cwd=cwd, env=child_env(), check=False
        )
    if done.returncode != 0:
        raise AssertionError(f"{argv[3:]} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return int(high_water.read_text()) / 1024, time.perf_counter() - started


def scale_rows(ctx: Context) -> list[Row]:
    """Newest 100 of one env, all of it streamed (peak RSS), and audit verify, at the scale size."""
    root = ctx.workdir / "history-scale"
    path = root / "state" / "qrelease.db"
    path.parent.mkdir(parents=True)
    events = ctx.sizes.scale_events
    fill_fast(path, events, ctx.sizes.apps)
    repo = gitops_repo(root / "gitops.git", 10, 2, 10)
    with Store.open(path) as store, closing(sqlite3.connect(path)) as connection:
        in_env = connection.execute("SELECT count(*) FROM events WHERE env = ?", (ENV,)).fetchone()[
            0
        ]
        page = ratio_row(
            ctx,
            f"history of one env, newest {PAGE} of {events:,} events",
            TARGET,
            plain(lambda: list(store.iter_events(env=ENV, limit=PAGE, descending=True))),
            plain(lambda: raw_query(connection, PAGE)),
            reference_name="sqlite3: SELECT ... WHERE env=? ORDER BY seq DESC LIMIT 100; tuples",
            notes=[
                f"qrelease: Store.iter_events(env={ENV!r}, limit={PAGE}, descending=True), "
                "what `history --limit 100` reads"
            ],
        )
        verify = ratio_row(
            ctx,
            f"audit verify, {events:,} events",
            VERIFY_TARGET,
            plain(lambda: _verified(store)),
            plain(lambda: raw_walk(connection)),
            reference_name="sqlite3 rows in seq order: canonical JSON + sha256 + prev link, "
            "tuples (raw hash-chain walk)",
            notes=["qrelease: Store.verify() (every link and hash, revisions collected)"],
        )
    cli = [
        sys.executable,
        "-m",
        "qrelease",
        "history",
        "--repo",
        str(repo.path),
        "--state",
        str(root / "state"),
        "--env",
        ENV,
    ]
    newest_mib, newest_s = peak_rss_mib([*cli, "--limit", str(PAGE), "--format", "jsonl"], root)
    peak, seconds = peak_rss_mib([*cli, "--format", "jsonl"], root)
    json_peak, json_seconds = peak_rss_mib([*cli, "--format", "json"], root)
    rss = Row(
        f"history of one env, all {in_env:,} of {events:,} events, peak RSS",
        "absolute",
        RSS_TARGET_MIB,
        Stats.of([peak]),
        notes=(
            f"`qrelease history --env {ENV} --format jsonl` in a subprocess, output to "
            f"/dev/null: peak RSS (its VmHWM) {peak:.0f} MiB in {seconds:.1f}s; "
            f"--format json {json_peak:.0f} MiB in {json_seconds:.1f}s",
            f"`--limit {PAGE}`: {newest_mib:.0f} MiB in {newest_s:.2f}s (interpreter start, "
            "imports and the Git side of the timeline included; the repo has 10 commits)",
        ),
        unit="MiB",
    )
    return [page, rss, verify]


def _verified(store: Store) -> None:
    report = store.verify()
    if not report.ok:
        raise AssertionError(f"the generated chain does not verify: {report.first_break}")


def run(ctx: Context) -> list[Row]:
    """Two rows: newest page of one env, and its whole history."""
    path = ctx.workdir / "history" / "qrelease.db"
    fill(path, ctx.sizes.events, ctx.sizes.apps)
    reference_name = "sqlite3: SELECT ... FROM events WHERE env=? ORDER BY seq DESC{}; tuples"
    with Store.open(path) as store, sqlite3.connect(path) as connection:
        in_env = len(raw_query(connection, None))
        page = ratio_row(
            ctx,
            f"history of one env, newest {PAGE} of {ctx.sizes.events:,} events",
            TARGET,
            plain(lambda: store.events(env=ENV, limit=PAGE, descending=True)),
            plain(lambda: raw_query(connection, PAGE)),
            reference_name=reference_name.format(" LIMIT 100"),
            notes=[f"qrelease: Store.events(env={ENV!r}, limit={PAGE}, descending=True)"],
        )
        whole = ratio_row(
            ctx,
            f"history of one env, all {in_env:,} of {ctx.sizes.events:,} events",
            TARGET,
            plain(lambda: store.events(env=ENV, descending=True)),
            plain(lambda: raw_query(connection, None)),
            reference_name=reference_name.format(""),
            notes=[f"qrelease: Store.events(env={ENV!r}, descending=True) -> {in_env:,} Events"],
        )
    connection.close()
    return [page, whole, *scale_rows(ctx)]
