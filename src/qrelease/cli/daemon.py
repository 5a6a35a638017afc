"""Long-running surfaces: `controller run`, the `demo` that `make run` starts, and `tui`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from qrelease.cli.common import Output, make_context, store_flag, store_option


@click.group()
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
    from qrelease.config import ConfigError, load_config
    from qrelease.daemon import run_controller
    from qrelease.examples.wheelhouse import example_wheelhouse
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
            wheelhouse=example_wheelhouse(),
        )
    )


@click.command()
@click.option(
    "--state", type=click.Path(path_type=Path), default=Path(".qrelease"), show_default=True
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True)
def demo(state: Path, listen: str) -> None:
    """Run the controller on a local demo remote made from the bundled examples."""
    from qrelease.examples.run import run_demo

    sys.exit(run_demo(state, listen))


@click.command()
@click.option("--repo", help="GitOps repo path or URL (default: config, else .).")
@click.option("--state", type=click.Path(path_type=Path), help="State dir (default .qrelease/).")
@click.option("--config", type=click.Path(path_type=Path), help="TOML config file.")
@store_option
def tui(repo: str | None, state: Path | None, config: Path | None) -> None:
    """The Textual UI: watch, promote and roll back."""
    from qrelease.tui.app import run_tui
    from qrelease.wiring import trusted_keys

    ctx = make_context(repo, state, config, Output())
    keys = trusted_keys(ctx.config)
    sys.exit(run_tui(ctx.repo, ctx.state_dir, ctx.config.source.branch, ctx.store_url, keys))


@click.command()
@click.option("--state", type=click.Path(path_type=Path), help="State dir (default .qrelease/).")
@click.option("--config", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--name", help="This worker's name in each job's record (default worker@HOST:PID).")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between reads of an empty queue.",
)
@click.option("--once", is_flag=True, help="Run the jobs waiting now, then exit.")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Exit after this many jobs.")
@store_option
def worker(
    state: Path | None,
    config: Path | None,
    name: str | None,
    poll: float,
    once: bool,
    max_jobs: int | None,
) -> None:
    """Run quantum gate jobs from the store for controllers with [gates] queue = true."""
    from datetime import timedelta

    from qrelease.daemon.worker import WorkerOptions, run_worker

    ctx = make_context(None, state, config, Output())
    every = timedelta(seconds=poll)
    options = WorkerOptions(poll=every, once=once, max_jobs=max_jobs)
    if name:
        options = WorkerOptions(name=name, poll=every, once=once, max_jobs=max_jobs)
    settings = ctx.config.model_copy(update={"state_dir": ctx.state_dir})
    sys.exit(run_worker(settings, ctx.store_url, options))
