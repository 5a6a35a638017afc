"""The controller hub: wires the reconcile thread, the HTTP server and signals, and nothing else.

Three threads, one job each. The reconcile thread owns git, the store and the engine;
the HTTP thread answers probes and webhooks from a shared read-only view; the main thread
only turns signals into requests (stop, reload) and enforces the grace period. Signal
handlers just note the signal: all work happens in the main loop, never inside a handler.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TextIO

from structlog.typing import FilteringBoundLogger

from qrelease.anchoring import controller_id
from qrelease.config import ConfigError, ControllerConfig
from qrelease.daemon import settings
from qrelease.daemon.api import PassRequest, publish_endpoint, withdraw_endpoint
from qrelease.daemon.lock import AlreadyRunningError, ControllerLock
from qrelease.daemon.logs import make_logger
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.notifications import NotificationThread
from qrelease.daemon.reconciler import Reconciler, Wake
from qrelease.daemon.server import Endpoints, HttpServer, live_of, make_app
from qrelease.daemon.settings import Overrides
from qrelease.daemon.state import ControllerState, View
from qrelease.engine import utcnow
from qrelease.model.vocabulary import PassOutcome
from qrelease.redaction import redact_url
from qrelease.web import WebSite
from qrelease.wiring import BackendsFactory

MAIN_LOOP_TICK_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)


class Controller:
    """One running controller: start it, `wait` in the main thread, or `close` it (tests)."""

    def __init__(
        self,
        config: ControllerConfig,
        *,
        overrides: Overrides | None = None,
        config_path: Path | None = None,
        backends_factory: BackendsFactory | None = None,
        log_stream: TextIO | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.overrides = overrides or Overrides()
        self.config_path = config_path
        self.state = ControllerState(initial_view(config))
        self.metrics = Metrics()
        self.log = make_logger(config.log_level, self._secrets, log_stream)
        self.reconciler = Reconciler(
            config, self.state, self.metrics, self.log, backends_factory, clock=clock
        )
        self.wake = Wake()
        self.notifications = NotificationThread(
            config, lambda: controller_id(config.state_dir), self.log, self.metrics, clock
        )
        self.reconciler.after_pass.append(self.notifications.wake)
        self.fatal: str | None = None
        self._stop = threading.Event()
        self._worker_done = threading.Event()
        self._worker = threading.Thread(target=self._work, name="qrelease-reconcile", daemon=True)
        self._deadline: float | None = None
        self._api_token: str | None = None
        self.web = (
            WebSite(
                config,
                lambda: live_of(self.state.view),
                clock,
                lambda page, code: self.metrics.web_requests.labels(page=page, code=code).inc(),
            )
            if config.web.enabled
            else None
        )
        self.http = HttpServer(make_app(self._endpoints()), self._listen(), self.log, config.http)

    # -- start, stop, reload ----------------------------------------------------------

    def start(self) -> None:
        """Serve HTTP first (probes answer during a long first pass), then reconcile."""
        try:
            self.http.start()
        except BaseException:
            self.http.stop()
            raise
        self._api_token = publish_endpoint(self.config.state_dir, self.http.address)
        self.notifications.start()
        self._worker.start()
        self.log.info(
            "controller started",
            listen=str(self.http.address),
            url=redact_url(self.config.source.url or ""),
            branch=self.config.source.branch,
            state_dir=str(self.config.state_dir),
            store=redact_url(self.config.store.url or "") or "the state dir's SQLite file",
            pid=os.getpid(),
        )

    def trigger(self, reason: str) -> None:
        """Run a fetch (and, for a webhook, a pass) now instead of at the next poll."""
        self.wake.trigger(reason)

    def begin_stop(self, why: str = "stop requested") -> None:
        """Let the current pass finish, then stop; the grace period starts now."""
        if self._deadline is not None:
            self.log.info("already stopping", why=why)
            return
        grace = self.config.grace_period.total_seconds()
        self._deadline = time.monotonic() + grace
        self.state.update(stopping=True)
        self.log.info("stopping", why=why, grace_seconds=grace)
        self._stop.set()
        self.wake.trigger("stop")

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP) and apply what can change while running."""
        try:
            fresh = settings.reload(self.config_path, self.overrides)
        except ConfigError as error:
            self.log.error("reload failed; keeping the running settings", error=str(error))
            return False
        ignored = settings.restart_needed(self.config, fresh)
        if ignored:
            self.log.warning("settings need a restart to change", settings=ignored)
        kept = {"source": fresh.source.model_copy(update={"url": self.config.source.url})}
        applied = fresh.model_copy(
            update={
                **kept,
                "state_dir": self.config.state_dir,
                "store": self.config.store,
                "listen": self.config.listen,
                "notifications": self.config.notifications,
                "web": self.config.web,
            }
        )
        self.config = self.reconciler.config = applied
        self.state.update(interval=applied.source.interval, resync=applied.source.resync)
        self.log.info("reloaded", interval=_seconds(applied.source.interval))
        self.trigger("reload")
        return True

    def wait(self, inbox: SignalInbox | None = None) -> int:
        """Serve until stopped or broken, acting on signals; returns the exit code."""
        while not self._worker_done.is_set() and not self._grace_expired():
            for signum in inbox.drain() if inbox else ():
                self._on_signal(signum)
            if not self.http.alive and self._deadline is None:
                self.fatal = "the HTTP server stopped unexpectedly"
                self.begin_stop(self.fatal)
            self._worker_done.wait(MAIN_LOOP_TICK_SECONDS)
        return self._finish()

    def close(self) -> int:
        """Stop and wait (for tests and embedding): the same path as SIGTERM."""
        self.begin_stop("closed")
        return self.wait()

    # -- internals --------------------------------------------------------------------

    def _work(self) -> None:
        """The reconcile thread: open on this thread, loop, always close."""
        try:
            self.reconciler.open()
        except Exception as error:  # no usable store: report it and let the main thread exit
            self.fatal = f"cannot open the state in {self.config.state_dir}: {error}"
            self.state.update(store_error=self.fatal)
            self.log.exception("cannot start reconciling")
            self.reconciler.close()
            self._worker_done.set()
            return
        try:
            self.reconciler.start_keeper(self.wake)
            self.reconciler.run(self._stop, self.wake)
        except Exception:  # logged here; the main thread sees the thread end and exits 1
            self.log.exception("the reconcile thread failed")
        finally:
            self.reconciler.close()
            self._worker_done.set()

    def _finish(self) -> int:
        finished = self._worker_done.is_set()
        if not finished:
            self.log.error(
                "grace period expired during a pass; exiting anyway "
                "(the next start finishes or undoes what was interrupted)",
                grace_seconds=_seconds(self.config.grace_period),
            )
        elif self.fatal is None and self._deadline is None:
            self.fatal = "the reconcile thread stopped unexpectedly"
        withdraw_endpoint(self.config.state_dir)
        self._api_token = None
        self.notifications.stop()
        self.http.stop()
        if self.web is not None:
            self.web.close()
        code = 0 if finished and self.fatal is None else 1
        self.log.info("controller stopped", exit_code=code, error=self.fatal)
        return code

    def _grace_expired(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self.log.info("reload requested", signal=name)
            self.reload()
        else:
            self.begin_stop(f"received {name}")

    def _endpoints(self) -> Endpoints:
        return Endpoints(
            state=self.state,
            metrics=self.metrics,
            secret_env=lambda: self.config.webhook.secret_env,
            trigger=self.trigger,
            log=self.log,
            api_token=lambda: self._api_token,
            submit=self._submit,
            web=tuple(self.web.routes()) if self.web is not None else (),
        )

    def _submit(self, request: PassRequest) -> None:
        """A pass asked for through the local API: queue it and wake the reconcile thread."""
        self.reconciler.submit(request)
        self.wake.trigger("api")

    def _listen(self) -> settings.Address:
        return settings.parse_listen(self.config.listen)

    def _secrets(self) -> list[str | None]:
        """Secret values the log must never show, whatever key they appear under."""
        names = [self.config.webhook.secret_env, self.config.web.token_env]
        for channel in self.config.notifications.channels.values():
            names += [channel.url_env, channel.secret_env, channel.token_env]
        return [os.environ.get(name) for name in names if name]


class SignalInbox:
    """Signals noted by a handler that only appends, for the main loop to act on."""

    def __init__(self) -> None:
        self._received: deque[int] = deque()

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: record, nothing else (no locks, no I/O)."""
        self._received.append(signum)

    def drain(self) -> list[int]:
        """The signals received since the last drain, oldest first."""
        drained = []
        while self._received:
            drained.append(self._received.popleft())
        return drained


@contextmanager
def handled_signals() -> Iterator[SignalInbox | None]:
    """Route SIGTERM, SIGINT and SIGHUP to an inbox (main thread only), restoring them after."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    inbox = SignalInbox()
    previous = {signum: signal.signal(signum, inbox.note) for signum in HANDLED_SIGNALS}
    try:
        yield inbox
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def initial_view(config: ControllerConfig) -> View:
    """The view before anything happened: where the source is and how often it is polled."""
    return View(
        url=redact_url(config.source.url or ""),
        branch=config.source.branch,
        interval=config.source.interval,
        resync=config.source.resync,
    )


def run_controller(
    config: ControllerConfig,
    *,
    repo: str | None,
    state_dir: Path | None,
    interval: timedelta | None,
    listen: str | None,
    config_path: Path | None,
    once: bool = False,
    backends_factory: BackendsFactory | None = None,
    log_stream: TextIO | None = None,
    store_url: str | None = None,
) -> int:
    """`qrelease controller run`; exit code 0 after a clean stop, 1 on failure, 2 bad usage."""
    overrides = Overrides(
        repo=repo, state_dir=state_dir, interval=interval, listen=listen, store_url=store_url
    )
    try:
        effective = settings.effective(config, overrides)
    except ConfigError as error:
        _error(str(error))
        return 2
    try:
        with ControllerLock(effective.state_dir):
            if once:
                return run_once(effective, backends_factory, log_stream)
            return _serve(effective, overrides, config_path, backends_factory, log_stream)
    except AlreadyRunningError as error:
        _error(str(error))
        return 1


def _serve(
    config: ControllerConfig,
    overrides: Overrides,
    config_path: Path | None,
    backends_factory: BackendsFactory | None,
    log_stream: TextIO | None,
) -> int:
    """Run a controller in the foreground until a signal stops it."""
    try:
        controller = Controller(
            config,
            overrides=overrides,
            config_path=config_path,
            backends_factory=backends_factory,
            log_stream=log_stream,
        )
    except OSError as error:
        _error(f"cannot listen on {config.listen}: {error.strerror or error}")
        return 1
    with handled_signals() as inbox:
        controller.start()
        return controller.wait(inbox)


def run_once(
    config: ControllerConfig,
    backends_factory: BackendsFactory | None = None,
    log_stream: TextIO | None = None,
) -> int:
    """One fetch and one pass, no server: 0 when both worked and every desired change is live."""
    state = ControllerState(initial_view(config))
    log: FilteringBoundLogger = make_logger(config.log_level, stream=log_stream)
    with Reconciler(config, state, Metrics(), log, backends_factory) as reconciler:
        reconciler.cycle()
    view = state.view
    if view.source_error:
        _error(view.source_error)
        return 1
    last = view.last_pass
    converged = last is not None and last.outcome == PassOutcome.SUCCEEDED
    return 0 if converged and last is not None and not last.summary.get("pending") else 1


def _error(message: str) -> None:
    print(message, file=sys.stderr)


def _seconds(value: timedelta) -> float:
    return value.total_seconds()
