"""Promote and roll back releases: the release manager's verbs, as Git commits.

Nothing here touches an environment. Policy is checked (every check named), then one pin
line is committed and pushed; the controller applies it. The decision is recorded in the
audit log too, with any override, under the commit's author. `preview` is the same
judgement without the commit: the TUI's dialogs show it before anything is published.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from qrelease.anchoring import anchor_chain
from qrelease.evidence import PolicySources, judge
from qrelease.model.environment import Environment
from qrelease.model.events import EventDraft
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.vocabulary import Availability, EventKind, EventOutcome
from qrelease.planning.policy import Check, PinIntent, failed
from qrelease.planning.upstream import healthy_release
from qrelease.quantum.base import QuantumBackend
from qrelease.source.loader import Loader, Snapshot
from qrelease.source.publish import FileChange, PinChange, Published, SuspendChange, publish
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import open_repo
from qrelease.store import open_parse_cache
from qrelease.store.base import StateStore

PinAction = Literal["promote", "rollback"]


class PromotionError(Exception):
    """The request cannot be carried out as asked; the message says why."""


@dataclass(frozen=True)
class Preview:
    """A dry run of one pin change: every policy check and the one line it would edit."""

    action: PinAction
    app: str
    env: str
    from_version: str | None
    to_version: str
    checks: tuple[Check, ...]

    @property
    def refused(self) -> list[Check]:
        """The checks that would stop it unless forced."""
        return failed(self.checks)

    @property
    def pin_line(self) -> str:
        """The plan: `apps.X: a -> b in releases/env.yaml`."""
        before = self.from_version or "none"
        return f"apps.{self.app}: {before} -> {self.to_version} in releases/{self.env}.yaml"


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
    store: StateStore
    quantum_for: Callable[[Environment], QuantumBackend]
    clock: Callable[[], datetime]
    branch: str = "main"
    before_push: Callable[[int], None] | None = None
    trusted_keys: TrustedKeys | None = None
    _snapshot: Snapshot | None = field(default=None, init=False)

    def snapshot(self) -> Snapshot:
        """The desired state on the branch, read fresh from the remote (once per promoter)."""
        if self._snapshot is None:
            with (
                open_repo(self.location, self.state_dir) as repo,
                open_parse_cache(self.state_dir) as cache,
            ):
                self._snapshot = Loader(repo, cache=cache).load(self.branch)
        return self._snapshot

    def use_snapshot(self, snapshot: Snapshot) -> None:
        """Judge against a snapshot the caller already holds (the TUI's, the controller's)."""
        self._snapshot = snapshot

    # -- judgements -------------------------------------------------------------------

    def preview(self, action: PinAction, app: str, env_name: str, version: str) -> Preview:
        """The checks a promote or rollback to `version` would run, publishing nothing."""
        env = self._environment(env_name)
        suspended = env.policy.suspended.get(app)
        if suspended is not None:
            raise PromotionError(
                f"{app} is suspended in {env_name} ({suspended}): the controller would not "
                f"apply it; `qrelease resume {app} --env {env_name}` first"
            )
        manifest = self._manifest(app, version)
        current = env.apps.get(app)
        if current == version:
            raise PromotionError(f"{app} is already pinned to {version} in {env_name}")
        checks = self._judge(action, env, app, manifest)
        if action == "rollback":
            valid = Check("manifest-valid", True, f"manifests/{app}/{version}.yaml validates")
            checks.insert(0, valid)
        return Preview(action, app, env_name, current, version, tuple(checks))

    def default_version(self, action: PinAction, app: str, env_name: str) -> str:
        """What a promote pins by default (Healthy upstream) or a rollback (last Healthy here)."""
        env = self._environment(env_name)
        if action == "promote":
            return self._upstream_version(env, app)
        return self._last_healthy(env_name, app, env.apps.get(app))

    # -- the verbs --------------------------------------------------------------------

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
        version = version or self.default_version("promote", app, env_name)
        judged = self.preview("promote", app, env_name, version)
        refused = judged.refused
        override = tuple(check.name for check in refused) if force else ()
        change = PinChange(
            "promote", env_name, app, judged.from_version, version, reason, actor, override
        )
        if refused and not force:
            return Result(change, list(judged.checks))
        return Result(change, list(judged.checks), self._publish_pin(change, list(judged.checks)))

    def rollback(
        self,
        app: str,
        env_name: str,
        version: str | None,
        reason: str,
        *,
        actor: str | None = None,
        force: bool = False,
    ) -> Result:
        """Pin an earlier release (default: the last one Healthy here); holds auto-promotion.

        Soak and upstream checks are skipped; windows and freezes still apply unless
        `force` breaks the glass, which the commit and the audit log record.
        """
        version = version or self.default_version("rollback", app, env_name)
        judged = self.preview("rollback", app, env_name, version)
        refused = judged.refused
        override = tuple(check.name for check in refused) if force else ()
        change = PinChange(
            "rollback", env_name, app, judged.from_version, version, reason, actor, override
        )
        if refused and not force:
            return Result(change, list(judged.checks))
        return Result(change, list(judged.checks), self._publish_pin(change, list(judged.checks)))

    def suspend(
        self, app: str, env_name: str, reason: str, *, actor: str | None = None
    ) -> Published:
        """Commit `policy.suspended.<app>`: the controller and auto-promotion leave it alone."""
        env = self._environment(env_name)
        if app not in env.apps:
            raise PromotionError(f"{app} is not pinned in {env_name}")
        current = env.policy.suspended.get(app)
        if current is not None:
            raise PromotionError(f"{app} is already suspended in {env_name}: {current}")
        change = SuspendChange(env_name, app, True, reason, actor)
        return self._publish(change, EventKind.SUSPEND, env.apps[app], {"suspended": reason})

    def resume(
        self, app: str, env_name: str, reason: str, *, actor: str | None = None
    ) -> Published:
        """Remove the app's suspension: the controller applies its pin again."""
        env = self._environment(env_name)
        current = env.policy.suspended.get(app)
        if current is None:
            raise PromotionError(f"{app} is not suspended in {env_name}")
        change = SuspendChange(env_name, app, False, reason, actor, expected=current)
        return self._publish(change, EventKind.RESUME, env.apps.get(app), {"was": current})

    # -- evidence ---------------------------------------------------------------------

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
        version = healthy_release(state)
        if version is None:
            running = (
                f"{state.deployed} ({state.health})" if state and state.deployed else "nothing"
            )
            raise PromotionError(
                f"{env.promote_from} runs {running} for {app}: nothing Healthy to promote"
            )
        return version

    def _last_healthy(self, env_name: str, app: str, current: str | None) -> str:
        for event in self.store.iter_events(
            env=env_name, app=app, actions=[EventKind.DEPLOY], descending=True
        ):
            healthy = event.outcome == EventOutcome.HEALTHY
            if healthy and event.to_version and event.to_version != current:
                return event.to_version
        raise PromotionError(f"no earlier Healthy release of {app} in {env_name}; give --to")

    def _judge(
        self, action: PinAction, env: Environment, app: str, manifest: ReleaseManifest
    ) -> list[Check]:
        """The same policy function the controller applies, on the same evidence."""
        recorded = self.store.get_observed(env.environment, app)
        running = recorded.deployed if recorded else None
        intent: PinIntent = "rollback" if action == "rollback" else "promote"
        if running is None and action == "promote":
            intent = "first"
        upstream = env.promote_from
        target = manifest.quantum.target.id
        try:
            availability = self.quantum_for(env).target_status(target).availability
        except Exception:  # a failing status lookup reads as Unknown; it must not crash the CLI
            availability = Availability.UNKNOWN
        with open_repo(self.location, self.state_dir) as repo:
            sources = PolicySources(self.store, repo, self.snapshot().revision, self.trusted_keys)
            return judge(
                sources,
                self.snapshot(),
                env,
                app,
                manifest,
                running=running,
                upstream_state=self.store.get_observed(upstream, app) if upstream else None,
                availability=availability,
                now=self.clock(),
                intent=intent,
                override=frozenset(),
            )

    def _publish_pin(self, change: PinChange, checks: list[Check]) -> Published:
        details = {"checks": [c.render() for c in checks], "override": list(change.override)}
        outcome = EventOutcome.FORCED if change.override else EventOutcome.COMMITTED
        kind = EventKind(change.action)
        return self._publish(change, kind, change.to_version, details, change.from_version, outcome)

    def _publish(
        self,
        change: FileChange,
        kind: EventKind,
        version: str | None,
        details: Mapping[str, object],
        from_version: str | None = None,
        outcome: EventOutcome = EventOutcome.COMMITTED,
    ) -> Published:
        """Commit and push the change, then record it in the audit log and anchor the log."""
        published = publish(self.location, self.state_dir, change, self.branch, self.before_push)
        self.store.append(
            EventDraft(
                env=change.env,
                app=change.app,
                action=kind,
                from_version=from_version,
                to_version=version,
                revision=published.commit,
                actor=published.author or change.actor or "cli",
                reason=change.reason,
                outcome=str(outcome),
                details={"commit": published.commit, "pushed": published.pushed, **details},
            ),
            time=self.clock(),
        )
        anchor_chain(self.store, self.location, self.state_dir, clock=self.clock)
        return published
