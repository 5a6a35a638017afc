"""Commands about quantum targets and spend: `targets` (the catalog) and `cost`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from qrelease.cli.common import (
    Context,
    Failed,
    Output,
    check_names,
    common_options,
    load_snapshot,
    location_options,
    make_context,
    opened,
)
from qrelease.cli.history import since_option
from qrelease.cli.output import output_formats, print_table


@click.command()
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
    output: Output,
    env_name: str | None,
) -> None:
    """The target catalog: provider, profile, qubits, status, noise, source, date checked."""
    from qrelease.quantum import catalog

    ctx = make_context(repo, state, config, output)
    pinned: dict[str, list[str]] = {}
    live: list[Any] | None = None
    if env_name is not None:
        with opened(ctx) as git_repo:
            snapshot = load_snapshot(git_repo, "HEAD", ctx.state_dir)
        check_names(snapshot, env_name, None)
        env = snapshot.environments.get(env_name)
        if env is None:
            raise Failed(f"invalid environment {env_name!r} (see qrelease validate)")
        for app, (version, target) in sorted(snapshot.pins(env_name).items()):
            if target is not None:
                pinned.setdefault(target, []).append(f"{app[1]} {version}")
        live = _workspace_view(ctx, env)
    specs = sorted(catalog.TARGETS.values(), key=lambda spec: spec.target_id)
    if output.structured:
        output.emit(
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
            *(["NOTE"] if output.wide else []),
        ],
        [
            _target_row(spec, references, pinned, env_name is not None, output.wide)
            for spec in specs
        ],
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
    spec: Any, references: list[str], pinned: dict[str, list[str]], with_pins: bool, wide: bool
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
    if with_pins:
        row.append(", ".join(pinned.get(spec.target_id, [])) or "-")
    if wide:
        row.append(spec.note or "-")
    return row


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


@click.command()
@location_options
@output_formats("table", "json", "yaml")
@click.option("--env", "env_name", help="Only this environment.")
@since_option("Only jobs from this time")
def cost(
    repo: str | None,
    state: Path | None,
    config: Path | None,
    output: Output,
    env_name: str | None,
    since: datetime | None,
) -> None:
    """Quantum spend by environment, app and month: verification jobs, priced and reported."""
    from qrelease.model.vocabulary import EventKind
    from qrelease.quantum.pricing import cost_rows
    from qrelease.wiring import open_state

    ctx = make_context(repo, state, config, output)
    with open_state(ctx.state_dir, ctx.store_url) as store:
        events = store.iter_events(env=env_name, actions=[EventKind.GATE], since=since)
        rows = cost_rows(events)
    if output.structured:
        output.emit([row.as_json() for row in rows])
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
