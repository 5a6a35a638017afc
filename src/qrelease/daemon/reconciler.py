"""The controller's reconcile thread: fetch the mirror, decide whether a pass is due, run it.

Everything with side effects lives on this one thread. The SQLite store belongs to the
thread that opened it, so it is opened here; the engine (and its loader's parse cache)
lives as long as the thread, while the git repository is closed after every cycle,
because GitPython keeps `cat-file` processes and file handles that otherwise accumulate in
a process that runs for months.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from qrelease.autopromote import auto_promote
from qrelease.config import ControllerConfig
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.schedule import next_delay, resync_due
from qrelease.daemon.state import ControllerState, PassRecord
from qrelease.engine import Backends, Engine, PassResult, utcnow
from qrelease.planning.status import status_rows
from qrelease.promotion import Promoter
from qrelease.quantum.sandbox import GateLimits
from qrelease.runtime import LocalBackends, TemplateReader, open_store
from qrelease.source.pinlog import rollback_hold
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys, verify_revision
from qrelease.source.workspace import clone_mirror, fetch_mirror, mirror_path, redact_url
from qrelease.store.sqlite import Store

BackendsFactory = Callable[[Path], Backends]
WEBHOOK = "webhook"


def local_backends(
    state_dir: Path,
    read_template: TemplateReader | None = None,
    gate_limits: GateLimits | None = None,
) -> Backends:
    """The real backends, after cleaning up an interrupted install."""
    local = LocalBackends(state_dir, read_template, gate_limits)
    local.recover()
    return local.backends()


class Wake:
    """Why the reconcile thread should stop waiting: webhooks, reloads, shutdown (coalesced)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: list[str] = []

    def trigger(self, reason: str) -> None:
        """Ask the thread to run a cycle now (several calls before it wakes count once)."""
        with self._cond:
            self._reasons.append(reason)
            self._cond.notify_all()

    def wait(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for a trigger; returns (and forgets) the reasons."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._reasons), max(timeout, 0.0))
            reasons, self._reasons = self._reasons, []
            return reasons


class Mirror:
    """The controller's own bare mirror of the GitOps repo, under the state dir."""

    def __init__(self, url: str, state_dir: Path, timeout: timedelta) -> None:
        self.url = url
        self.path = mirror_path(url, state_dir)
        self.timeout = timeout.total_seconds()

    def refresh(self) -> None:
        """Clone the mirror the first time, fetch into it afterwards; bounded by the timeout."""
        if self.path.exists():
            fetch_mirror(self.path, self.timeout)
        else:
            clone_mirror(self.url, self.path, self.timeout)


class Reconciler:
    """Fetches and reconciles on the thread that opened it; see `run` for the loop."""

    def __init__(
        self,
        config: ControllerConfig,
        state: ControllerState,
        metrics: Metrics,
        log: FilteringBoundLogger,
        backends_factory: BackendsFactory = local_backends,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.config = config  # replaced whole by a reload; read once per cycle
        self.state = state
        self.metrics = metrics
        self.log = log
        self.mirror = Mirror(config.source.url or ".", config.state_dir, config.source.timeout)
        self._backends_factory = backends_factory
        self._draw = draw
        self._store: Store | None = None
        self._backends: Backends | None = None
        self._repo: GitRepo | None = None
        self._engine: Engine | None = None
        self._revision: str | None = None
        self._current_revision: str | None = None
        self._last_pass_revision: str | None = None
        self._last_pass_at: float | None = None
        self._source_failures = 0
        self._pass_errors = 0

    # -- lifetime ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the store and backends on this thread and show last-known-good status."""
        self._store = open_store(self.config.state_dir)
        if self._backends_factory is local_backends:
            limits = self.config.gates.limits()
            self._backends = local_backends(self.config.state_dir, self._read_template, limits)
        else:
            self._backends = self._backends_factory(self.config.state_dir)
        self.state.update(store_open=True, store_error=None)
        self._show_known_status()

    def close(self) -> None:
        """Release the repository's processes and close the store."""
        if self._repo is not None:
            self._repo.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.state.update(store_open=False)

    def __enter__(self) -> Reconciler:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, stop: threading.Event, wake: Wake) -> None:
        """Cycle until `stop` is set: immediately at start, then after each delay or trigger."""
        delay = timedelta(0)
        while not stop.is_set():
            reasons = wake.wait(delay.total_seconds())
            if stop.is_set():
                break
            delay = self.cycle(reasons)

    # -- one cycle --------------------------------------------------------------------

    def cycle(self, reasons: list[str] | None = None) -> timedelta:
        """Fetch, run a pass when one is due, and return how long to wait before the next."""
        reasons = reasons or []
        config = self.config
        try:
            revision = self._fetch(config)
            if revision is not None and self._due(revision, reasons, config):
                self._pass(revision, _trigger(reasons, revision != self._last_pass_revision))
        except Exception:  # a bug in one cycle must not stop the controller
            self._pass_errors += 1
            self.log.exception("cycle failed")
        finally:
            if self._repo is not None:
                self._repo.close()
        return self._schedule(config)

    def _fetch(self, config: ControllerConfig) -> str | None:
        """Refresh the mirror and resolve the branch; a failure is recorded, not raised."""
        started = time.monotonic()
        try:
            self.mirror.refresh()
            revision = self._git().read_ref(f"refs/heads/{config.source.branch}")
        except Exception as error:  # SourceError, or a mirror git cannot even open
            reason = str(error) if isinstance(error, SourceError) else _describe(error)
            self._fetch_failed(
                f"{redact_url(self.mirror.url)}: {reason}", time.monotonic() - started
            )
            return None
        self._fetched(revision, time.monotonic() - started)
        return revision

    def _fetched(self, revision: str, seconds: float) -> None:
        now = datetime.now(UTC)
        self.metrics.record_fetch(seconds, ok=True, at=now.timestamp())
        if self._source_failures:
            self.log.info("source recovered", revision=revision, failures=self._source_failures)
        elif revision != self._revision:
            self.log.info("fetched", revision=revision)
        self._source_failures = 0
        self._revision = revision
        self.state.update(
            fetched_revision=revision,
            last_fetch_at=now,
            fetched_once=True,
            source_error=None,
            failures=0,
        )

    def _fetch_failed(self, message: str, seconds: float) -> None:
        self._source_failures += 1
        self.metrics.record_fetch(seconds, ok=False, at=time.time())
        self.log.warning("source error", error=message, failures=self._source_failures)
        self.state.update(source_error=message, failures=self._source_failures)

    def _due(self, revision: str, reasons: list[str], config: ControllerConfig) -> bool:
        """A pass runs for a new revision, a webhook, or when the resync interval is up."""
        if revision != self._last_pass_revision or any(r.startswith(WEBHOOK) for r in reasons):
            return True
        since = None if self._last_pass_at is None else time.monotonic() - self._last_pass_at
        elapsed = None if since is None else timedelta(seconds=since)
        return resync_due(elapsed, config.source.resync)

    def _schedule(self, config: ControllerConfig) -> timedelta:
        """The next wait, published in the view so operators can see when the next poll is."""
        failures = max(self._source_failures, self._pass_errors)
        source = config.source
        delay = next_delay(source.interval, failures, source.max_backoff, self._draw())
        self.state.update(
            next_poll_at=datetime.now(UTC) + delay,
            interval=source.interval,
            resync=source.resync,
            branch=source.branch,
        )
        return delay

    # -- the pass ---------------------------------------------------------------------

    def _pass(self, revision: str, trigger: str) -> None:
        """One engine pass over `revision`, then metrics, status rows and the pass record."""
        store, engine = self._opened_store(), self._the_engine()
        log = self.log.bind(revision=revision, trigger=trigger)
        log.info("pass started")
        before = _newest_seq(store)
        started_at, started = datetime.now(UTC), time.monotonic()
        outcome, summary = self._run_engine(engine, revision, log)
        seconds = time.monotonic() - started
        gates = [
            (str(e.details.get("gate", "unknown")), e.outcome)
            for e in store.iter_events(after_seq=before, actions=["gate"])
        ]
        self.metrics.record_pass(seconds, outcome, gates)
        self._show_status(revision)
        record = PassRecord(revision, outcome, started_at, seconds, trigger, summary)
        self.state.pass_finished(record)
        log.info("pass finished", outcome=outcome, seconds=round(seconds, 3), **summary)
        if outcome != "error":
            self._auto_promote(revision, log)

    def _auto_promote(self, revision: str, log: FilteringBoundLogger) -> None:
        """Commit promotions for environments with `auto_promote` whose upstream has soaked."""
        engine, store = self._the_engine(), self._opened_store()
        snapshot = engine.loader.load(revision)
        if not any(env.policy.auto_promote for env in snapshot.environments.values()):
            return
        backends = self._backends
        assert backends is not None
        promoter = Promoter(
            self.mirror.url,
            self.config.state_dir,
            store,
            backends.quantum_for,
            utcnow,
            self.config.source.branch,
        )
        repo = self._git()
        try:
            held = lambda env, app: rollback_hold(repo, revision, env, app) is not None  # noqa: E731
            for result in auto_promote(promoter, snapshot, held):
                change = result.change
                log.info(
                    "auto-promoted",
                    env=change.env,
                    app=change.app,
                    to=change.to_version,
                    commit=result.published.commit if result.published else None,
                )
        except SourceError as error:
            log.warning("auto-promotion failed", error=str(error))

    def _run_engine(
        self, engine: Engine, revision: str, log: FilteringBoundLogger
    ) -> tuple[str, dict[str, Any]]:
        """Run the engine; an unexpected error is an `error` outcome, retried with backoff."""
        self._current_revision = revision
        try:
            result = engine.reconcile(revision)
        except Exception as error:  # the controller outlives any one bad pass
            self._pass_errors += 1
            log.exception("pass error")
            return "error", {"error": _describe(error)}
        self._pass_errors = 0
        self._last_pass_revision = revision
        self._last_pass_at = time.monotonic()
        return _outcome(result), _summary(result)

    def _on_step(self, env: str, app: str, step: str) -> None:
        """The engine's progress hook: one log event per rollout step."""
        self.log.info("step", env=env, app=app, step=step, revision=self._current_revision)

    # -- status -----------------------------------------------------------------------

    def _show_status(self, revision: str) -> None:
        """Publish the status rows at `revision` from Git and the store (last-known-good)."""
        engine, store = self._the_engine(), self._opened_store()
        try:
            snapshot = engine.loader.load(revision)
        except SourceError as error:
            self.log.warning("status unavailable", error=str(error), revision=revision)
            return
        rows = status_rows(
            snapshot.revision, snapshot.environments, snapshot.manifests, store.all_observed()
        )
        self.metrics.record_apps((str(r.env), str(r.sync), str(r.health)) for r in rows)
        self.state.update(rows=tuple(r.as_json() for r in rows), rows_revision=snapshot.revision)

    def _show_known_status(self) -> None:
        """At start, show what the existing mirror and store knew, before any fetch."""
        if not self.mirror.path.exists():
            return
        try:
            revision = self._git().resolve(f"refs/heads/{self.config.source.branch}")
        except SourceError:
            return
        try:
            self._show_status(revision)
        finally:
            self._git().close()

    # -- resources --------------------------------------------------------------------

    def _git(self) -> GitRepo:
        """The mirror, opened on first use and kept (it is closed, not dropped, per cycle)."""
        if self._repo is None:
            self._repo = GitRepo(self.mirror.path)
        return self._repo

    def _the_engine(self) -> Engine:
        if self._engine is None:
            assert self._backends is not None, "open() the reconciler first"
            self._engine = Engine(
                self._git(),
                self._opened_store(),
                self._backends,
                progress=self._on_step,
                verify=self._verifier(),
                concurrency=self.config.concurrency,
            )
        return self._engine

    def _read_template(self, path: str) -> bytes | None:
        """An ARM template from the mirror, at the revision being reconciled."""
        revision = self._current_revision or f"refs/heads/{self.config.source.branch}"
        return self._git().show_file(revision, path)

    def _verifier(self) -> Callable[[str], str | None] | None:
        """Signed-commit verification when trusted keys are configured."""
        verify = self.config.verify
        keys = TrustedKeys(verify.trusted_keys, verify.gpg_home)
        if not keys.enabled:
            return None
        return lambda revision: verify_revision(self._git(), revision, keys)

    def _opened_store(self) -> Store:
        assert self._store is not None, "open() the reconciler first"
        return self._store


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _newest_seq(store: Store) -> int:
    newest = store.events(descending=True, limit=1)
    return newest[0].seq if newest else 0


def _outcome(result: PassResult) -> str:
    return "failed" if result.failed or result.snapshot.errors else "succeeded"


def _summary(result: PassResult) -> dict[str, Any]:
    return {
        "actions": len(result.plan.actions),
        "changes": len(result.plan.changes),
        "failed": [f"{env}/{app}" for env, app in result.failed],
        "errors": len(result.snapshot.errors),
    }


def _trigger(reasons: list[str], new_revision: bool) -> str:
    """Why a pass runs: the first webhook, a new revision, or the resync interval."""
    webhooks = [r for r in reasons if r.startswith(WEBHOOK)]
    if webhooks:
        return webhooks[0]
    return "revision" if new_revision else "resync"
