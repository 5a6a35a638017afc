"""What every command shares: the global options, the resolved context, errors and names.

Only click and the standard library are imported here at module level: a command imports
what it uses inside its own body, so `qrelease --version` and `qrelease completion` start
without Git, pydantic or the store (tests/unit/test_import_hygiene.py checks it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from qrelease.cli.output import OUTPUT_FORMATS, Output, output_option

if TYPE_CHECKING:
    from qrelease.config import ControllerConfig
    from qrelease.source.loader import Snapshot
    from qrelease.source.repo import GitRepo

F = TypeVar("F", bound=Callable[..., Any])
_STORE_FLAG = "qrelease.store_url"
"""Where the --store flag's value waits in click's context until `make_context` reads it."""

__all__ = ["OUTPUT_FORMATS", "Output"]


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
    output: Output
    store_url: str | None = None
    """The store's URL (flag, else config); None means the state dir's SQLite file."""

    @property
    def as_json(self) -> bool:
        """True when data goes out as JSON (`-o json` or `--json`)."""
        return self.output.name == "json"


def _remember_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Keep --store for `make_context`, refusing a URL form no store backend knows."""
    if value is not None:
        from qrelease.store import StoreError, check_location

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


def location_options(command: F) -> F:
    """--repo, --state, --config and --store: where the repo, the state and the config are."""
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


def common_options(command: F) -> F:
    """The global options of every command that prints data: locations and `-o FORMAT`."""
    return location_options(output_option(command))


def make_context(
    repo: str | None, state: Path | None, config: Path | None, output: Output
) -> Context:
    """Merge flags over the config file over the defaults."""
    from qrelease.config import ConfigError, load_config

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise Failed(str(exc)) from None
    return Context(
        repo=repo or loaded.source.url or ".",
        state_dir=state or loaded.state_dir,
        config=loaded,
        output=output,
        store_url=store_flag() or loaded.store.url,
    )


@contextmanager
def opened(ctx: Context) -> Iterator[GitRepo]:
    """The GitOps repo, closed afterwards; source problems become exit 1."""
    from qrelease.source.repo import SourceError
    from qrelease.source.workspace import open_repo

    try:
        repo = open_repo(ctx.repo, ctx.state_dir)
    except SourceError as exc:
        raise Failed(str(exc)) from None
    try:
        yield repo
    finally:
        repo.close()


def load_snapshot(repo: GitRepo, rev: str, state_dir: Path) -> Snapshot:
    """Load the desired state at a revision through the state dir's parse cache.

    Source problems become exit 1.
    """
    from qrelease.source.loader import Loader
    from qrelease.source.repo import SourceError
    from qrelease.store import open_parse_cache

    with open_parse_cache(state_dir) as cache:
        try:
            return Loader(repo, cache=cache).load(rev)
        except SourceError as exc:
            raise Failed(str(exc)) from None


def branch_rev(ctx: Context, git_repo: GitRepo) -> str:
    """The tracked branch if the repo has it, else HEAD."""
    from qrelease.source.repo import SourceError

    try:
        return git_repo.resolve(ctx.config.source.branch)
    except SourceError:
        return "HEAD"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean X?` when a known name is close to `name`, else nothing.

    >>> did_you_mean("stagin", ["dev", "staging", "prod"])
    '; did you mean staging?'
    >>> did_you_mean("zzz", ["dev"])
    ''
    """
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(close) + "?"


def unknown(kind: str, name: str, known: Iterable[str], hint: str = "") -> Failed:
    """The error for a name that is not there, with the closest known ones."""
    names = sorted(set(known))
    listed = f" (known: {', '.join(names)})" if names and len(names) <= 12 else ""
    suggestion = did_you_mean(name, names)
    return Failed(f"unknown {kind} {name!r}{suggestion or listed}{hint}")


def check_names(snapshot: Snapshot, env_name: str | None, app: str | None) -> None:
    """Exit 1 with a suggestion when --env or the app names nothing in the snapshot."""
    if env_name is not None and env_name not in snapshot.environments:
        known = [*snapshot.environments, *snapshot.broken_envs]
        if env_name not in known:
            raise unknown("environment", env_name, known)
    if app is not None:
        apps = {name for name, _ in snapshot.manifests} | {
            pinned for env in snapshot.environments.values() for pinned in env.apps
        }
        if app not in apps:
            raise unknown("app", app, apps)
