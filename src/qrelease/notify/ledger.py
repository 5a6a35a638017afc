"""Where delivery stands, kept in the store: one cursor per channel and one delivery lease.

Stored format (the store's `meta` table, on SQLite and PostgreSQL alike):

- ``notify.cursor.<channel>``: the seq of the newest audit event that channel is done
  with (delivered, not meant for it, or given up on), as decimal text. Events are
  handled in seq order, so everything at or below the cursor is done.
- ``notify.lease``: ``{"owner": "<controller id>", "until": "<ISO 8601>"}``, the
  controller that delivers. Controllers sharing a PostgreSQL store each run a notifier;
  only the lease holder sends, so no event goes out once per controller.

Every change is a compare-and-swap (`StateStore.swap_meta`): a cursor moves only from the
value this notifier read, so two notifiers never both record the same event as theirs, and
a notifier whose lease was taken over stops at its next move.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from qrelease.store import StateStore

CURSOR_KEY = "notify.cursor."
LEASE_KEY = "notify.lease"


@dataclass
class Ledger:
    """Cursors and the lease of one notifier (`owner`) in one store."""

    store: StateStore
    owner: str
    clock: Callable[[], datetime]
    lease: timedelta

    def hold_lease(self) -> bool:
        """Take or renew the delivery lease; False while another live notifier holds it."""
        current = self.store.get_meta(LEASE_KEY)
        now = self.clock()
        if current is not None and not self._ours_or_expired(current, now):
            return False
        mine = json.dumps({"owner": self.owner, "until": (now + self.lease).isoformat()})
        return self.store.swap_meta(LEASE_KEY, current, mine)

    def holder(self) -> str | None:
        """Who holds the lease now (expired or not), if anyone ever did."""
        current = self.store.get_meta(LEASE_KEY)
        return None if current is None else _lease(current)[0]

    def cursor(self, channel: str, start: int) -> int:
        """The channel's cursor; a channel seen for the first time starts at `start`."""
        key = CURSOR_KEY + channel
        self.store.swap_meta(key, None, str(start))  # no-op when it exists
        value = self.store.get_meta(key)
        return int(value) if value is not None else start

    def advance(self, channel: str, old: int, new: int) -> bool:
        """Move the channel's cursor from `old` to `new`; False if it no longer holds `old`."""
        return self.store.swap_meta(CURSOR_KEY + channel, str(old), str(new))

    def _ours_or_expired(self, current: str, now: datetime) -> bool:
        owner, until = _lease(current)
        return owner == self.owner or until is None or until <= now


def _lease(value: str) -> tuple[str | None, datetime | None]:
    """(owner, until) of a stored lease; an unreadable one counts as expired."""
    try:
        lease = json.loads(value)
        return str(lease["owner"]), datetime.fromisoformat(lease["until"])
    except (ValueError, KeyError, TypeError):
        return None, None
