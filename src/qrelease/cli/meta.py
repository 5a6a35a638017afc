"""About qrelease itself: `version` (this client and the running controller) and `completion`."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import click

from qrelease import __version__
from qrelease.cli.common import Output
from qrelease.cli.output import output_formats

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_QRELEASE_COMPLETE"
CONTROLLER_TIMEOUT = 2.0


def controller_version(state_dir: Path) -> dict[str, Any]:
    """What the controller serving `state_dir` says about itself, or why it cannot say."""
    from qrelease.daemon.api import read_endpoint

    endpoint = read_endpoint(state_dir)
    if endpoint is None:
        return {"reachable": False, "reason": f"no controller serves {state_dir}"}
    url, _ = endpoint
    import httpx

    try:
        answer = httpx.get(f"{url}/healthz", timeout=CONTROLLER_TIMEOUT)
        answer.raise_for_status()
        body = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        return {"reachable": False, "url": url, "reason": f"{url} did not answer: {error}"}
    return {"reachable": True, "url": url, "version": body.get("version"), "pid": body.get("pid")}


@click.command()
@click.option(
    "--state",
    type=click.Path(path_type=Path),
    help="State dir of the controller to ask (default: config, else .qrelease/).",
)
@click.option("--config", type=click.Path(path_type=Path), help="TOML config file.")
@output_formats("table", "json", "yaml")
def version(state: Path | None, config: Path | None, output: Output) -> None:
    """This client's version, and the running controller's when it can be reached."""
    from qrelease.cli.common import make_context

    ctx = make_context(None, state, config, output)
    client = {"version": __version__, "python": platform.python_version()}
    server = controller_version(ctx.state_dir)
    if output.structured:
        output.emit({"client": client, "controller": server})
        return
    click.echo(f"client      qrelease {__version__} (Python {client['python']})")
    if server["reachable"]:
        pid = f", pid {server['pid']}" if server.get("pid") else ""
        click.echo(
            f"controller  qrelease {server['version'] or '(unknown)'} at {server['url']}{pid}"
        )
    else:
        click.echo(f"controller  not reachable: {server['reason']}")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script (click's) for bash, zsh or fish.

    \b
    bash:  eval "$(qrelease completion bash)"        (or save it in ~/.bash_completion.d/)
    zsh:   eval "$(qrelease completion zsh)"         (in ~/.zshrc, after compinit)
    fish:  qrelease completion fish > ~/.config/fish/completions/qrelease.fish
    """
    from click.shell_completion import get_completion_class

    from qrelease.cli import main

    completer = get_completion_class(shell)
    if completer is None:  # click ships all three; a stripped install might not
        raise click.UsageError(f"click has no completion for {shell}")
    click.echo(completer(main, {}, "qrelease", COMPLETE_VAR).source())
