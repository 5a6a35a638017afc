"""The `qrelease` command line: parses, calls, prints (a table, or JSON with --json).

Exit codes: 0 success, 1 what was asked failed, 2 usage error. Errors go to stderr, one
line per problem, beginning with the file path where there is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from qrelease.config import ConfigError, ControllerConfig, load_config
from qrelease.source.loader import Loader, LoadError, Snapshot
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.workspace import open_repo

F = TypeVar("F", bound=Callable[..., Any])
_STORE_FLAG = "qrelease.store_url"
"""Where the --store flag's value waits in click's context until `make_context` reads it."""


class Failed(click.ClickException):
    """What was asked failed: exit 1 with the message on stderr."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


@dataclass(frozen=True)
class Context:
    """The resolved global options of one invocation."""

    repo: str
    state_dir: Path
    config: ControllerConfig
    as_json: bool
    store_url: str | None = None
    """The store's URL (flag, else config); None means the state dir's SQLite file."""


def _remember_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Keep --store for `make_context`, refusing a URL form no store backend knows."""
    from qrelease.store import StoreError, check_location

    if value is not None:
        try:
            check_location(value)
        except StoreError as exc:
            raise click.BadParameter(str(exc)) from None
    ctx.meta[_STORE_FLAG] = value


def store_option(command: F) -> F:
    """`--store URL`: read by `make_context` (and `store_flag`), so no command passes it on."""
    return click.option(
        "--store",
        metavar="URL",
        expose_value=False,
        callback=_remember_store,
        help="State store: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: config [store] url, else the state dir's SQLite file).",
    )(command)


def store_flag() -> str | None:
    """The --store flag of the running command, if given."""
    value = click.get_current_context().meta.get(_STORE_FLAG)
    return value if isinstance(value, str) else None


def common_options(command: F) -> F:
    """The global options every command accepts."""
    command = click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")(command)
    command = store_option(command)
    command = click.option(
        "--config",
        type=click.Path(path_type=Path),
        help="TOML config (default: controller/controller.toml).",
    )(command)
    command = click.option(
        "--state", type=click.Path(path_type=Path), help="State dir (default .qrelease/)."
    )(command)
    return click.option("--repo", help="GitOps repo path or URL (default: config, else .).")(
        command
    )


def make_context(
    repo: str | None, state: Path | None, config: Path | None, as_json: bool
) -> Context:
    """Merge flags over the config file over the defaults."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise Failed(str(exc)) from None
    return Context(
        repo=repo or loaded.source.url or ".",
        state_dir=state or loaded.state_dir,
        config=loaded,
        as_json=as_json,
        store_url=store_flag() or loaded.store.url,
    )


@contextmanager
def opened(ctx: Context) -> Iterator[GitRepo]:
    """The GitOps repo, closed afterwards; source problems become exit 1."""
    try:
        repo = open_repo(ctx.repo, ctx.state_dir)
    except SourceError as exc:
        raise Failed(str(exc)) from None
    try:
        yield repo
    finally:
        repo.close()


def load_snapshot(repo: GitRepo, rev: str) -> Snapshot:
    """Load the desired state at a revision, turning source problems into exit 1."""
    try:
        return Loader(repo).load(rev)
    except SourceError as exc:
        raise Failed(str(exc)) from None


