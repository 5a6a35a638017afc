"""Promote, roll back and diff releases: the release manager's verbs, as Git commits.

Nothing here touches an environment. Policy is checked (every check named), then one pin
line is committed and pushed; the controller applies it. The decision is recorded in the
audit log too, with any override.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from qrelease.model.environment import Environment
from qrelease.model.events import EventDraft
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.status import Availability, Health
from qrelease.planning.policy import Check, Evidence, failed, promotion_checks
from qrelease.quantum.base import QuantumBackend
from qrelease.source.loader import Loader, Snapshot, program_path
from qrelease.source.publish import PinChange, Published, publish
from qrelease.source.repo import GitRepo
from qrelease.source.workspace import open_repo
from qrelease.store.sqlite import Store


class PromotionError(Exception):
    """The request cannot be carried out as asked; the message says why."""


@dataclass(frozen=True)
class Result:
    """What a promote or rollback decided and, unless refused, the commit it published."""

    change: PinChange
    checks: list[Check]
    published: Published | None = None

    @property
    def refused(self) -> bool:
        """True when policy stopped it and nothing was committed."""
        return self.published is None


@dataclass
class Promoter:
    """Carries out promotions and rollbacks against one GitOps repo and one controller store."""

    location: str
    state_dir: Path
    store: Store
    quantum_for: Callable[[Environment], QuantumBackend]
    clock: Callable[[], datetime]
    branch: str = "main"
    before_push: Callable[[int], None] | None = None
    _snapshot: Snapshot | None = field(default=None, init=False)

    def snapshot(self) -> Snapshot:
        """The desired state on the branch, read fresh from the remote."""
        if self._snapshot is None:
            with open_repo(self.location, self.state_dir) as repo:
                self._snapshot = Loader(repo).load(self.branch)
        return self._snapshot

    def promote(
        self,
        app: str,
        env_name: str,
        version: str | None,
        reason: str,
        *,
        actor: str | None = None,
        force: bool = False,
    ) -> Result:
        """Pin `version` (default: what runs Healthy upstream) in `env_name`, policy first."""
        env = self._environment(env_name)
        version = version or self._upstream_version(env, app)
        manifest = self._manifest(app, version)
        current = env.apps.get(app)
        if current == version:
            raise PromotionError(f"{app} is already pinned to {version} in {env_name}")
        checks = promotion_checks(self._evidence(env, app, version, manifest))
        refused = failed(checks)
        override = tuple(check.name for check in refused) if force else ()
        change = PinChange("promote", env_name, app, current, version, reason, actor, override)
        if refused and not force:
            return Result(change, checks)
        return Result(change, checks, self._publish(change, checks))

    def rollback(
        self, app: str, env_name: str, version: str | None, reason: str, *, actor: str | None = None
    ) -> Result:
        """Pin an earlier release (default: the last one Healthy here); holds auto-promotion."""
        env = self._environment(env_name)
        current = env.apps.get(app)
        version = version or self._last_healthy(env_name, app, current)
        self._manifest(app, version)
        if current == version:
            raise PromotionError(f"{app} is already pinned to {version} in {env_name}")
        change = PinChange("rollback", env_name, app, current, version, reason, actor)
        checks = [Check("manifest-valid", True, f"manifests/{app}/{version}.yaml validates")]
        return Result(change, checks, self._publish(change, checks))

    def _environment(self, name: str) -> Environment:
        env = self.snapshot().environments.get(name)
        if env is None:
            raise PromotionError(f"unknown or invalid environment {name!r} (see qrelease validate)")
        return env

    def _manifest(self, app: str, version: str) -> ReleaseManifest:
        snapshot = self.snapshot()
        manifest = snapshot.manifest(app, version)
        if manifest is None:
            problems = [
                str(e) for e in snapshot.errors if e.path.startswith(f"manifests/{app}/{version}.")
            ]
            detail = "; ".join(problems) or f"no manifest manifests/{app}/{version}.yaml"
            raise PromotionError(f"{app} {version} does not validate: {detail}")
        return manifest

    def _upstream_version(self, env: Environment, app: str) -> str:
        if env.promote_from is None:
            raise PromotionError(f"{env.environment} has no promote_from; give --version")
        state = self.store.get_observed(env.promote_from, app)
        if state is None or state.deployed is None or state.health != Health.HEALTHY:
            running = (
                f"{state.deployed} ({state.health})" if state and state.deployed else "nothing"
            )
            raise PromotionError(
                f"{env.promote_from} runs {running} for {app}: nothing Healthy to promote"
            )
        return state.deployed

    def _last_healthy(self, env_name: str, app: str, current: str | None) -> str:
        for event in self.store.iter_events(
            env=env_name, app=app, actions=["deploy"], descending=True
        ):
            if event.outcome == "Healthy" and event.to_version and event.to_version != current:
                return event.to_version
        raise PromotionError(f"no earlier Healthy release of {app} in {env_name}; give --to")

    def _evidence(
        self, env: Environment, app: str, version: str, manifest: ReleaseManifest
    ) -> Evidence:
        upstream = env.promote_from
        state = self.store.get_observed(upstream, app) if upstream else None
        target = manifest.quantum.target.id
        try:
            availability = self.quantum_for(env).target_status(target).availability
        except Exception:  # a failing status lookup reads as Unknown; it must not crash the CLI
            availability = Availability.UNKNOWN
        return Evidence(
            version,
            env,
            upstream,
            state,
            self._gate_results(upstream, app, version),
            target,
            availability,
            self.clock(),
        )

    def _gate_results(
        self, env: str | None, app: str, version: str
    ) -> list[tuple[str, str, str | None]]:
        if env is None:
            return []
        latest: dict[str, tuple[str, str, str | None]] = {}
        for event in self.store.iter_events(
            env=env, app=app, actions=["gate"], descending=True, limit=500
        ):
            gate = str(event.details.get("gate", ""))
            if event.to_version == version and gate not in latest:
                latest[gate] = (gate, event.outcome, event.details.get("qir_sha256"))
        return list(latest.values())

    def _publish(self, change: PinChange, checks: list[Check]) -> Published:
        published = publish(self.location, self.state_dir, change, self.branch, self.before_push)
        details = {
            "commit": published.commit,
            "pushed": published.pushed,
            "checks": [c.render() for c in checks],
            "override": list(change.override),
        }
        self.store.append(
            EventDraft(
                env=change.env,
                app=change.app,
                action=change.action,
                from_version=change.from_version,
                to_version=change.to_version,
                revision=published.commit,
                actor=change.actor or "cli",
                reason=change.reason,
                outcome="Forced" if change.override else "Committed",
                details=details,
            ),
            time=self.clock(),
        )
        return published


@dataclass(frozen=True)
class ReleaseDiff:
    """What changes between two releases of an app."""

    app: str
    from_version: str
    to_version: str
    fields: list[tuple[str, str, str]]
    program_diff: list[str]


def diff_releases(repo: GitRepo, snapshot: Snapshot, app: str, old: str, new: str) -> ReleaseDiff:
    """Field-by-field and program-text differences between two valid releases."""
    before, after = snapshot.manifest(app, old), snapshot.manifest(app, new)
    for version, manifest in ((old, before), (new, after)):
        if manifest is None:
            raise PromotionError(
                f"{app} {version} has no valid manifest at {snapshot.revision[:12]}"
            )
    assert before is not None and after is not None
    changed = [(key, a, b) for key, (a, b) in _pairs(before, after).items() if a != b]
    return ReleaseDiff(app, old, new, changed, _program_diff(repo, snapshot, before, after))


def _pairs(before: ReleaseManifest, after: ReleaseManifest) -> dict[str, tuple[str, str]]:
    flat_before, flat_after = _flatten(before), _flatten(after)
    keys = sorted(set(flat_before) | set(flat_after))
    return {key: (flat_before.get(key, "-"), flat_after.get(key, "-")) for key in keys}


def _flatten(manifest: ReleaseManifest) -> dict[str, str]:
    quantum = manifest.quantum
    out = {
        f"package {p.name}": p.version + (f" sha256:{p.sha256[:12]}" if p.sha256 else "")
        for p in manifest.classical.packages
    }
    out["quantum.program"] = quantum.program
    out["quantum.entry"] = quantum.entry
    out["quantum.target.id"] = quantum.target.id
    out["quantum.target.profile"] = str(quantum.target.profile)
    out.update(_dotted("quantum.gates", quantum.gates.model_dump(mode="json", exclude_none=True)))
    if manifest.classical.health:
        out.update(_dotted("classical.health", manifest.classical.health.model_dump(mode="json")))
    return out


def _program_diff(
    repo: GitRepo, snapshot: Snapshot, before: ReleaseManifest, after: ReleaseManifest
) -> list[str]:
    texts = []
    for manifest in (before, after):
        blob = snapshot.program_blob(manifest)
        texts.append(repo.read_blob(blob).decode("utf-8", "replace").splitlines() if blob else [])
    names = [program_path(m.app, m.quantum.program) for m in (before, after)]
    return list(
        difflib.unified_diff(
            texts[0],
            texts[1],
            f"{names[0]} ({before.version})",
            f"{names[1]} ({after.version})",
            lineterm="",
        )
    )


def _dotted(prefix: str, value: object) -> dict[str, str]:
    """Nested values as `prefix.key.sub: value` strings."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_dotted(f"{prefix}.{key}", item))
        return out
    return {prefix: str(value)}
