"""The `qrelease` command line: parses, calls, prints (a table, or JSON with --json).

Exit codes: 0 success, 1 what was asked failed, 2 usage error. Errors go to stderr, one
line per problem, beginning with the file path where there is one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from qrelease.config import ConfigError, ControllerConfig, load_config
from qrelease.source.loader import Loader, Snapshot
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.workspace import open_repo

F = TypeVar("F", bound=Callable[..., Any])


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


def common_options(command: F) -> F:
    """The global options every command accepts."""
    command = click.option("--json", "as_json", is_flag=True, help="Print data as JSON.")(command)
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
    from qrelease.scaffold import initial_files
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
def validate(
    repo: str | None, state: Path | None, config: Path | None, as_json: bool, rev: str
) -> None:
    """Check every manifest and environment file at a revision."""
    ctx = make_context(repo, state, config, as_json)
    with opened(ctx) as git_repo:
        snapshot = load_snapshot(git_repo, rev)
    if ctx.as_json:
        emit_json(
            {
                "revision": snapshot.revision,
                "ok": snapshot.ok,
                "manifests": len(snapshot.manifests),
                "environments": len(snapshot.environments),
                "errors": [vars(error) for error in snapshot.errors],
            }
        )
    else:
        for error in snapshot.errors:
            click.echo(str(error), err=True)
        summary = f"{len(snapshot.manifests)} releases, {len(snapshot.environments)} environments"
        status = "valid" if snapshot.ok else f"{len(snapshot.errors)} problem(s)"
        click.echo(f"{snapshot.revision[:12]}: {summary}: {status}")
    if not snapshot.ok:
        sys.exit(1)
