"""A clock tests move by hand, so decisions that depend on time are tested without waiting."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta


class ManualClock:
    """Returns the same instant until `advance` moves it; safe to read from any thread."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += by
