"""Commands about the GitOps repo itself: `init`, `validate`, `check` and `diff`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from qrelease.cli.output import print_table

if TYPE_CHECKING:
    from qrelease.source.loader import LoadError, Snapshot
    from qrelease.source.repo import GitRepo


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--example",
    type=click.Choice(["apps", "languages"]),
    is_flag=False,
    flag_value="apps",
    default=None,
    help="Fill it with bundled examples: the Q# apps (apps, the default) or an OpenQASM 3 "
    "and a Qiskit app (languages).",
)
def init(directory: Path, example: str | None) -> None:
    """Create a new GitOps repo (git init + first commit)."""
    from qrelease.examples.scaffold import initial_files
    from qrelease.source.repo import SourceError
    from qrelease.source.writer import init_repo

    files = initial_files(example is not None, example or "apps")
    try:
        revision = init_repo(directory, files, "Initial qrelease layout")
    except SourceError as exc:
        raise Failed(str(exc)) from None
    what = {None: "", "apps": " with the example apps", "languages": " with the languages example"}
    click.echo(f"Created {directory} at {revision[:12]}{what[example]}")


@click.command()
@common_options
@click.option("--rev", default="HEAD", show_default=True, help="Revision to check.")
@click.option("--no-compile", is_flag=True, help="Skip compiling each release's program with qdk.")
def validate(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    rev: str,
    no_compile: bool,
) -> None:
    """Check every manifest and environment file at a revision (and compile each program)."""
    ctx = make_context(repo, state, config, output)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, rev, ctx.state_dir)
        sources = _source_errors(git_repo, snapshot, ctx.config.sources.allow)
        findings = _quantum_findings(ctx, git_repo, snapshot, compile_programs=not no_compile)
    errors = sorted({*snapshot.errors, *sources, *findings.errors})
    warnings = sorted(set(findings.warnings))
    if output.structured:
        output.emit(
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


@click.command()
@common_options
@click.option(
    "--base",
    default="HEAD~1",
    show_default=True,
    help="The branch the change goes into (compared at its merge base with --head).",
)
@click.option("--head", "head_rev", default="HEAD", show_default=True, help="Revision to check.")
@click.option("--junit", type=click.Path(path_type=Path), help="Also write JUnit XML here.")
@click.option(
    "--record",
    is_flag=True,
    help="Keep the verdicts in Git (refs/qrelease/reviews, pushed to origin) for the controller.",
)
@click.option("--sign", is_flag=True, help="Sign the recorded verdicts with your git signing key.")
@click.option(
    "--actor", help="Author of the recorded verdicts, 'Name <email>' (default: git config)."
)
def check(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    base: str,
    head_rev: str,
    junit: Path | None,
    record: bool,
    sign: bool,
    actor: str | None,
) -> None:
    """Validate, then run the quantum gates of every release changed since --base.

    For pull requests: nothing is deployed and no environment's state is read or written.
    With --record, each release's verdict is kept in Git, bound to the release's digest and
    QIR: the controller shows it, and environments with `policy.reuse_review` reuse it.
    Exit 1 when validation or any gate fails.
    """
    from qrelease import review
    from qrelease.quantum.cache import GateCache
    from qrelease.quantum.qdk import QdkBackend
    from qrelease.quantum.sandbox import GatePool
    from qrelease.source.repo import SourceError

    ctx = make_context(repo, state, config, output)
    backends: list[QdkBackend] = []

    def runner() -> QdkBackend:
        cache = GateCache(ctx.state_dir / "cache" / "gates")
        backends.append(QdkBackend(GatePool(ctx.config.gates.limits()), cache=cache))
        return backends[-1]

    def validate(snapshot: Snapshot) -> tuple[list[LoadError], list[LoadError]]:
        sources = _source_errors(git_repo, snapshot, ctx.config.sources.allow)
        findings = _quantum_findings(ctx, git_repo, snapshot, compile_programs=True)
        return [*snapshot.errors, *sources, *findings.errors], list(findings.warnings)

    recorded: list[tuple[Any, str]] = []
    with opened(ctx) as git_repo:
        try:
            report = review.check(git_repo, base, head_rev, validate=validate, runner=runner)
            if record:
                recorded = review.record_verdicts(git_repo, report, actor=actor, sign=sign)
        except SourceError as exc:
            raise Failed(str(exc)) from None
        finally:
            for backend in backends:
                backend.close()
    if junit is not None:
        junit.write_bytes(review.junit_xml(report))
    if output.structured:
        data = review.as_json(report)
        commits = {id(verdict): commit for verdict, commit in recorded}
        for verdict, entry in zip(report.verdicts, data["releases"], strict=True):
            entry["review_commit"] = commits.get(id(verdict))
        output.emit(data)
    else:
        _print_check(report)
        for verdict, commit in recorded:
            click.echo(f"recorded the verdict of {verdict.release.name} as {commit[:12]}")
    if not report.ok:
        sys.exit(1)


def _print_check(report: Any) -> None:
    """Validation problems and each changed release's gates, then a summary line."""
    from qrelease.review import result_line

    for problem in report.problems:
        click.echo(str(problem), err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for verdict in report.verdicts:
        click.echo(f"{verdict.release.name}: {'; '.join(verdict.release.reasons)}")
        for result in verdict.results:
            click.echo(f"  {result_line(verdict.release, result)}")
    failed = sum(1 for verdict in report.verdicts if not verdict.passed)
    changed = f"{len(report.verdicts)} changed release(s) since {report.merge_base[:12]}"
    status = "passed" if report.ok else f"{len(report.problems)} problem(s), {failed} failed"
    click.echo(f"{report.head[:12]}: {changed}: {status}")


def _quantum_findings(
    ctx: Context, git_repo: GitRepo, snapshot: Snapshot, *, compile_programs: bool
) -> Any:
    """Catalog, power and (unless skipped) compile checks of every release."""
    from qrelease.quantum.cache import ContentCache
    from qrelease.release_checks import check_releases
    from qrelease.store import open_parse_cache

    backends: list[Any] = []

    def compiler() -> Any:
        from qrelease.quantum.qdk import QdkBackend
        from qrelease.quantum.sandbox import GatePool

        pool = GatePool(ctx.config.gates.limits(), preload=())  # compiling needs no estimator
        backends.append(QdkBackend(pool))
        return backends[-1]

    cache = ContentCache(ctx.state_dir / "cache" / "compile")
    try:
        with open_parse_cache(ctx.state_dir) as lines:
            return check_releases(
                git_repo,
                snapshot,
                cache=cache,
                compiler=compiler if compile_programs else None,
                lines=lines,
            )
    finally:
        for backend in backends:
            backend.close()


def _source_errors(
    git_repo: GitRepo, snapshot: Snapshot, allowed: Sequence[str]
) -> list[LoadError]:
    """One error per package source outside the state dir that `[sources] allow` omits."""
    from qrelease.redaction import redact
    from qrelease.source.loader import LoadError
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


@click.command()
@common_options
@click.argument("app")
@click.argument("from_version")
@click.argument("to_version")
@click.option("--rev", default="HEAD", show_default=True, help="Revision to read both from.")
def diff(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    app: str,
    from_version: str,
    to_version: str,
    rev: str,
) -> None:
    """What changes between two releases of an app."""
    from qrelease.promotion.diff import UnknownReleaseError, diff_releases

    ctx = make_context(repo, state, config, output)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, rev, ctx.state_dir)
        check_names(snapshot, None, app)
        try:
            result = diff_releases(git_repo, snapshot, app, from_version, to_version)
        except UnknownReleaseError as exc:
            raise Failed(str(exc)) from None
    if output.structured:
        output.emit(
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