def emit_json(data: object) -> None:
    """Print data as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print rows as an aligned plain-text table."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    for row in [headers, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qrelease")
def main() -> None:
    """qrelease: GitOps releases for hybrid quantum/classical apps."""


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--example", is_flag=True, help="Fill it with the bundled example apps.")
def init(directory: Path, example: bool) -> None:
    """Create a new GitOps repo (git init + first commit)."""
    from qrelease.examples.scaffold import initial_files
    from qrelease.source.writer import init_repo

    try:
        revision = init_repo(directory, initial_files(example), "Initial qrelease layout")
    except SourceError as exc:
        raise Failed(str(exc)) from None
    click.echo(
        f"Created {directory} at {revision[:12]}" + (" with the example apps" if example else "")
    )


@main.command()
@common_options
@click.option("--rev", default="HEAD", show_default=True, help="Revision to check.")
@click.option("--no-compile", is_flag=True, help="Skip compiling each release's program with qdk.")
def validate(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    rev: str,
    no_compile: bool,
) -> None:
    """Check every manifest and environment file at a revision (and compile each program)."""
    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, rev)
        sources = _source_errors(git_repo, snapshot, ctx.config.sources.allow)
        findings = _quantum_findings(ctx, git_repo, snapshot, compile_programs=not no_compile)
    errors = sorted({*snapshot.errors, *sources, *findings.errors})
    warnings = sorted(set(findings.warnings))
    if ctx.as_json:
        emit_json(
            {
                "revision": snapshot.revision,
                "ok": not errors,
                "manifests": len(snapshot.manifests),
                "environments": len(snapshot.environments),
                "errors": [vars(error) for error in errors],
                "warnings": [vars(warning) for warning in warnings],
                "compiled": findings.compiled,
                "compile_cached": findings.cached,
            }
        )
    else:
        for error in errors:
            click.echo(str(error), err=True)
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        summary = f"{len(snapshot.manifests)} releases, {len(snapshot.environments)} environments"
        status = f"{len(errors)} problem(s)" if errors else "valid"
        click.echo(f"{snapshot.revision[:12]}: {summary}: {status}")
    if errors:
        sys.exit(1)


def _quantum_findings(
    ctx: Context, git_repo: GitRepo, snapshot: Snapshot, *, compile_programs: bool
) -> Any:
    """Catalog, power and (unless skipped) compile checks of every release."""
    from qrelease.quantum.cache import ContentCache
    from qrelease.release_checks import check_releases

    backends: list[Any] = []

    def compiler() -> Any:
        from qrelease.quantum.qdk import QdkBackend
        from qrelease.quantum.sandbox import GatePool

        pool = GatePool(ctx.config.gates.limits(), preload=())  # compiling needs no estimator
        backends.append(QdkBackend(pool))
        return backends[-1]

    cache = ContentCache(ctx.state_dir / "cache" / "compile")
    try:
        return check_releases(
            git_repo, snapshot, cache=cache, compiler=compiler if compile_programs else None
        )
    finally:
        for backend in backends:
            backend.close()


def _source_errors(
    git_repo: GitRepo, snapshot: Snapshot, allowed: Sequence[str]
) -> list[LoadError]:
    """One error per package source outside the state dir that `[sources] allow` omits."""
    from qrelease.redaction import redact
    from qrelease.source.yamldoc import parse_mapping

    errors = []
    for name, env in sorted(snapshot.environments.items()):
        refusals = env.source_refusals(allowed)
        if refusals:
            path = snapshot.env_paths[name]
            doc = parse_mapping(git_repo.show_file(snapshot.revision, path) or b"{}")
            for field, problem in refusals:
                line = doc.line_of(tuple(field.split(".")))
                errors.append(LoadError(path, line, field, redact(problem)))
    return errors


def _progress(row: Any) -> None:
    """Print each rollout step as the engine records it."""
    from qrelease.model.vocabulary import Rollout

    if row.rollout == Rollout.RUNNING:
        click.echo(f"{row.env}/{row.app}: {row.step or row.message}", err=True)
    elif row.rollout == Rollout.FAILED and row.step:
        click.echo(f"{row.env}/{row.app}: {row.message}", err=True)


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


def _print_status(rows: list[Any], as_json: bool) -> None:
    if as_json:
        emit_json([row.as_json() for row in rows])
        return
    print_table(
        list(STATUS_COLUMNS),
        [
            [
                r.env,
                r.app,
                r.desired or "-",
                r.deployed or "-",
                str(r.sync),
                str(r.health),
                f"{r.rollout}" + (f" ({r.step})" if r.step else "") if r.rollout else "-",
                r.target or "-",
                str(r.availability),
                r.message,
            ]
            for r in rows
        ],
    )


@main.command("plan")
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to plan for.")
def plan_command(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    env_name: str | None,
    rev: str,
) -> None:
    """What a reconcile would do, per environment and app (nothing changes)."""
    from qrelease.wiring import engine

    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo, engine(git_repo, ctx.state_dir, store_url=ctx.store_url) as eng:
        snapshot, the_plan = eng.plan(rev, env_name)
        previews = eng.previews(snapshot, the_plan)
    for error in snapshot.errors:
        click.echo(str(error), err=True)
    rows = [
        [a.env, a.app, str(a.kind), a.from_version or "-", a.to_version or "-", a.reason]
        for a in the_plan.actions
    ]
    if ctx.as_json:
        emit_json(
            {
                "revision": the_plan.revision,
                "actions": [
                    {
                        **dict(
                            zip(["env", "app", "action", "from", "to", "reason"], row, strict=True)
                        ),
                        "what_if": previews.get((row[0], row[1]), []),
                    }
                    for row in rows
                ],
            }
        )
    else:
        click.echo(f"revision {the_plan.revision[:12]}: {len(the_plan.changes)} change(s)")
        print_table(["ENV", "APP", "ACTION", "FROM", "TO", "REASON"], rows)
        for (env_key, app_key), lines in sorted(previews.items()):
            click.echo(f"{env_key}/{app_key} what-if:")
            for line in lines or ["no changes"]:
                click.echo(f"  {line}")


@main.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to apply.")
@click.option(
    "--retry", is_flag=True, help="Also retry releases that failed a gate or health check here."
)
def reconcile(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    env_name: str | None,
    rev: str,
    retry: bool,
) -> None:
    """One reconcile pass, then print the resulting status; exit 1 until every change is live.

    Transient failures (a package source that could not be reached) are retried at once;
    releases that failed a gate or health check at this revision wait for a new revision
    unless --retry is given.
    """
    from qrelease.anchoring import anchor_chain
    from qrelease.daemon.lock import AlreadyRunningError, ControllerLock
    from qrelease.planning.planner import Retry
    from qrelease.wiring import engine, trusted_keys

    ctx = make_context(repo, state, config, as_json)
    mode = Retry.ALL if retry else Retry.TRANSIENT
    lock = ControllerLock(ctx.state_dir, role="reconcile")
    try:
        lock.acquire()
    except AlreadyRunningError as exc:
        _reconcile_through_controller(ctx, exc, env_name, rev, mode)
        return
    try:
        with (
            opened(ctx) as git_repo,
            engine(
                git_repo,
                ctx.state_dir,
                deploying=True,
                on_row=_progress,
                concurrency=ctx.config.concurrency,
                keys=trusted_keys(ctx.config),
                allowed_sources=ctx.config.sources.allow,
                store_url=ctx.store_url,
                gate_limits=ctx.config.gates.limits(),
            ) as eng,
        ):
            report = eng.reconcile(rev, env_name, mode)
            anchor_chain(eng.store, ctx.repo, ctx.state_dir, warn=_anchor_warning)
    finally:
        lock.release()
    for error in report.snapshot.errors:
        click.echo(str(error), err=True)
    _print_status(list(report.rows), ctx.as_json)
    if not report.converged:
        sys.exit(1)


def _anchor_warning(reason: str) -> None:
    """Anchoring the audit chain failed: the pass stands, the user is told why."""
    click.echo(f"warning: the audit chain was not anchored in Git: {reason}", err=True)


def _reconcile_through_controller(
    ctx: Context, held: Exception, env_name: str | None, rev: str, mode: Any
) -> None:
    """A controller holds the state dir: ask it for the pass and stream its progress."""
    from qrelease.daemon.api import ApiError, request_pass
    from qrelease.planning.status import StatusRow

    if getattr(held, "role", None) != "controller":
        raise Failed(f"{held}; try again when it has finished")
    if rev != "HEAD":
        raise Failed(f"{held}; it reconciles its own branch, so --rev cannot be used while it runs")
    click.echo(f"{held}: asking it to run the pass", err=True)
    try:
        report = request_pass(
            ctx.state_dir, env_name, mode, lambda row: _progress(StatusRow.from_json(row))
        )
    except ApiError as exc:
        raise Failed(str(exc)) from None
    for error in report["errors"]:
        click.echo(error, err=True)
    _print_status([StatusRow.from_json(row) for row in report["rows"]], ctx.as_json)
    if not report["converged"]:
        sys.exit(1)


@main.command()
@common_options
@click.option(
    "--env",
    "env_name",
    help="Also show what this environment pins (and, on Azure, the workspace's live view).",
)
def targets(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    env_name: str | None,
) -> None:
    """The target catalog: provider, profile, qubits, status, noise, source, date checked."""
    from qrelease.quantum import catalog

    ctx = make_context(repo, state, config, as_json)
    pinned: dict[str, list[str]] = {}
    live: list[Any] | None = None
    if env_name is not None:
        with opened(ctx) as git_repo:
            snapshot = load_snapshot(git_repo, "HEAD")
        env = snapshot.environments.get(env_name)
        if env is None:
            raise Failed(f"unknown or invalid environment {env_name!r} (see qrelease validate)")
        for app, (version, target) in sorted(snapshot.pins(env_name).items()):
            if target is not None:
                pinned.setdefault(target, []).append(f"{app[1]} {version}")
        live = _workspace_view(ctx, env)
    specs = sorted(catalog.TARGETS.values(), key=lambda spec: spec.target_id)
    if ctx.as_json:
        emit_json(
            {
                "catalog": [_target_json(spec, pinned) for spec in specs],
                "workspace": None if live is None else [_live_json(s) for s in live],
            }
        )
        return
    references = sorted(
        {spec.reference for spec in specs} | {spec.noise.reference for spec in specs if spec.noise}
    )
    print_table(
        [
            "TARGET",
            "PROVIDER",
            "KIND",
            "PROFILE",
            "QUBITS",
            "STATUS",
            "NOISE 1Q/2Q/RO",
            "SOURCE",
            "CHECKED",
            *(["PINNED BY"] if env_name else []),
        ],
        [_target_row(spec, references, pinned, env_name is not None) for spec in specs],
    )
    click.echo("\nsources:")
    for number, reference in enumerate(references, start=1):
        click.echo(f"  [{number}] {reference}")
    if live is not None:
        click.echo(f"\nworkspace view for {env_name} (live):")
        print_table(
            ["TARGET", "AVAILABILITY", "QUEUE", "PROFILE", "QUBITS", "CATALOG"],
            [_live_row(status) for status in live],
        )


def _workspace_view(ctx: Context, env: Any) -> list[Any] | None:
    """The Azure workspace's targets as the service reports them (None for local envs)."""
    from qrelease.model.environment import AzureQuantum
    from qrelease.wiring import LocalBackends

    if not isinstance(env.quantum, AzureQuantum):
        return None
    backend = LocalBackends(ctx.state_dir).quantum_for(env)
    try:
        return list(backend.workspace_targets())  # type: ignore[attr-defined]
    except Exception as exc:  # auth, outage or refusal: the message names which
        raise Failed(f"{env.environment}: cannot list the workspace's targets: {exc}") from None


