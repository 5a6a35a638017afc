"""Release policy: every check by name, pass or fail, decided from values alone.

One function, `policy_checks`, judges a pin change for everyone: the controller before it
applies a change (however the change reached Git), `qrelease promote` and `rollback`, the
TUI's dialogs, auto-promotion and `plan`. A refusal names every failed check, never just
the first, and a check that time will pass by itself says when (`Check.until`), so the
controller can apply a held change at that moment without another commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from qrelease.model.environment import Environment
from qrelease.model.observed import ObservedState
from qrelease.model.types import format_duration
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.planning.upstream import GateLine, healthy_release
from qrelease.planning.windows import window_state

PinIntent = Literal["promote", "rollback", "first"]
"""How a pin change means to move: forward through the policy; back (skipping soak and
upstream checks, still respecting windows and freezes); or the first release of an app in
an environment (nothing of it runs there yet: windows, target and approvals only)."""


@dataclass(frozen=True)
class Check:
    """One named policy check and what it found.

    `until` is when a failed check will pass by itself (a soak ending, a window closing);
    `overridden` marks a failed check an explicit, attributable override lets through.
    """

    name: str
    passed: bool
    detail: str
    until: datetime | None = None
    overridden: bool = False

    def render(self) -> str:
        """`✓ name: detail` or `✗ name: detail`."""
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Approval:
    """One approver's word on one release in one environment (the newest counts)."""

    approver: str
    approves: bool
    reason: str
    commit: str
    at: datetime


@dataclass(frozen=True)
class Evidence:
    """What the policy needs to know about a pin change, gathered by the caller."""

    version: str
    target: Environment
    upstream: str | None
    upstream_state: ObservedState | None
    upstream_gates: Sequence[GateLine]
    target_id: str | None
    availability: Availability
    now: datetime
    intent: PinIntent = "promote"
    approvals: Sequence[Approval] = ()
    override: frozenset[str] = frozenset()
    override_problem: str = ""
    target_lifecycle: str = "active"
    """The pinned target's catalog status: active, deprecated or retired."""
    target_note: str = ""


def policy_checks(evidence: Evidence) -> list[Check]:
    """Every check a pin change must pass, overridden checks marked as such.

    A promotion (or any pin edited by hand) is judged on upstream health, soak and gates,
    the windows, the target and the approvals; a rollback on the windows only; the first
    release of an app in an environment on the windows, the target and the approvals. An
    override that cannot be honoured (unsigned, or no reason) fails a check of its own.
    """
    checks = [_window(evidence)]
    if evidence.intent == "promote" and evidence.upstream is not None:
        checks[:0] = [_upstream_healthy(evidence), _soaked(evidence), _gates_passed(evidence)]
    if evidence.intent != "rollback":
        checks.append(_target(evidence))
        if evidence.target_lifecycle != "active":
            checks.append(_target_lifecycle(evidence))
        if evidence.target.policy.approvals is not None:
            checks.append(_approved(evidence))
    judged = [_overridden(check, evidence.override) for check in checks]
    if evidence.override_problem:
        judged.append(Check("override", False, evidence.override_problem))
    return judged


def failed(checks: Sequence[Check]) -> list[Check]:
    """The checks that stop the change (failed and not overridden)."""
    return [check for check in checks if not check.passed]


def passes_by_itself_at(checks: Sequence[Check]) -> datetime | None:
    """When every failed check will have passed by itself, if they all will."""
    stopping = failed(checks)
    if not stopping or any(check.until is None for check in stopping):
        return None
    return max(check.until for check in stopping if check.until is not None)


def next_look(checks: Sequence[Check]) -> datetime | None:
    """The earliest moment a failed check may pass by itself: when to judge again."""
    times = [check.until for check in failed(checks) if check.until is not None]
    return min(times) if times else None


def approvals_tally(
    approvals: Sequence[Approval], approvers: Sequence[str]
) -> tuple[list[str], list[Approval]]:
    """(listed approvers whose newest word approves, newest rejects by listed approvers)."""
    newest: dict[str, Approval] = {}
    for approval in sorted(approvals, key=lambda a: a.at):
        if approval.approver in approvers:
            newest[approval.approver] = approval
    approving = sorted(name for name, word in newest.items() if word.approves)
    rejecting = [word for word in newest.values() if not word.approves]
    return approving, rejecting


def _overridden(check: Check, override: frozenset[str]) -> Check:
    if check.passed or check.name not in override:
        return check
    return replace(check, passed=True, overridden=True, detail=f"{check.detail} (overridden)")


def _approved(evidence: Evidence) -> Check:
    rule = evidence.target.policy.approvals
    assert rule is not None
    approving, rejecting = approvals_tally(evidence.approvals, rule.approvers)
    if rejecting:
        names = ", ".join(
            f"{r.approver} ({r.reason})" if r.reason else r.approver for r in rejecting
        )
        return Check("approvals", False, f"rejected by {names}")
    detail = f"{len(approving)} of {rule.required} approvals" + (
        f" ({', '.join(approving)})" if approving else ""
    )
    return Check("approvals", len(approving) >= rule.required, detail)


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
    if state is not None and running_healthy and state.bake_until is not None:
        until = state.bake_until.isoformat()
        detail = f"{evidence.version} bakes in {evidence.upstream} until {until}; soak follows"
        return Check("soak", False, detail, state.bake_until + soak)
    since = state.healthy_since if state is not None and running_healthy else None
    if since is None:
        return Check(
            "soak", False, f"not Healthy in {evidence.upstream}, soak {format_duration(soak)}"
        )
    healthy_for = evidence.now - since
    detail = (
        f"Healthy in {evidence.upstream} for {_ago(healthy_for)} (soak {format_duration(soak)})"
    )
    return Check("soak", healthy_for >= soak, detail, since + soak)


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
    state = window_state(evidence.target.policy, evidence.now)
    return Check("window", state.open, state.reason, None if state.open else state.until)


def _target(evidence: Evidence) -> Check:
    target = evidence.target_id or "the pinned target"
    ok = evidence.availability != Availability.UNAVAILABLE
    return Check("target-available", ok, f"{target} is {evidence.availability}")


def _target_lifecycle(evidence: Evidence) -> Check:
    """A retired target never passes; a deprecated one only where the environment says why."""
    target = evidence.target_id or "the pinned target"
    why = f" ({evidence.target_note})" if evidence.target_note else ""
    if evidence.target_lifecycle == "deprecated":
        reason = evidence.target.policy.acknowledge_deprecated.get(evidence.target_id or "")
        if reason is not None:
            return Check("target-status", True, f"{target} is deprecated; acknowledged: {reason}")
        detail = (
            f"{target} is deprecated{why}; add it to policy.acknowledge_deprecated with a reason "
            "to release to it"
        )
        return Check("target-status", False, detail)
    return Check("target-status", False, f"{target} is {evidence.target_lifecycle}{why}")


def _ago(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=int(delta.total_seconds())))
