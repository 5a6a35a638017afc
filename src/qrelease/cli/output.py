"""How commands print data: `-o table|wide|json|yaml` (and `--json`, kept as an alias).

A command builds its data once as plain values; `table` and `wide` render it as aligned
columns (`wide` adds columns), `json` and `yaml` print the same values whole, so scripts
get every field whichever format they pick.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

F = TypeVar("F", bound=Callable[..., Any])
OUTPUT_FORMATS = ("table", "wide", "json", "yaml")


@dataclass(frozen=True)
class Output:
    """The format one invocation prints data in."""

    name: str = "table"

    @property
    def structured(self) -> bool:
        """True for json and yaml: the data whole, for scripts."""
        return self.name in ("json", "yaml")

    @property
    def wide(self) -> bool:
        """True for `-o wide`: the table with every column."""
        return self.name == "wide"

    def emit(self, data: object) -> None:
        """Print data as JSON or YAML on stdout."""
        if self.name == "yaml":
            import yaml

            plain = json.loads(json.dumps(data, default=str))
            click.echo(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True), nl=False)
        else:
            click.echo(json.dumps(data, indent=2, default=str))


def output_option(command: F) -> F:
    """Add `-o/--output table|wide|json|yaml` and `--json`; the command receives `output`."""
    return output_formats(*OUTPUT_FORMATS)(command)


def output_formats(*formats: str) -> Callable[[F], F]:
    """Add `-o/--output` with these formats and `--json`; the command receives `output`."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def combined(*args: Any, output_name: str, as_json: bool, **kwargs: Any) -> Any:
            if as_json and output_name not in ("table", "json"):
                raise click.UsageError(f"--json and -o {output_name} ask for different formats")
            return function(*args, output=Output("json" if as_json else output_name), **kwargs)

        with_json = click.option(
            "--json", "as_json", is_flag=True, help="Print data as JSON (same as -o json)."
        )(combined)
        with_output = click.option(
            "-o",
            "--output",
            "output_name",
            type=click.Choice(list(formats)),
            default="table",
            show_default=True,
            help="Output format.",
        )(with_json)
        return cast(F, with_output)

    return decorate


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
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


def emit_json(data: object) -> None:
    """Print data as indented JSON on stdout."""
    Output("json").emit(data)