def _noise_text(spec: Any) -> str:
    if spec.noise is None:
        return "ideal" if spec.noiseless else "-"
    noise = spec.noise
    return f"{noise.one_qubit:.1e}/{noise.two_qubit:.1e}/{noise.readout:.1e}"


def _target_row(
    spec: Any, references: list[str], pinned: dict[str, list[str]], with_pins: bool
) -> list[str]:
    sources = [references.index(spec.reference) + 1]
    if spec.noise is not None:
        sources.append(references.index(spec.noise.reference) + 1)
    row = [
        spec.target_id,
        spec.provider,
        spec.kind,
        str(spec.profile) if spec.profile else "no QIR",
        str(spec.qubits) if spec.qubits else "-",
        str(spec.status),
        _noise_text(spec),
        ",".join(f"[{n}]" for n in dict.fromkeys(sources)),
        spec.checked.isoformat(),
    ]
    return [*row, ", ".join(pinned.get(spec.target_id, [])) or "-"] if with_pins else row


def _target_json(spec: Any, pinned: dict[str, list[str]]) -> dict[str, Any]:
    noise = spec.noise
    return {
        "target": spec.target_id,
        "provider": spec.provider,
        "kind": spec.kind,
        "profile": None if spec.profile is None else str(spec.profile),
        "qubits": spec.qubits,
        "status": str(spec.status),
        "source": spec.reference,
        "checked": spec.checked.isoformat(),
        "note": spec.note,
        "noise": None
        if noise is None
        else {
            "one_qubit": noise.one_qubit,
            "two_qubit": noise.two_qubit,
            "readout": noise.readout,
            "source": noise.reference,
            "checked": noise.checked.isoformat(),
        },
        "pinned_by": pinned.get(spec.target_id, []),
    }


