"""Promotion policy: every check by name, pass or fail, decided from values alone.

A refusal names every failed check, never just the first, so a release manager can see
at once what stands between a release and an environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from qrelease.model.environment import Environment
from qrelease.model.observed import ObservedState
from qrelease.model.types import format_duration
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.planning.upstream import GateLine, healthy_release


@dataclass(frozen=True)
class Check:
    """One named policy check and what it found."""

    name: str
    passed: bool
    detail: str

    def render(self) -> str:
        """`✓ name: detail` or `✗ name: detail`."""
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Evidence:
    """What the policy needs to know about a promotion, gathered by the caller."""

    version: str
    target: Environment
    upstream: str | None
    upstream_state: ObservedState | None
    upstream_gates: Sequence[GateLine]
    target_id: str | None
    availability: Availability
    now: datetime


def promotion_checks(evidence: Evidence) -> list[Check]:
    """The checks a promotion must pass: upstream health and soak, gates, windows, target."""
    checks = [_window(evidence)]
    if evidence.upstream is not None:
        checks[:0] = [_upstream_healthy(evidence), _soaked(evidence), _gates_passed(evidence)]
    checks.append(_target(evidence))
    return checks


def failed(checks: Sequence[Check]) -> list[Check]:
    """The checks that did not pass."""
    return [check for check in checks if not check.passed]


def _upstream_healthy(evidence: Evidence) -> Check:
    state, upstream = evidence.upstream_state, evidence.upstream
    if state is None or state.deployed != evidence.version:
        running = state.deployed if state else "nothing"
        return Check(
            "upstream-healthy", False, f"{upstream} runs {running}, not {evidence.version}"
        )
    if healthy_release(state) != evidence.version:
        return Check(
            "upstream-healthy", False, f"{evidence.version} is {state.health} in {upstream}"
        )
    return Check("upstream-healthy", True, f"{evidence.version} is Healthy in {upstream}")


def _soaked(evidence: Evidence) -> Check:
    soak = evidence.target.policy.soak
    state = evidence.upstream_state
    running_healthy = state is not None and healthy_release(state) == evidence.version
    since = state.healthy_since if state is not None and running_healthy else None
    if since is None:
        return Check(
            "soak", False, f"not Healthy in {evidence.upstream}, soak {format_duration(soak)}"
        )
    healthy_for = evidence.now - since
    detail = (
        f"Healthy in {evidence.upstream} for {_ago(healthy_for)} (soak {format_duration(soak)})"
    )
    return Check("soak", healthy_for >= soak, detail)


def _gates_passed(evidence: Evidence) -> Check:
    digest = evidence.upstream_state.qir_sha256 if evidence.upstream_state else None
    matching = [line for line in evidence.upstream_gates if line.qir_sha256 == digest]
    if digest is None or not matching:
        return Check(
            "upstream-gates",
            False,
            f"no gate results for {evidence.version} in {evidence.upstream}",
        )
    good = (GateOutcome.PASSED, GateOutcome.SKIPPED)
    bad = [f"{line.gate} {line.outcome}" for line in matching if line.outcome not in good]
    detail = "; ".join(bad) if bad else f"all gates passed for QIR {digest[:12]}"
    return Check("upstream-gates", not bad, detail)


def _window(evidence: Evidence) -> Check:
    policy, now = evidence.target.policy, evidence.now
    for freeze in policy.freezes:
        if freeze.start <= now < freeze.end:
            return Check("window", False, f"frozen until {freeze.end.isoformat()}: {freeze.reason}")
    for window in policy.windows:
        if window.covers(now):
            days = ",".join(window.days)
            reason = f": {window.reason}" if window.reason else ""
            return Check(
                "window", False, f"deny window {days} {window.start}-{window.end} UTC{reason}"
            )
    return Check("window", True, "outside every deny window and freeze")


def _target(evidence: Evidence) -> Check:
    target = evidence.target_id or "the pinned target"
    ok = evidence.availability != Availability.UNAVAILABLE
    return Check("target-available", ok, f"{target} is {evidence.availability}")


def _ago(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=int(delta.total_seconds())))
