"""Two rules every surface needs, written once: what runs Healthy, and each gate's newest result.

Promotion, auto-promotion, the TUI's board and dialogs, the policy checks and the engine's
estimate baseline all ask these questions; they all ask here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from qrelease.model.events import Event
from qrelease.model.vocabulary import EventKind, Health

GATE_EVENTS_SCANNED = 500
"""How many of an (env, app)'s newest gate events a caller reads to find each gate's newest."""


@dataclass(frozen=True)
class GateLine:
    """The newest result of one quantum gate for one release."""

    gate: str
    outcome: str
    message: str
    qir_sha256: str | None
    details: dict[str, Any] = field(default_factory=dict, compare=False)


class Running(Protocol):
    """Anything that says what runs and how it is: a recorded state or a status row."""

    @property
    def deployed(self) -> str | None:
        """The release that runs, if any."""
        ...

    @property
    def health(self) -> Health:
        """Its health."""
        ...


def healthy_release(state: Running | None) -> str | None:
    """The release that runs Healthy according to `state` (a row or a recorded state), or None.

    >>> from qrelease.model.observed import ObservedState
    >>> healthy_release(ObservedState(env="dev", app="a", deployed="1.0.0", health=Health.HEALTHY))
    '1.0.0'
    >>> healthy_release(ObservedState(env="dev", app="a", deployed="1.0.0", health=Health.UNKNOWN))
    """
    if state is None or state.deployed is None or state.health != Health.HEALTHY:
        return None
    return state.deployed


def newest_gates(events_newest_first: Iterable[Event], version: str) -> tuple[GateLine, ...]:
    """Each gate's newest result for `version`, by gate name, from events newest first."""
    latest: dict[str, GateLine] = {}
    for event in events_newest_first:
        if event.action != EventKind.GATE or event.to_version != version:
            continue
        gate = str(event.details.get("gate", ""))
        if gate and gate not in latest:
            message = str(event.details.get("message", event.reason))
            sha = event.details.get("qir_sha256")
            latest[gate] = GateLine(
                gate, event.outcome, message, str(sha) if sha else None, dict(event.details)
            )
    return tuple(sorted(latest.values(), key=lambda line: line.gate))