def _live_row(status: Any) -> list[str]:
    from qrelease.model.types import format_duration
    from qrelease.quantum import catalog

    known = catalog.TARGETS.get(status.target_id)
    return [
        status.target_id,
        str(status.availability),
        format_duration(status.queue_time) if status.queue_time is not None else "-",
        str(status.profile) if status.profile else "-",
        str(status.qubits) if status.qubits is not None else "-",
        str(known.status) if known else "not in catalog",
    ]


def _live_json(status: Any) -> dict[str, Any]:
    return {
        "target": status.target_id,
        "availability": str(status.availability),
        "queue_seconds": None if status.queue_time is None else status.queue_time.total_seconds(),
        "profile": None if status.profile is None else str(status.profile),
        "qubits": status.qubits,
        "message": status.message,
    }


@main.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
def status(
    repo: str | None, state: Path | None, config: Path | None, as_json: bool, env_name: str | None
) -> None:
    """Apps x environments: desired, deployed, sync, health, last rollout, target."""
    from qrelease.planning.status import status_rows
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo:
        snap = load_snapshot(git_repo, "HEAD")
    with open_state(ctx.state_dir, ctx.store_url) as store:
        recorded = [s for s in store.all_observed() if env_name in (None, s.env)]
        jobs = _live_jobs(store, snap.environments, recorded) if as_json else {}
    rows = status_rows(recorded, snap.pins(env_name), snap.revision)
    if as_json:  # each watched live release's quantum jobs, as /status shows them
        emit_json([row.as_json() | _jobs_of(jobs, row) for row in rows])
    else:
        _print_status(rows, as_json=False)


