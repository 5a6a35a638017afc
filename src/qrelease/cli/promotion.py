"""Commands that change what Git pins, and the policy they answer to.

`promote`, `rollback`, `suspend`, `resume`, `approve`, `reject` each make one commit (and
push it); `windows` says whether an environment accepts changes now.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from qrelease.cli.common import (
    Context,
    Failed,
    Output,
    check_names,
    common_options,
    load_snapshot,
    make_context,
    opened,
)

F = TypeVar("F", bound=Callable[..., Any])


def _promoter(ctx: Context) -> Any:
    from qrelease.wiring import open_state, promoter, trusted_keys

    store = open_state(ctx.state_dir, ctx.store_url)
    branch, keys = ctx.config.source.branch, trusted_keys(ctx.config)
    return promoter(ctx.repo, ctx.state_dir, store, branch=branch, trusted_keys=keys)


def _report(result: Any, output: Output) -> None:
    change = result.change
    if output.structured:
        output.emit(
            {
                "action": change.action,
                "env": change.env,
                "app": change.app,
                "from": change.from_version,
                "to": change.to_version,
                "refused": result.refused,
                "checks": [vars(c) for c in result.checks],
                "override": list(change.override),
                "commit": result.published.commit if result.published else None,
                "pushed": result.published.pushed if result.published else False,
            }
        )
    else:
        for check in result.checks:
            click.echo(check.render(), err=result.refused)
        if result.refused:
            names = ", ".join(c.name for c in result.checks if not c.passed)
            click.echo(
                f"refused: {change.action} {change.app} {change.to_version} to {change.env}: "
                f"{names} (--force overrides, and is recorded)",
                err=True,
            )
        else:
            where = "pushed" if result.published.pushed else "committed locally (no remote)"
            forced = f" (override: {', '.join(change.override)})" if change.override else ""
            commit = result.published.commit[:12]
            click.echo(
                f"{change.action} {change.app} {change.from_version or 'none'} -> "
                f"{change.to_version} in {change.env}: {commit} {where}{forced}"
            )
    if result.refused:
        sys.exit(1)


def _with_promoter(ctx: Context, env_name: str, app: str, call: Callable[[Any], Any]) -> Any:
    """Run `call(promoter)` after checking the names; promotion and Git errors exit 1."""
    from qrelease.promotion.promote import PromotionError
    from qrelease.source.repo import SourceError

    promoter = _promoter(ctx)
    try:
        check_names(promoter.snapshot(), env_name, app)
        return call(promoter)
    except (PromotionError, SourceError) as exc:
        raise Failed(str(exc)) from None
    finally:
        promoter.store.close()


def pin_options(command: F) -> F:
    """The options every pin-changing command shares."""
    command = click.option("--actor", help="Commit author, 'Name <email>' (default: git config).")(
        command
    )
    return click.option(
        "--reason", required=True, help="Why; recorded in the commit and the audit log."
    )(command)


@click.command()
@common_options
@click.argument("app")
@click.option("--to", "env_name", required=True, help="Environment to promote into.")
@click.option("--version", "version", help="Release to pin (default: Healthy upstream).")
@pin_options
@click.option("--force", is_flag=True, help="Override failed policy checks (recorded).")
def promote(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    force: bool,
) -> None:
    """Commit (and push) a new pin; policy checked first."""
    ctx = make_context(repo, state, config, output)
    result = _with_promoter(
        ctx,
        env_name,
        app,
        lambda p: p.promote(app, env_name, version, reason, actor=actor, force=force),
    )
    _report(result, output)


@click.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment to roll back.")
@click.option("--to", "version", help="Release to pin (default: the last Healthy one there).")
@pin_options
@click.option("--force", is_flag=True, help="Break glass: roll back during a freeze (recorded).")
def rollback(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    force: bool,
) -> None:
    """Commit (and push) an older pin; holds auto-promotion until the next promote.

    Soak and upstream checks are skipped; deny windows and freezes still apply unless
    --force overrides them, which the commit and the audit log record.
    """
    ctx = make_context(repo, state, config, output)
    result = _with_promoter(
        ctx,
        env_name,
        app,
        lambda p: p.rollback(app, env_name, version, reason, actor=actor, force=force),
    )
    _report(result, output)


def _suspension(
    ctx: Context, app: str, env_name: str, reason: str, actor: str | None, *, suspend: bool
) -> None:
    def call(promoter: Any) -> Any:
        if suspend:
            return promoter.suspend(app, env_name, reason, actor=actor)
        return promoter.resume(app, env_name, reason, actor=actor)

    published = _with_promoter(ctx, env_name, app, call)
    word = "suspended" if suspend else "resumed"
    where = "pushed" if published.pushed else "committed locally (no remote)"
    if ctx.output.structured:
        ctx.output.emit(
            {"action": word, "env": env_name, "app": app, "commit": published.commit,
             "pushed": published.pushed}
        )  # fmt: skip
    else:
        click.echo(f"{word} {app} in {env_name}: {published.commit[:12]} {where}")


@click.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment.")
@pin_options
def suspend(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    reason: str,
    actor: str | None,
) -> None:
    """Commit (and push) a suspension: the controller and auto-promotion leave the app alone.

    It adds `policy.suspended.<app>: <reason>` to the environment file. What runs keeps
    running; pin changes wait (status shows Suspended) until `qrelease resume`.
    """
    ctx = make_context(repo, state, config, output)
    _suspension(ctx, app, env_name, reason, actor, suspend=True)


@click.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment.")
@pin_options
def resume(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    reason: str,
    actor: str | None,
) -> None:
    """Commit (and push) the end of a suspension: the controller applies the pin again."""
    ctx = make_context(repo, state, config, output)
    _suspension(ctx, app, env_name, reason, actor, suspend=False)


def _record_approval(
    ctx: Context,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    sign: bool,
    *,
    approves: bool,
) -> None:
    from qrelease.evidence import release_digest
    from qrelease.source.approvals import record_approval
    from qrelease.source.repo import SourceError

    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, ctx.config.source.branch, ctx.state_dir)
        check_names(snapshot, env_name, app)
        env = snapshot.environments[env_name]
        version = version or env.apps.get(app)
        manifest = snapshot.manifest(app, version) if version else None
        if manifest is None:
            raise Failed(f"{app} {version or '(not pinned)'} has no valid manifest in {env_name}")
        digest = release_digest(snapshot, manifest)
        try:
            commit = record_approval(
                git_repo,
                env=env_name,
                app=app,
                version=manifest.version,
                digest=digest,
                approves=approves,
                reason=reason,
                actor=actor,
                sign=sign,
            )
        except SourceError as exc:
            raise Failed(str(exc)) from None
    word = "approved" if approves else "rejected"
    if ctx.output.structured:
        ctx.output.emit(
            {"action": word, "env": env_name, "app": app, "version": manifest.version,
             "digest": digest, "commit": commit}
        )  # fmt: skip
    else:
        click.echo(
            f"{word} {app} {manifest.version} in {env_name} (release {digest[:12]}): {commit[:12]}"
        )


def approval_options(command: F) -> F:
    """The options `approve` and `reject` share."""
    for option in (
        click.option("--sign", is_flag=True, help="Sign it with your git signing key."),
        click.option("--actor", help="Approver, 'Name <email>' (default: git config)."),
        click.option("--reason", required=True, help="Why; recorded with it."),
        click.option("--version", "version", help="Release (default: the version pinned there)."),
        click.option("--env", "env_name", required=True, help="Environment."),
        click.argument("app"),
    ):
        command = option(command)
    return command


@click.command()
@common_options
@approval_options
def approve(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    sign: bool,
) -> None:
    """Approve a release for an environment (signed Git data on refs/qrelease/approvals)."""
    ctx = make_context(repo, state, config, output)
    _record_approval(ctx, app, env_name, version, reason, actor, sign, approves=True)


@click.command()
@common_options
@approval_options
def reject(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    sign: bool,
) -> None:
    """Reject a release for an environment: it stays held until you approve it again."""
    ctx = make_context(repo, state, config, output)
    _record_approval(ctx, app, env_name, version, reason, actor, sign, approves=False)


@click.command()
@common_options
@click.option("--env", "env_name", required=True, help="Environment.")
@click.option(
    "--at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Judge at this time instead of now (ISO 8601, UTC unless a zone is given).",
)
def windows(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str,
    at: Any,
) -> None:
    """Whether the environment accepts changes now, and when that next changes."""
    from datetime import UTC, datetime

    from qrelease.planning.windows import next_change, window_state

    ctx = make_context(repo, state, config, output)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, ctx.config.source.branch, ctx.state_dir)
    check_names(snapshot, env_name, None)
    env = snapshot.environments.get(env_name)
    if env is None:
        raise Failed(f"invalid environment {env_name!r} (see qrelease validate)")
    now = at.replace(tzinfo=at.tzinfo or UTC) if at else datetime.now(UTC)
    state_now = window_state(env.policy, now)
    closes, opens = next_change(env.policy, now)
    if output.structured:
        output.emit(
            {"env": env_name, "open": state_now.open, "reason": state_now.reason,
             "now": now.isoformat(), "next_close": closes.isoformat() if closes else None,
             "next_open": opens.isoformat() if opens else None}
        )  # fmt: skip
        return
    click.echo(f"{env_name}: {'open' if state_now.open else 'closed'} ({state_now.reason})")
    lines = [("next opens ", opens), ("next closes", closes)]
    if state_now.open:
        lines.reverse()
    if lines[0][1] is None:
        click.echo(f"  nothing {'closes' if state_now.open else 'opens'} it within 400 days")
    for label, moment in lines:
        if moment is not None:
            click.echo(f"  {label}  {moment.isoformat()}")
