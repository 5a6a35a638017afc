"""The controller's reconcile thread: fetch the mirror, decide whether a pass is due, run it.

Everything with side effects lives on this one thread. The SQLite store belongs to the
thread that opened it, so it is opened here; the engine (and its loader's parse cache)
lives as long as the thread, while the git repository is closed after every cycle,
because GitPython keeps `cat-file` processes and file handles that otherwise accumulate in
a process that runs for months.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from qrelease.anchoring import anchor_chain, controller_id
from qrelease.config import ControllerConfig
from qrelease.daemon.api import PassRequest
from qrelease.daemon.leases import Identity, LeaseKeeper
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.schedule import next_delay, resync_due
from qrelease.daemon.state import ControllerState, PassRecord
from qrelease.deployers.venv import Wheelhouse
from qrelease.engine import Backends, Engine, PassReport, utcnow
from qrelease.engine.monitor import MonitorSettings, live_jobs_json, watched
from qrelease.model.environment import Environment
from qrelease.model.vocabulary import PassOutcome, Rollout
from qrelease.planning.planner import Retry
from qrelease.planning.status import StatusRow, row_of
from qrelease.promotion.auto import auto_promote
from qrelease.redaction import redact_url
from qrelease.source.approvals import approvals_tip
from qrelease.source.pinlog import rollback_hold
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys, verify_revision
from qrelease.source.workspace import mirror_path, refresh_mirror
from qrelease.store import FencedError, StateStore, open_parse_cache
from qrelease.store.fenced import Fence, FencedStore
from qrelease.store.parsecache import ParseCache
from qrelease.wiring import BackendsFactory, gate_queue, local_backends, open_state, promoter

WEBHOOK = "webhook"


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
        refresh_mirror(self.url, self.path, self.timeout)


class Reconciler:
    """Fetches and reconciles on the thread that opened it; see `run` for the loop."""

    def __init__(
        self,
        config: ControllerConfig,
        state: ControllerState,
        metrics: Metrics,
        log: FilteringBoundLogger,
        backends_factory: BackendsFactory | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
        wheelhouse: Wheelhouse | None = None,
    ) -> None:
        self.config = config  # replaced whole by a reload; read once per cycle
        self.state = state
        self.metrics = metrics
        self.log = log
        self.mirror = Mirror(config.source.url or ".", config.state_dir, config.source.timeout)
        self._backends_factory = backends_factory
        self._wheelhouse = wheelhouse
        self._draw = draw
        self.clock = clock  # every decision (resync, retries, the engine's records) reads it
        self._store: StateStore | None = None
        self._parse_cache: ParseCache | None = None
        self._backends: Backends | None = None
        self._repo: GitRepo | None = None
        self._engine: Engine | None = None
        self._revision: str | None = None
        self._current_revision: str | None = None
        self._last_pass_revision: str | None = None
        self._last_pass_at: datetime | None = None
        self._source_failures = 0
        self._pass_errors = 0
        self._retry_at: datetime | None = None
        self._approvals_seen: str | None = None
        self._requests: queue.Queue[PassRequest] = queue.Queue()
        self._asking: PassRequest | None = None
        self.keeper: LeaseKeeper | None = None  # with a shared store: this replica's leases
        self._keeper_thread: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._owned: frozenset[str] | None = None  # what the last pass covered
        self.after_pass: list[Callable[[], None]] = []
        """Told after every pass's report is published (the notifier looks at the log then)."""
        self._jobs_due: datetime | None = None  # when the workspaces' jobs are read next

    # -- lifetime ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the store and backends on this thread and show last-known-good status."""
        self._store = open_state(self.config.state_dir, self.config.store.url)
        self._parse_cache = open_parse_cache(self.config.state_dir)
        if self._backends_factory is None:
            config = self.config
            queue = gate_queue(config, config.store.url, self._replica_id())
            self._backends = local_backends(
                config.state_dir,
                self._read_template,
                config.gates.limits(),
                config.sources.allow,
                queue,
                self._wheelhouse,
            )
        else:
            self._backends = self._backends_factory(self.config.state_dir)
        self.state.update(store_open=True, store_error=None)
        if self.config.replicated:
            self._open_keeper()
        self._show_known_status()

    def _replica_id(self) -> str:
        """This controller's name among replicas (and in the gate jobs it asks for)."""
        return self.config.replica.id or controller_id(self.config.state_dir)

    def _open_keeper(self) -> None:
        """This replica's lease keeper, on its own store connection."""
        replica = self.config.replica
        identity = Identity(
            id=self._replica_id(),
            address=self.config.listen,
            serves=replica.serves,
            started_at=self.clock(),
        )
        self.keeper = LeaseKeeper(
            self._opened_store().connect(),
            identity,
            ttl=replica.lease_ttl,
            renew=replica.lease_renew,
            clock=self.clock,
            log=self.log,
        )
        self.metrics.replica = identity.id
        self.state.update(replica=identity.id)

    def start_keeper(self, wake: Wake) -> None:
        """Keep the leases on a thread of their own, waking the reconcile thread on a takeover."""
        keeper = self.keeper
        if keeper is None:
            return
        keeper.on_acquired = lambda names: wake.trigger("lease")
        interval = keeper.renew.total_seconds()

        def keep() -> None:
            while not self._keeper_stop.is_set():
                try:
                    keeper.tick()
                    self._publish_fleet()
                except Exception:  # a store hiccup: leases expire only after a whole TTL
                    self.log.exception("lease renewal failed")
                self._keeper_stop.wait(interval)

        self._keeper_thread = threading.Thread(target=keep, name="qrelease-leases", daemon=True)
        self._keeper_thread.start()

    def submit(self, request: PassRequest) -> None:
        """Queue a pass asked for through the local API (the caller wakes the thread)."""
        self._requests.put(request)

    def close(self) -> None:
        """Release the repository's processes and close the store; refuse queued requests."""
        for request in self._drain_requests():
            request.send({"error": "the controller is stopping"})
            request.close()
        if self._repo is not None:
            self._repo.close()
        self._close_keeper()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._parse_cache is not None:
            self._parse_cache.close()
        self.state.update(store_open=False)

    def _close_keeper(self) -> None:
        """Stop renewing and give every lease up, so other replicas take over at once."""
        if self.keeper is None:
            return
        self._keeper_stop.set()
        if self._keeper_thread is not None:
            self._keeper_thread.join()
        try:
            self.keeper.release_all()
        except Exception:  # the store is gone: the leases expire by themselves
            self.log.exception("could not release the leases")
        finally:
            self.keeper.store.close()
            self.keeper = None

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
            if revision is not None and self.keeper is not None:
                self._track_leases(revision)
            requests = self._drain_requests()
            for request in requests:
                self._requested_pass(revision or self._revision, request)
            if revision is not None and not requests and self._due(revision, reasons, config):
                self._pass(revision, _trigger(reasons, revision != self._last_pass_revision))
            elif revision is not None and self._jobs_due_now():
                self._watch_jobs(revision)
        except Exception:  # a bug in one cycle must not stop the controller
            self._pass_errors += 1
            self.log.exception("cycle failed")
        finally:
            if self._repo is not None:
                self._repo.close()
        if self.keeper is not None:
            self._show_fleet()
        return self._schedule(self.config)  # a reload during the cycle wins

    def _track_leases(self, revision: str) -> None:
        """Tell the keeper the environments of this revision; between passes, rebalance."""
        assert self.keeper is not None
        snapshot = self._the_engine().loader.load(revision)
        names = set(snapshot.environments) | set(snapshot.broken_envs)
        local = {
            name for name, env in snapshot.environments.items() if env.classical.kind == "venv"
        } | set(snapshot.broken_envs)  # an unreadable file may be a venv environment
        self.keeper.track(names, local)
        if self._keeper_thread is None:  # `controller run --once`: take leases now
            self.keeper.tick()
        else:
            self.keeper.rebalance()

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
        now = self.clock()
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
        if self.keeper is not None and self.keeper.owned() != self._owned:
            return True  # this replica took an environment over (or gave one up)
        approvals = approvals_tip(self._git())
        if approvals != self._approvals_seen:  # someone approved or rejected: judge again
            self._approvals_seen = approvals
            return self._last_pass_revision is not None
        if self._retry_at is not None and self.clock() >= self._retry_at:
            return True
        elapsed = None if self._last_pass_at is None else self.clock() - self._last_pass_at
        return resync_due(elapsed, config.source.resync)

    def _jobs_due_now(self) -> bool:
        """True when the monitor interval since the last read of the workspaces' jobs is up."""
        return self._jobs_due is None or self.clock() >= self._jobs_due

    def _watch_jobs(self, revision: str) -> None:
        """Read the owned workspaces' jobs between passes; a pass when a release now fails."""
        owned = self.keeper.owned() if self.keeper is not None else None
        started = self.clock()  # the interval runs from the start of a read
        report, degrade, environments = self._the_engine().watch_jobs(revision, owned=owned)
        self._jobs_due = started + self.config.monitor.interval
        self.metrics.record_jobs(report.changes, report.errors)
        for env, error in report.errors.items():
            self.log.warning("reading quantum jobs failed", env=env, error=error)
        if degrade:
            self._pass(revision, "quantum-health")
        else:
            self._show_jobs(environments)

    def _show_jobs(self, environments: Mapping[str, Environment]) -> None:
        """Publish each watched live release's job statistics in the view (/status)."""
        if not any(watched(env) for env in environments.values()):
            if self.state.view.jobs:
                self.state.update(jobs={})
            return
        store = self._opened_store()
        jobs = live_jobs_json(store, environments, store.all_observed(), self.clock())
        self.state.update(jobs=jobs)

    def _schedule(self, config: ControllerConfig) -> timedelta:
        """The next wait, published in the view so operators can see when the next poll is."""
        failures = max(self._source_failures, self._pass_errors)
        source = config.source
        delay = next_delay(source.interval, failures, source.max_backoff, self._draw())
        if self._retry_at is not None:  # a transient failure is due before the next poll
            delay = max(timedelta(0), min(delay, self._retry_at - self.clock()))
        if self._jobs_due is not None:  # the workspaces' jobs are read on their own interval
            delay = max(timedelta(0), min(delay, self._jobs_due - self.clock()))
        self.state.update(
            next_poll_at=self.clock() + delay,
            interval=source.interval,
            resync=source.resync,
            branch=source.branch,
        )
        return delay

    # -- the pass ---------------------------------------------------------------------

    def _drain_requests(self) -> list[PassRequest]:
        drained = []
        while True:
            try:
                drained.append(self._requests.get_nowait())
            except queue.Empty:
                return drained

    def _requested_pass(self, revision: str | None, request: PassRequest) -> None:
        """A pass asked for through the API: its rows and its report go back to the caller."""
        try:
            if revision is None:
                request.send({"error": self.state.view.source_error or "not fetched yet"})
                return
            self._asking = request
            report = self._pass(revision, "api", request.env, request.retry, request.app)
            if report is None:
                request.send({"error": self.state.view.pass_error or "the pass failed"})
            else:
                request.send({"report": report_json(report)})
        finally:
            self._asking = None
            request.close()

    def _pass(
        self,
        revision: str,
        trigger: str,
        env_filter: str | None = None,
        retry: Retry = Retry.DUE,
        app_filter: str | None = None,
    ) -> PassReport | None:
        """One engine pass over `revision`; the engine's finaliser publishes its report."""
        log = self.log.bind(revision=revision, trigger=trigger, env=env_filter, app=app_filter)
        log.info("pass started")
        started_at, started = self.clock(), time.monotonic()
        self._current_revision = revision
        owned = self.keeper.owned() if self.keeper is not None else None
        try:
            fresh = trigger != "revision"  # a new revision reuses what deployers reported
            report = self._the_engine().reconcile(
                revision,
                env_filter,
                retry,
                trigger=trigger,
                fresh=fresh,
                owned=owned,
                app_filter=app_filter,
            )
        except FencedError as error:  # another replica took an environment over mid-pass
            log.warning("lease lost during the pass; its writes were refused", error=str(error))
            seconds = time.monotonic() - started
            summary = {"error": f"lease lost: {error}"}
            self.metrics.record_pass(seconds, PassOutcome.ERROR, [])
            record = PassRecord(revision, PassOutcome.ERROR, started_at, seconds, trigger, summary)
            self.state.pass_finished(record)
            return None
        except Exception as error:  # the controller outlives any one bad pass
            self._pass_errors += 1
            log.exception("pass error")
            summary = {"error": _describe(error)}
            seconds = time.monotonic() - started
            self.metrics.record_pass(seconds, PassOutcome.ERROR, [])
            record = PassRecord(revision, PassOutcome.ERROR, started_at, seconds, trigger, summary)
            self.state.pass_finished(record)
            return None
        self._pass_errors = 0
        if env_filter is None and app_filter is None:  # a narrower pass leaves the rest due
            self._last_pass_revision = revision
            self._last_pass_at = self.clock()
            self._owned = owned
        seconds = time.monotonic() - started
        record = PassRecord(
            revision, report.outcome, started_at, seconds, trigger, report.summary()
        )
        self.state.pass_finished(record)
        log.info("pass finished", outcome=str(report.outcome), seconds=round(seconds, 3))
        anchor_chain(
            self._opened_store(),
            self.mirror.url,
            self.config.state_dir,
            clock=self.clock,
            warn=lambda reason: log.warning("audit anchor not written", reason=reason),
        )
        self._auto_promote(report, log)
        return report

    def _on_report(self, report: PassReport) -> None:
        """The engine's finaliser hands every pass here: view rows, metrics, retries."""
        gone = [app.key for app in report.apps if app.row is None]
        self.state.put_rows(report.rows, report.revision, gone)
        if report.snapshot.environments:
            self.state.update(environments=dict(report.snapshot.environments))
        rows = self.state.view.rows.values()
        seconds = (report.finished_at - report.started_at).total_seconds()
        self.metrics.record_pass(seconds, report.outcome, report.gate_outcomes())
        self.metrics.record_apps((row.env, str(row.sync), str(row.health)) for row in rows)
        self.metrics.record_holds((r.env, r.step) for r in rows if r.rollout == Rollout.HELD)
        due = [row.retry_at for row in rows if row.retry_at is not None]
        self._retry_at = min(due) if due else None
        if report.jobs is not None:
            self.metrics.record_jobs(report.jobs.changes, report.jobs.errors)
            self._jobs_due = report.started_at + self.config.monitor.interval
        self._show_jobs(report.snapshot.environments)
        for listener in self.after_pass:
            listener()

    def _on_row(self, row: StatusRow) -> None:
        """The engine's row hook: /status shows every planned row and rollout step at once."""
        self.state.put_rows([row])
        if self._asking is not None:
            self._asking.send({"row": row.as_json()})
        if row.rollout == Rollout.RUNNING and row.step:
            self.log.info(
                "step", env=row.env, app=row.app, step=row.step, revision=self._current_revision
            )

    def _auto_promote(self, report: PassReport, log: FilteringBoundLogger) -> None:
        """Commit promotions for environments with `auto_promote` whose upstream has soaked."""
        snapshot = report.snapshot
        if not any(env.policy.auto_promote for env in snapshot.environments.values()):
            return
        promotions = promoter(
            self.mirror.url,
            self.config.state_dir,
            self._opened_store(),
            branch=self.config.source.branch,
            quantum_for=self._opened_backends().quantum_for,
        )
        repo, revision = self._git(), report.revision
        owned = self.keeper.owned() if self.keeper is not None else None

        def held(env: str, app: str) -> bool:
            """Not this replica's environment, or a rollback holds it."""
            if owned is not None and env not in owned:
                return True
            return rollback_hold(repo, revision, env, app) is not None

        try:
            for result in auto_promote(promotions, snapshot, self.state.view.rows, held):
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

    # -- status -----------------------------------------------------------------------

    def _show_known_status(self) -> None:
        """At start, show the rows the store recorded (last-known-good), before any fetch."""
        recorded = self._opened_store().all_observed()
        revision = self._opened_store().get_meta("last_revision")
        self.state.set_rows((row_of(state) for state in recorded), revision)
        self.metrics.record_apps(
            (state.env, str(state.sync), str(state.health)) for state in recorded
        )
        self.metrics.record_holds(
            (s.env, s.rollout_step) for s in recorded if s.rollout == Rollout.HELD
        )

    def _show_fleet(self) -> None:
        """Every replica's rows from the store, and who holds what: /status on any replica."""
        store = self._opened_store()
        self.state.set_rows(
            (row_of(state) for state in store.all_observed()), self.state.view.rows_revision
        )
        self._publish_fleet()

    def _publish_fleet(self) -> None:
        if self.keeper is None:
            return
        replicas, leases = self.keeper.fleet()
        now = self.clock()
        self.state.update(
            fleet={
                "replicas": [
                    {
                        "id": r.id,
                        "host": r.host,
                        "pid": r.pid,
                        "address": r.address,
                        "serves": list(r.serves) if r.serves is not None else None,
                        "started_at": r.started_at.isoformat(),
                        "last_seen": r.last_seen.isoformat(),
                        "alive": now - r.last_seen < self.keeper.ttl,
                    }
                    for r in replicas
                ],
                "leases": [
                    {
                        "name": lease.name,
                        "owner": lease.owner,
                        "token": lease.token,
                        "expires_at": lease.expires_at.isoformat(),
                        "acquired_at": lease.acquired_at.isoformat(),
                        "held": lease.expires_at > now,
                    }
                    for lease in leases
                ],
            }
        )
        self.metrics.record_leases(len(self.keeper.owned()))

    # -- resources --------------------------------------------------------------------

    def _git(self) -> GitRepo:
        """The mirror, opened on first use and kept (it is closed, not dropped, per cycle)."""
        if self._repo is None:
            self._repo = GitRepo(self.mirror.path)
        return self._repo

    def _the_engine(self) -> Engine:
        if self._engine is None:
            assert self._backends is not None, "open() the reconciler first"
            store = self._opened_store()
            if self.keeper is not None:
                store = FencedStore(store, Fence(self.keeper.identity.id, self.keeper.token_for))
            self._engine = Engine(
                self._git(),
                store,
                self._backends,
                clock=self.clock,
                on_row=self._on_row,
                verify=self._verifier(),
                trusted_keys=self._keys(),
                concurrency=self.config.concurrency,
                sinks=[self._on_report],
                parse_cache=self._parse_cache,
                monitor=monitor_settings(self.config),
            )
        return self._engine

    def _read_template(self, path: str) -> bytes | None:
        """An ARM template from the mirror, at the revision being reconciled."""
        revision = self._current_revision or f"refs/heads/{self.config.source.branch}"
        return self._git().show_file(revision, path)

    def _keys(self) -> TrustedKeys | None:
        """The trusted keys of signed-commit verification, when it is configured."""
        verify = self.config.verify
        keys = TrustedKeys(verify.trusted_keys, verify.gpg_home)
        return keys if keys.enabled else None

    def _verifier(self) -> Callable[[str], str | None] | None:
        """Signed-commit verification when trusted keys are configured."""
        keys = self._keys()
        if keys is None:
            return None
        return lambda revision: verify_revision(self._git(), revision, keys)

    def _opened_store(self) -> StateStore:
        assert self._store is not None, "open() the reconciler first"
        return self._store

    def _opened_backends(self) -> Backends:
        assert self._backends is not None, "open() the reconciler first"
        return self._backends


def monitor_settings(config: ControllerConfig) -> MonitorSettings:
    """The engine's job-reading bounds from the config's `[monitor]` section."""
    monitor = config.monitor
    return MonitorSettings(
        max_jobs=monitor.max_jobs,
        max_refresh=monitor.max_refresh,
        backfill=monitor.backfill,
        retention=monitor.retention,
    )


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def report_json(report: PassReport) -> dict[str, Any]:
    """A pass report as the local API sends it back."""
    return {
        "revision": report.revision,
        "outcome": str(report.outcome),
        "converged": report.converged,
        "rows": [row.as_json() for row in report.rows],
        "errors": [str(error) for error in report.snapshot.errors],
        "summary": report.summary(),
    }


def _trigger(reasons: list[str], new_revision: bool) -> str:
    """Why a pass runs: the first webhook, a new revision, or the resync interval."""
    webhooks = [r for r in reasons if r.startswith(WEBHOOK)]
    if webhooks:
        return webhooks[0]
    return "revision" if new_revision else "resync"