def _live_jobs(store: Any, environments: Any, recorded: Any) -> dict[Any, Any]:
    from datetime import UTC, datetime

    from qrelease.engine.monitor import live_jobs_json

    return live_jobs_json(store, environments, recorded, datetime.now(UTC))


def _jobs_of(jobs: dict[Any, Any], row: Any) -> dict[str, Any]:
    found = jobs.get(row.key)
    return {"quantum_jobs": found} if found and found["version"] == row.deployed else {}


def _promoter(ctx: Context) -> Any:
    from qrelease.wiring import open_state, promoter, trusted_keys

    store = open_state(ctx.state_dir, ctx.store_url)
    branch, keys = ctx.config.source.branch, trusted_keys(ctx.config)
    return promoter(ctx.repo, ctx.state_dir, store, branch=branch, trusted_keys=keys)


def _report(result: Any, as_json: bool) -> None:
    change = result.change
    if as_json:
        emit_json(
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


def _run_promotion(ctx: Context, call: Callable[[Any], Any]) -> None:
    from qrelease.promotion.promote import PromotionError

    promoter = _promoter(ctx)
    try:
        result = call(promoter)
    except (PromotionError, SourceError) as exc:
        raise Failed(str(exc)) from None
    finally:
        promoter.store.close()
    _report(result, ctx.as_json)


@main.command()
@common_options
@click.argument("app")
@click.option("--to", "env_name", required=True, help="Environment to promote into.")
@click.option("--version", "version", help="Release to pin (default: Healthy upstream).")
@click.option("--reason", required=True, help="Why; recorded in the commit and the audit log.")
@click.option("--actor", help="Commit author, 'Name <email>' (default: git config).")
@click.option("--force", is_flag=True, help="Override failed policy checks (recorded).")
def promote(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    force: bool,
) -> None:
    """Commit (and push) a new pin; policy checked first."""
    ctx = make_context(repo, state, config, as_json)
    _run_promotion(
        ctx, lambda p: p.promote(app, env_name, version, reason, actor=actor, force=force)
    )


@main.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment to roll back.")
@click.option("--to", "version", help="Release to pin (default: the last Healthy one there).")
@click.option("--reason", required=True, help="Why; recorded in the commit and the audit log.")
@click.option("--actor", help="Commit author, 'Name <email>' (default: git config).")
@click.option("--force", is_flag=True, help="Break glass: roll back during a freeze (recorded).")
def rollback(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
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
    ctx = make_context(repo, state, config, as_json)
    _run_promotion(
        ctx, lambda p: p.rollback(app, env_name, version, reason, actor=actor, force=force)
    )


def _suspension(
    ctx: Context, app: str, env_name: str, reason: str, actor: str | None, *, suspend: bool
) -> None:
    from qrelease.promotion.promote import PromotionError

    promoter = _promoter(ctx)
    try:
        if suspend:
            published = promoter.suspend(app, env_name, reason, actor=actor)
        else:
            published = promoter.resume(app, env_name, reason, actor=actor)
    except (PromotionError, SourceError) as exc:
        raise Failed(str(exc)) from None
    finally:
        promoter.store.close()
    word = "suspended" if suspend else "resumed"
    where = "pushed" if published.pushed else "committed locally (no remote)"
    if ctx.as_json:
        emit_json(
            {"action": word, "env": env_name, "app": app, "commit": published.commit,
             "pushed": published.pushed}
        )  # fmt: skip
    else:
        click.echo(f"{word} {app} in {env_name}: {published.commit[:12]} {where}")


@main.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment.")
@click.option("--reason", required=True, help="Why; recorded in the file, commit and audit log.")
@click.option("--actor", help="Commit author, 'Name <email>' (default: git config).")
def suspend(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    env_name: str,
    reason: str,
    actor: str | None,
) -> None:
    """Commit (and push) a suspension: the controller and auto-promotion leave the app alone.

    It adds `policy.suspended.<app>: <reason>` to the environment file. What runs keeps
    running; pin changes wait (status shows Suspended) until `qrelease resume`.
    """
    ctx = make_context(repo, state, config, as_json)
    _suspension(ctx, app, env_name, reason, actor, suspend=True)


@main.command()
@common_options
@click.argument("app")
@click.option("--env", "env_name", required=True, help="Environment.")
@click.option("--reason", required=True, help="Why; recorded in the commit and audit log.")
@click.option("--actor", help="Commit author, 'Name <email>' (default: git config).")
def resume(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    env_name: str,
    reason: str,
    actor: str | None,
) -> None:
    """Commit (and push) the end of a suspension: the controller applies the pin again."""
    ctx = make_context(repo, state, config, as_json)
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

    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, ctx.config.source.branch)
        env = snapshot.environments.get(env_name)
        if env is None:
            raise Failed(f"unknown or invalid environment {env_name!r} (see qrelease validate)")
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
    if ctx.as_json:
        emit_json(
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


@main.command()
@common_options
@approval_options
def approve(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    sign: bool,
) -> None:
    """Approve a release for an environment (signed Git data on refs/qrelease/approvals)."""
    ctx = make_context(repo, state, config, as_json)
    _record_approval(ctx, app, env_name, version, reason, actor, sign, approves=True)


@main.command()
@common_options
@approval_options
def reject(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    env_name: str,
    version: str | None,
    reason: str,
    actor: str | None,
    sign: bool,
) -> None:
    """Reject a release for an environment: it stays held until you approve it again."""
    ctx = make_context(repo, state, config, as_json)
    _record_approval(ctx, app, env_name, version, reason, actor, sign, approves=False)


@main.command()
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
    as_json: bool,
    env_name: str,
    at: Any,
) -> None:
    """Whether the environment accepts changes now, and when that next changes."""
    from datetime import UTC, datetime

    from qrelease.planning.windows import next_change, window_state

    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, ctx.config.source.branch)
    env = snapshot.environments.get(env_name)
    if env is None:
        raise Failed(f"unknown or invalid environment {env_name!r} (see qrelease validate)")
    now = at.replace(tzinfo=at.tzinfo or UTC) if at else datetime.now(UTC)
    state_now = window_state(env.policy, now)
    closes, opens = next_change(env.policy, now)
    if ctx.as_json:
        emit_json(
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


@main.command()
@common_options
@click.argument("app")
@click.argument("from_version")
@click.argument("to_version")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to read both from.")
def diff(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str,
    from_version: str,
    to_version: str,
    rev: str,
) -> None:
    """What changes between two releases of an app."""
    from qrelease.promotion.diff import UnknownReleaseError, diff_releases

    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, rev)
        try:
            result = diff_releases(git_repo, snapshot, app, from_version, to_version)
        except UnknownReleaseError as exc:
            raise Failed(str(exc)) from None
    if ctx.as_json:
        emit_json(
            {
                "app": app,
                "from": from_version,
                "to": to_version,
                "fields": [{"field": f, "from": a, "to": b} for f, a, b in result.fields],
                "program_diff": result.program_diff,
            }
        )
        return
    click.echo(f"{app} {from_version} -> {to_version}")
    print_table(
        ["FIELD", from_version, to_version],
        [list(row) for row in result.fields] or [["(no field changes)", "", ""]],
    )
    for line in result.program_diff:
        click.echo(line)


