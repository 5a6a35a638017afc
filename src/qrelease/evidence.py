"""Gathering what the policy needs about a pin change, the same way for the controller and the CLI.

The judgement itself is `planning.policy.policy_checks`, a pure function. What it is fed
comes from four places: the store (what runs upstream, its soak, its gates), Git (the
commit that moved the pin, whether it is a rollback or carries an override, and the
approvals on `refs/qrelease/approvals`), the quantum backend (target availability) and the
target catalog (whether the target is deprecated or retired).
The controller and `qrelease promote` both gather it here, so for the same inputs they
reach the same verdict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.observed import ObservedState
from qrelease.model.types import version_key
from qrelease.model.vocabulary import Availability, EventKind
from qrelease.planning.policy import Approval, Check, Evidence, PinIntent, failed, policy_checks
from qrelease.planning.upstream import GATE_EVENTS_SCANNED, GateLine, newest_gates
from qrelease.quantum import catalog
from qrelease.source.approvals import ApprovalRecord, approvals_tip, read_approvals
from qrelease.source.loader import Snapshot
from qrelease.source.pinlog import KnownPins, PinCommit, PinHistory
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys, signed_by
from qrelease.store.base import StateStore


def release_digest(snapshot: Snapshot, manifest: ReleaseManifest) -> str:
    """What an approval is bound to: the release's manifest and its program's Git blob.

    Any change to the packages, the program text, its entry, target or profile gives a
    new digest, so an approval never carries over to a different build.
    """
    body = {
        "manifest": manifest.model_dump(mode="json"),
        "program_blob": snapshot.program_blob(manifest),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def intent_of(pin: PinCommit | None, running: str | None, desired: str) -> PinIntent:
    """How a pin change means to move, from the commit that made it and what runs.

    >>> intent_of(None, None, "1.0.0"), intent_of(None, "1.1.0", "1.0.0")
    ('first', 'rollback')
    >>> intent_of(None, "1.0.0", "1.1.0")
    'promote'
    """
    if running is None:
        return "first"
    if pin is not None and pin.action == "rollback":
        return "rollback"
    return "rollback" if version_key(desired) < version_key(running) else "promote"


@dataclass
class PolicySources:
    """Where the evidence comes from; Git answers are read once per revision and reused."""

    store: StateStore
    repo: GitRepo
    revision: str
    keys: TrustedKeys | None = None
    known_pins: KnownPins | None = None
    _approvals: tuple[str | None, list[ApprovalRecord]] | None = field(default=None, init=False)
    _history: PinHistory | None = field(default=None, init=False)
    _pins: dict[tuple[str, str, str], PinCommit | None] = field(default_factory=dict, init=False)

    def pin_commit(self, env: str, app: str) -> PinCommit | None:
        """The commit that last moved the pin (cached per revision)."""
        key = (self.revision, env, app)
        if key not in self._pins:
            if self._history is None:
                self._history = PinHistory(self.repo, self.revision, self.known_pins)
            self._pins[key] = self._history.last_change(env, app)
        return self._pins[key]

    def approvals(self, env: str, app: str, version: str, digest: str) -> list[Approval]:
        """The countable approvals and rejects of one release in one environment."""
        tip = approvals_tip(self.repo)
        if self._approvals is None or self._approvals[0] != tip:
            self._approvals = (tip, read_approvals(self.repo, self.keys))
        return [
            Approval(record.approver, record.approves, record.reason, record.commit, record.at)
            for record in self._approvals[1]
            if record.approver is not None
            and (record.env, record.app, record.version, record.digest)
            == (env, app, version, digest)
        ]

    def override(self, env: Environment, pin: PinCommit | None) -> tuple[frozenset[str], str]:
        """(the checks the pin's commit may override, why its override is not honoured)."""
        if pin is None or not pin.override:
            return frozenset(), ""
        if not pin.reason:
            return frozenset(), f"override in {pin.commit[:12]} has no reason"
        if self.keys is not None and self.keys.enabled:
            signer, why = signed_by(self.repo, pin.commit, env.policy.overriders)
            if signer is None:
                return frozenset(), f"override in {pin.commit[:12]} not honoured: {why}"
        return frozenset(pin.override), ""


def judge(
    sources: PolicySources,
    snapshot: Snapshot,
    env: Environment,
    app: str,
    manifest: ReleaseManifest,
    *,
    running: str | None,
    upstream_state: ObservedState | None,
    availability: Availability,
    now: datetime,
    intent: PinIntent | None = None,
    override: frozenset[str] | None = None,
) -> list[Check]:
    """Every policy check for putting `manifest` live in `env`.

    A CLI promotion states its intent and override; for a change found in Git, the commit
    that moved the pin decides them, and it is looked up only when a check fails (a
    rollback commit or an override may then change the verdict).
    """
    version = manifest.version
    target = catalog.resolve(manifest.quantum.target.id)

    def checks(pin: PinCommit | None, stated: frozenset[str] | None) -> list[Check]:
        honoured, problem = sources.override(env, pin) if stated is None else (stated, "")
        moving = intent or intent_of(pin, running, version)
        upstream = env.promote_from if moving == "promote" else None
        return policy_checks(
            Evidence(
                version=version,
                target=env,
                upstream=env.promote_from,
                upstream_state=upstream_state,
                upstream_gates=_gates(sources.store, upstream, app, version),
                target_id=manifest.quantum.target.id,
                availability=availability,
                now=now,
                intent=moving,
                approvals=_approvals(sources, snapshot, env, app, manifest),
                override=honoured,
                override_problem=problem,
                target_lifecycle=str(target.status) if target else "active",
                target_note=target.note if target else "",
            )
        )

    verdict = checks(None, override if override is not None else frozenset())
    if failed(verdict) and (intent is None or override is None):
        verdict = checks(sources.pin_commit(env.environment, app), override)
    return verdict


def _approvals(
    sources: PolicySources,
    snapshot: Snapshot,
    env: Environment,
    app: str,
    manifest: ReleaseManifest,
) -> list[Approval]:
    if env.policy.approvals is None:
        return []
    digest = release_digest(snapshot, manifest)
    return sources.approvals(env.environment, app, manifest.version, digest)


def _gates(store: StateStore, upstream: str | None, app: str, version: str) -> tuple[GateLine, ...]:
    if upstream is None:
        return ()
    events = store.iter_events(
        env=upstream, app=app, actions=[EventKind.GATE], descending=True, limit=GATE_EVENTS_SCANNED
    )
    return newest_gates(events, version)
