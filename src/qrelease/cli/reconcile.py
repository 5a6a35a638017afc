"""Commands that decide or run a pass: `plan`, `reconcile` and `sync`.

`reconcile` runs the pass in this process, or asks the running controller when one holds
the state dir; `sync` always asks the controller (as `argocd app sync` and `flux
reconcile` do). Both show the pass's progress with step times (see `progress`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qrelease.cli.common import (
    Context,
    Failed,
    Output,
    branch_rev,
    check_names,
    common_options,
    load_snapshot,
    make_context,
    opened,
)
from qrelease.cli.output import print_table
from qrelease.cli.render import print_status

if TYPE_CHECKING:
    from qrelease.cli.progress import Progress
    from qrelease.planning.planner import Action, Plan, Retry


def _pending(action: Action) -> bool:
    """True when Git and what runs differ for this row, or a change would be made."""
    from qrelease.model.vocabulary import ActionKind, Sync

    return action.kind in (ActionKind.DEPLOY, ActionKind.PRUNE) or action.sync != Sync.SYNCED


@click.command("plan")
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--app", help="Only this app.")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to plan for.")
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 0 when nothing is pending, 2 when changes are pending (or held), 1 on an error.",
)
def plan_command(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str | None,
    app: str | None,
    rev: str,
    exit_code: bool,
) -> None:
    """What a reconcile would do, per environment and app (nothing changes)."""
    from qrelease.wiring import engine

    ctx = make_context(repo, state, config, output)
    with opened(ctx) as git_repo, engine(git_repo, ctx.state_dir, store_url=ctx.store_url) as eng:
        snapshot, the_plan = eng.plan(rev, env_name, app_filter=app)
        check_names(snapshot, env_name, app)
        previews = eng.previews(snapshot, the_plan)
    for error in snapshot.errors:
        click.echo(str(error), err=True)
    pending = [action for action in the_plan.actions if _pending(action)]
    if output.structured:
        output.emit(_plan_json(the_plan, previews, len(pending)))
    else:
        _print_plan(the_plan, previews, len(pending), wide=output.wide)
    if exit_code and snapshot.errors:
        sys.exit(1)
    if exit_code and pending:
        sys.exit(2)


def _plan_json(
    the_plan: Plan, previews: dict[tuple[str, str], list[str]], pending: int
) -> dict[str, Any]:
    return {
        "revision": the_plan.revision,
        "pending": pending,
        "actions": [
            {
                "env": a.env,
                "app": a.app,
                "action": str(a.kind),
                "from": a.from_version,
                "to": a.to_version,
                "reason": a.reason,
                "sync": str(a.sync),
                "step": a.step,
                "checks": [vars(check) for check in a.checks],
                "retry_at": a.retry_at,
                "what_if": previews.get(a.key, []),
            }
            for a in the_plan.actions
        ],
    }


def _print_plan(
    the_plan: Plan, previews: dict[tuple[str, str], list[str]], pending: int, *, wide: bool
) -> None:
    click.echo(
        f"revision {the_plan.revision[:12]}: {len(the_plan.changes)} change(s), "
        f"{pending} row(s) pending"
    )
    headers = ["ENV", "APP", "ACTION", "FROM", "TO", "REASON"]
    rows = [
        [a.env, a.app, str(a.kind), a.from_version or "-", a.to_version or "-", a.reason]
        for a in the_plan.actions
    ]
    if wide:
        headers[5:5] = ["SYNC", "CHECKS", "RETRY AT"]
        for row, a in zip(rows, the_plan.actions, strict=True):
            failed = ",".join(c.name for c in a.checks if not c.passed) or "-"
            retry = a.retry_at.strftime("%Y-%m-%d %H:%M:%S") if a.retry_at else "-"
            row[5:5] = [str(a.sync), failed, retry]
    print_table(headers, rows)
    for (env_key, app_key), lines in sorted(previews.items()):
        click.echo(f"{env_key}/{app_key} what-if:")
        for line in lines or ["no changes"]:
            click.echo(f"  {line}")


def _retry_mode(retry: bool) -> Retry:
    from qrelease.planning.planner import Retry

    return Retry.ALL if retry else Retry.TRANSIENT


@click.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--app", help="Only this app.")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to apply.")
@click.option(
    "--retry", is_flag=True, help="Also retry releases that failed a gate or health check here."
)
def reconcile(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str | None,
    app: str | None,
    rev: str,
    retry: bool,
) -> None:
    """One reconcile pass, then print the resulting status; exit 1 until every change is live.

    Transient failures (a package source that could not be reached) are retried at once;
    releases that failed a gate or health check at this revision wait for a new revision
    unless --retry is given. When a controller holds the state dir, it runs the pass.
    """
    from qrelease.daemon.lock import AlreadyRunningError, ControllerLock

    ctx = make_context(repo, state, config, output)
    lock = ControllerLock(ctx.state_dir, role="reconcile")
    try:
        lock.acquire()
    except AlreadyRunningError as exc:
        if getattr(exc, "role", None) != "controller":
            raise Failed(f"{exc}; try again when it has finished") from None
        if rev != "HEAD":
            raise Failed(
                f"{exc}; it reconciles its own branch, so --rev cannot be used while it runs"
            ) from None
        click.echo(f"{exc}: asking it to run the pass", err=True)
        _through_controller(ctx, env_name, app, _retry_mode(retry))
        return
    try:
        report = _local_pass(ctx, env_name, app, rev, _retry_mode(retry))
    finally:
        lock.release()
    for error in report.snapshot.errors:
        click.echo(str(error), err=True)
    print_status(list(report.rows), output)
    if not report.converged:
        sys.exit(1)


def _local_pass(ctx: Context, env_name: str | None, app: str | None, rev: str, mode: Retry) -> Any:
    """Run one pass in this process (the caller holds the state dir's lock)."""
    import socket

    from qrelease.anchoring import anchor_chain
    from qrelease.cli.progress import progress_for_terminal
    from qrelease.examples.wheelhouse import example_wheelhouse
    from qrelease.wiring import engine, gate_queue, trusted_keys

    with opened(ctx) as git_repo:
        check_names(load_snapshot(git_repo, rev, ctx.state_dir), env_name, app)
        progress = progress_for_terminal()
        try:
            with engine(
                git_repo,
                ctx.state_dir,
                deploying=True,
                on_row=progress,
                concurrency=ctx.config.concurrency,
                keys=trusted_keys(ctx.config),
                allowed_sources=ctx.config.sources.allow,
                store_url=ctx.store_url,
                gate_limits=ctx.config.gates.limits(),
                gate_queue=gate_queue(ctx.config, ctx.store_url, f"cli@{socket.gethostname()}"),
                wheelhouse=example_wheelhouse(),
            ) as eng:
                report = eng.reconcile(rev, env_name, mode, app_filter=app)
                anchor_chain(eng.store, ctx.repo, ctx.state_dir, warn=_anchor_warning)
        finally:
            progress.close()
    return report


def _anchor_warning(reason: str) -> None:
    """Anchoring the audit chain failed: the pass stands, the user is told why."""
    click.echo(f"warning: the audit chain was not anchored in Git: {reason}", err=True)


def _through_controller(ctx: Context, env_name: str | None, app: str | None, mode: Retry) -> None:
    """Ask the controller on the state dir for a pass, show its progress, print its rows."""
    from qrelease.cli.progress import progress_for_terminal
    from qrelease.daemon.api import ApiError, request_pass
    from qrelease.planning.status import StatusRow

    progress: Progress = progress_for_terminal()
    try:
        report = request_pass(
            ctx.state_dir, env_name, mode, lambda row: progress(StatusRow.from_json(row)), app=app
        )
    except ApiError as exc:
        raise Failed(str(exc)) from None
    finally:
        progress.close()
    for error in report["errors"]:
        click.echo(error, err=True)
    print_status([StatusRow.from_json(row) for row in report["rows"]], ctx.output)
    if not report["converged"]:
        sys.exit(1)


@click.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--app", help="Only this app.")
@click.option(
    "--retry", is_flag=True, help="Also retry releases that failed a gate or health check here."
)
def sync(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str | None,
    app: str | None,
    retry: bool,
) -> None:
    """Ask the running controller for a pass now and stream it; exit 1 until it is all live.

    The controller is found through its state dir (`--state`, or the config's). It fetches
    first, so a commit pushed a moment ago is applied.
    """
    from qrelease.daemon.api import read_endpoint

    ctx = make_context(repo, state, config, output)
    if read_endpoint(ctx.state_dir) is None:
        raise Failed(
            f"no controller serves {ctx.state_dir} (it publishes controller.api.json while it "
            "runs): start one with `qrelease controller run`, or run the pass here with "
            "`qrelease reconcile`"
        )
    if env_name is not None or app is not None:
        with opened(ctx) as git_repo:
            check_names(
                load_snapshot(git_repo, branch_rev(ctx, git_repo), ctx.state_dir), env_name, app
            )
    _through_controller(ctx, env_name, app, _retry_mode(retry))