@main.command()
@common_options
@click.option("--env", "env_name", help="Only this environment.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    help="Only jobs from this time (ISO 8601, UTC unless a zone is given).",
)
def cost(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    env_name: str | None,
    since: Any,
) -> None:
    """Quantum spend by environment, app and month: verification jobs, priced and reported."""
    from datetime import UTC

    from qrelease.model.vocabulary import EventKind
    from qrelease.quantum.pricing import cost_rows
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, as_json)
    moment = since.replace(tzinfo=since.tzinfo or UTC) if since else None
    with open_state(ctx.state_dir, ctx.store_url) as store:
        events = store.iter_events(env=env_name, actions=[EventKind.GATE], since=moment)
        rows = cost_rows(events)
    if ctx.as_json:
        emit_json([row.as_json() for row in rows])
        return
    print_table(
        ["ENV", "APP", "MONTH", "JOBS", "REFUSED", "PRICED", "REPORTED", "CURRENCY"],
        [
            [
                row.env,
                row.app,
                row.month,
                str(row.jobs),
                str(row.refused),
                f"{row.priced:,.2f}" + (f" (+{row.unpriced} unpriced)" if row.unpriced else ""),
                f"{row.reported:,.2f}",
                row.currency,
            ]
            for row in rows
        ],
    )


