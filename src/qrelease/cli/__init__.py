"""The `qrelease` command line: parses, calls, prints (a table, or `-o json|yaml|wide`).

Exit codes: 0 success, 1 what was asked failed, 2 usage error. Errors go to stderr, one
line per problem, beginning with the file path where there is one.

Every command lives in a module of this package, listed in `COMMANDS` and imported only
when it runs, so a command pays for what it uses and nothing else (`qrelease --version`
imports click and this file). To add a command, write it in a module here (one per
command group), keep that module's top-level imports to click and `qrelease.cli.common`,
and add one line to `COMMANDS`.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from qrelease import __version__

COMMANDS: dict[str, str] = {
    "init": "qrelease.cli.repo:init",
    "validate": "qrelease.cli.repo:validate",
    "check": "qrelease.cli.repo:check",
    "diff": "qrelease.cli.repo:diff",
    "plan": "qrelease.cli.reconcile:plan_command",
    "reconcile": "qrelease.cli.reconcile:reconcile",
    "sync": "qrelease.cli.reconcile:sync",
    "status": "qrelease.cli.status:status",
    "get": "qrelease.cli.status:get",
    "wait": "qrelease.cli.status:wait",
    "promote": "qrelease.cli.promotion:promote",
    "rollback": "qrelease.cli.promotion:rollback",
    "suspend": "qrelease.cli.promotion:suspend",
    "resume": "qrelease.cli.promotion:resume",
    "approve": "qrelease.cli.promotion:approve",
    "reject": "qrelease.cli.promotion:reject",
    "windows": "qrelease.cli.promotion:windows",
    "targets": "qrelease.cli.quantum:targets",
    "cost": "qrelease.cli.quantum:cost",
    "history": "qrelease.cli.history:history",
    "audit": "qrelease.cli.history:audit",
    "store": "qrelease.cli.store:store_group",
    "controller": "qrelease.cli.daemon:controller",
    "worker": "qrelease.cli.daemon:worker",
    "demo": "qrelease.cli.daemon:demo",
    "tui": "qrelease.cli.daemon:tui",
    "version": "qrelease.cli.meta:version",
    "completion": "qrelease.cli.meta:completion",
}
"""Command name -> `module:attribute` of its click command, loaded on first use."""


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is used.

    This is the pattern of click's documentation ("Lazily Loading Subcommands").
    """

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, eager and lazy, sorted."""
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module when it is a lazy one."""
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command named first in `args`; a misspelt one is refused with the closest names."""
        name = args[0] if args else ""
        looks_like_a_command = name[:1] not in ("", "-") and not ctx.resilient_parsing
        if looks_like_a_command and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            ctx.fail(f"No such command {name!r}{hint}")
        return super().resolve_command(ctx, args)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="qrelease")
def main() -> None:
    """qrelease: GitOps releases for hybrid quantum/classical apps."""
