"""`qrelease store`: the controller's state store (moving it between SQLite and PostgreSQL)."""

from __future__ import annotations

import click

from qrelease.cli.common import Failed, Output
from qrelease.cli.output import output_formats


@click.group("store")
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
@output_formats("table", "json", "yaml")
def store_migrate(from_url: str, to_url: str, output: Output) -> None:
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
    if output.structured:
        output.emit(
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