@main.command()
@common_options
@click.option("--app", help="Only this app.")
@click.option("--env", "env_name", help="Only this environment.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    help="Only from this time (ISO 8601, UTC unless a zone is given).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def history(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    app: str | None,
    env_name: str | None,
    since: Any,
    fmt: str,
) -> None:
    """One timeline: who changed which pin (Git) and what the controller did."""
    import csv
    from datetime import UTC

    from qrelease.history import COLUMNS, timeline
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, as_json)
    moment = since.replace(tzinfo=since.tzinfo or UTC) if since else None
    store = open_state(ctx.state_dir, ctx.store_url)
    try:
        with opened(ctx) as git_repo:
            rows = [
                e.as_json()
                for e in timeline(
                    store, git_repo, _branch_rev(ctx, git_repo), env=env_name, app=app, since=moment
                )
            ]
    finally:
        store.close()
    if fmt == "json" or ctx.as_json:
        emit_json(rows)
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    else:
        shown = [
            "time",
            "env",
            "app",
            "action",
            "from_version",
            "to_version",
            "actor",
            "outcome",
            "reason",
        ]
        print_table(
            [c.upper() for c in shown],
            [
                [str(r[c] or "-")[:19] if c == "time" else str(r[c] or "-") for c in shown]
                for r in rows
            ],
        )


def _branch_rev(ctx: Context, git_repo: GitRepo) -> str:
    """The tracked branch if the repo has it, else HEAD."""
    try:
        return git_repo.resolve(ctx.config.source.branch)
    except SourceError:
        return "HEAD"


@main.group()
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
def audit_verify(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    as_json: bool,
    export_file: Path | None,
    controller_id: str | None,
) -> None:
    """Check the event chain, its anchors in Git and its links to Git; exit 1 on any break."""
    from qrelease.anchoring import read_controller_id
    from qrelease.history import ExportError, audit_export, audit_problems
    from qrelease.source.signatures import TrustedKeys
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, as_json)
    keys = TrustedKeys(ctx.config.verify.trusted_keys, ctx.config.verify.gpg_home)
    try:
        if export_file is not None:
            with opened(ctx) as git_repo:
                rev = _branch_rev(ctx, git_repo)
                findings = audit_export(
                    export_file, git_repo, rev, controller=controller_id, keys=keys
                )
        else:
            controller_id = controller_id or read_controller_id(ctx.state_dir)
            store = open_state(ctx.state_dir, ctx.store_url)
            try:
                with opened(ctx) as git_repo:
                    rev = _branch_rev(ctx, git_repo)
                    findings = audit_problems(
                        store, git_repo, rev, controller=controller_id, keys=keys
                    )
            finally:
                store.close()
    except (ExportError, SourceError) as exc:
        raise Failed(str(exc)) from None
    _print_findings(findings, ctx.as_json)


