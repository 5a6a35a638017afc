"""The notifier's thread: its own store connection, its channels, a tick after every pass.

Slow receivers must never delay a reconcile pass, so delivery runs on a thread of its own.
It ticks when the reconcile thread finishes a pass (events are fresh), every `poll`
otherwise (a CLI promotion or another controller wrote to the audit log), and when a
retry is due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from structlog.typing import FilteringBoundLogger

from qrelease.config import ControllerConfig
from qrelease.daemon.metrics import Metrics
from qrelease.notify import Notifier, build_channels
from qrelease.wiring import open_state

READY_SECONDS = 30.0
STOP_SECONDS = 15.0


class NotificationThread:
    """Runs a `Notifier` on its own thread until stopped; a no-op without channels."""

    def __init__(
        self,
        config: ControllerConfig,
        owner: Callable[[], str],
        log: FilteringBoundLogger,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.owner = owner
        self.log = log.bind(component="notifications")
        self.metrics = metrics
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qrelease-notify", daemon=True)

    @property
    def configured(self) -> bool:
        """True when there is anything to deliver to."""
        settings = self.config.notifications
        return bool(settings.channels and settings.rules)

    def start(self) -> None:
        """Start, and wait until every channel's cursor is set (events after it are sent)."""
        if not self.configured:
            return
        self._thread.start()
        self._ready.wait(READY_SECONDS)

    def wake(self) -> None:
        """Look at the audit log now (a pass just finished)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the message in flight, then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        settings = self.config.notifications
        built = build_channels(settings.channels)
        for problem in built.problems:
            self.log.error("notification channel not started", problem=problem)
        try:
            store = open_state(self.config.state_dir, self.config.store.url)
        except Exception:
            self.log.exception("cannot open the store for notifications")
            self._ready.set()
            return
        notifier = Notifier(
            store,
            built.channels,
            settings,
            owner=self.owner(),
            clock=self.clock,
            log=self.log,
            secrets=built.secrets,
            on_result=self.metrics.record_notification,
            halted=self._stop.is_set,
        )
        try:
            self._loop(notifier)
        finally:
            notifier.close()
            store.close()

    def _loop(self, notifier: Notifier) -> None:
        poll = self.config.notifications.poll
        start = notifier.store.newest_seq() if notifier.config.start == "now" else 0
        for name in notifier.channels:
            notifier.ledger.cursor(name, start)
        self._ready.set()
        while not self._stop.is_set():
            try:
                delay = notifier.tick()
            except Exception:  # a bug or a store outage must not end delivery for good
                self.log.exception("notification tick failed")
                delay = poll
            self._wake.wait(min(delay, poll).total_seconds())
            self._wake.clear()