def _print_findings(findings: Any, as_json: bool) -> None:
    """Problems on stderr, notes and the summary on stdout (or all as JSON); exit 1 on a problem."""
    if as_json:
        emit_json(
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
@common_options
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (default: standard output).",
)
def audit_export_command(
    repo: str | None, state: Path | None, config: Path | None, as_json: bool, output: Path | None
) -> None:
    """Write the event chain as JSON Lines, to check offline with `audit verify --from-export`."""
    import tempfile
    from datetime import UTC, datetime

    from qrelease.anchoring import read_controller_id
    from qrelease.history import export_chain
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, as_json)
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


@main.group("store")
def store_group() -> None:
    """The controller's state store."""


@store_group.command("migrate")
@click.option(
    "--from",
    "from_url",
    required=True,
    metavar="URL",
    help="The store to copy: a state dir, sqlite:///PATH or postgresql://USER@HOST/DB.",
)
@click.option(
    "--to", "to_url", required=True, metavar="URL", help="The new, empty store to copy into."
)
@click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")
def store_migrate(from_url: str, to_url: str, as_json: bool) -> None:
    """Copy every row and the whole audit chain (hashes kept) into an empty store.

    Stop the controller first. Nothing is written unless the copy verifies; then point
    --store or the config's [store] url at the new store.
    """
    from qrelease.redaction import redact_url
    from qrelease.store import StoreError, open_store
    from qrelease.store.transfer import copy_store

    try:
        with (
            open_store(from_url, must_exist=True) as source,
            open_store(to_url) as target,
        ):
            copied = copy_store(source, target)
    except StoreError as exc:
        raise Failed(str(exc)) from None
    if as_json:
        emit_json(
            {
                "from": redact_url(from_url),
                "to": redact_url(to_url),
                "events": copied.events,
                "head_hash": copied.head_hash,
                "observed": copied.observed,
                "runs": copied.runs,
                "intents": copied.intents,
                "meta": copied.meta,
                "quantum_jobs": copied.jobs,
            }
        )
        return
    click.echo(
        f"copied {copied.events} events (head {copied.head_hash[:12]}), {copied.observed} "
        f"observed rows, {copied.runs} runs, {copied.intents} intents, {copied.meta} meta "
        f"keys and {copied.jobs} quantum jobs from {redact_url(from_url)} to {redact_url(to_url)}"
    )


@main.group()
def controller() -> None:
    """The controller daemon."""


@controller.command("run")
@click.option("--repo", help="GitOps repo path or URL (default: the config's source.url).")
@click.option("--state", type=click.Path(path_type=Path), help="State dir (default .qrelease/).")
@click.option("--config", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--interval", help="Poll interval, e.g. 30s (default: config, else 30s).")
@click.option("--listen", help="HTTP address for webhooks and probes, e.g. 127.0.0.1:8080.")
@click.option("--once", is_flag=True, help="One fetch and one pass, then exit (no HTTP server).")
@store_option
def controller_run(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    interval: str | None,
    listen: str | None,
    once: bool,
) -> None:
    """Run the controller: poll Git, receive webhooks, reconcile, serve /metrics."""
    from qrelease.daemon import run_controller
    from qrelease.model.types import parse_duration

    try:
        loaded = load_config(config)
        every = parse_duration(interval) if interval else None
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(
        run_controller(
            loaded,
            repo=repo,
            state_dir=state,
            interval=every,
            listen=listen,
            config_path=config,
            once=once,
            store_url=store_flag(),
        )
    )


@main.command()
@click.option(
    "--state", type=click.Path(path_type=Path), default=Path(".qrelease"), show_default=True
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True)
def demo(state: Path, listen: str) -> None:
    """Run the controller on a local demo remote made from the bundled examples."""
    from qrelease.examples.run import run_demo

    sys.exit(run_demo(state, listen))


@main.command()
@click.option("--repo", help="GitOps repo path or URL (default: config, else .).")
@click.option("--state", type=click.Path(path_type=Path), help="State dir (default .qrelease/).")
@click.option("--config", type=click.Path(path_type=Path), help="TOML config file.")
@store_option
def tui(repo: str | None, state: Path | None, config: Path | None) -> None:
    """The Textual UI: watch, promote and roll back."""
    from qrelease.tui.app import run_tui

    ctx = make_context(repo, state, config, False)
    from qrelease.wiring import trusted_keys

    keys = trusted_keys(ctx.config)
    sys.exit(run_tui(ctx.repo, ctx.state_dir, ctx.config.source.branch, ctx.store_url, keys))
