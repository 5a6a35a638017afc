"""Delivery from the audit log: each channel walks the events after its cursor, in seq order.

At-least-once: a channel's cursor moves past an event only after the channel took it (or
it was not meant for that channel), in a compare-and-swap on the store, so a restart goes
on from the first event not yet delivered. Never twice: the cursor is durable once moved,
an event matched by several rules goes to a channel once, and only the lease holder among
controllers sharing a store sends. What remains is the moment between a receiver's answer
and the cursor's move: a controller killed exactly then sends that one event again after
its restart, with the same delivery id, so a receiver can drop the repeat.

A failure is retried with exponential backoff (`backoff`, doubling, at most `max_backoff`,
longer when the receiver asks with Retry-After) and holds the channel's later events back,
so they arrive in order. A receiver that refuses for good (a 4xx other than 408, 425 or
429) or an event still failing after `give_up_after` is given up on: logged as an error,
counted, and the channel goes on with the next event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from structlog.typing import FilteringBoundLogger

from qrelease.config import NotificationsConfig
from qrelease.model.events import Event
from qrelease.notify.channels import Channel, DeliveryError
from qrelease.notify.ledger import Ledger
from qrelease.notify.rules import Message, channels_for, render
from qrelease.store import StateStore

BATCH = 200
"""Events read from the store at a time."""

ResultHook = Callable[[str, str], None]
"""Told (channel, result) for every attempt: delivered, retried or dropped."""


@dataclass
class _Retry:
    """A channel's failing event: how often it failed, since when, and when to try again."""

    seq: int
    attempts: int
    first_failed_at: datetime
    next_at: datetime


class Notifier:
    """Sends every new audit event the rules ask for, on each `tick`, from one thread."""

    def __init__(
        self,
        store: StateStore,
        channels: Mapping[str, Channel],
        config: NotificationsConfig,
        *,
        owner: str,
        clock: Callable[[], datetime],
        log: FilteringBoundLogger,
        secrets: Iterable[str] = (),
        on_result: ResultHook | None = None,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.config = config
        self.clock = clock
        self.log = log
        self.ledger = Ledger(store, owner, clock, config.lease)
        self._secrets = list(secrets)
        self._on_result = on_result
        self._halted = halted
        self._retries: dict[str, _Retry] = {}
        self._leading: bool | None = None
        self._renewed_at: datetime | None = None
        self._messages: dict[int, Message | None] = {}

    def tick(self) -> timedelta:
        """Deliver what is due on every channel; returns how long until something is due again."""
        poll = self.config.poll
        if not self.channels or not self._lead():
            return poll
        start = self.store.newest_seq() if self.config.start == "now" else 0
        waits = [self._drain(name, channel, start) for name, channel in self.channels.items()]
        self._messages.clear()
        return min([poll, *(wait for wait in waits if wait is not None)])

    def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            channel.close()

    def _lead(self) -> bool:
        """Hold the lease; say so in the log whenever that changes."""
        leading = self.ledger.hold_lease()
        self._renewed_at = self.clock() if leading else None
        if leading != self._leading:
            if leading:
                self.log.info("delivering notifications", channels=sorted(self.channels))
            else:
                holder = self.ledger.holder()
                self.log.info("another controller delivers notifications", holder=holder)
            self._leading = leading
        return leading

    def _still_leading(self) -> bool:
        """Renew the lease during a long run of sends (a third of it at a time)."""
        renewed = self._renewed_at
        if renewed is not None and self.clock() - renewed < self.config.lease / 3:
            return True
        return self._lead()

    def _drain(self, name: str, channel: Channel, start: int) -> timedelta | None:
        """Walk one channel's events; the wait until its retry, or None when it is done."""
        retry = self._retries.get(name)
        if retry is not None and retry.next_at > self.clock():
            return retry.next_at - self.clock()
        cursor = self.ledger.cursor(name, start)
        while events := self.store.events(after_seq=cursor, limit=BATCH):
            done = cursor
            for event in events:
                if self._halted():
                    break
                message = self._message(name, channel, event)
                if message is None:
                    done = event.seq
                    continue
                if not self._save(name, cursor, done) or not self._still_leading():
                    return None
                cursor = done
                wait = self._deliver(name, channel, message, event)
                if wait is not None:
                    return wait
                if not self._save(name, cursor, event.seq):
                    return None
                cursor = done = event.seq
            if not self._save(name, cursor, done) or self._halted():
                return None
            cursor = done
        return None

    def _message(self, name: str, channel: Channel, event: Event) -> Message | None:
        """The message for `event` if a rule sends it to this channel and the channel takes it."""
        if name not in channels_for(event, self.config.rules):
            return None
        if event.seq not in self._messages:
            self._messages[event.seq] = render(event, self.config.link, self._secrets)
        message = self._messages[event.seq]
        return message if message is not None and channel.accepts(message) else None

    def _deliver(
        self, name: str, channel: Channel, message: Message, event: Event
    ) -> timedelta | None:
        """Send one message: None when it is done with (sent or given up), else the wait."""
        try:
            channel.send(message)
        except DeliveryError as error:
            return self._failed(name, message, event, error)
        self._retries.pop(name, None)
        self._result(name, "delivered")
        self.log.info("notified", channel=name, seq=event.seq, kind=str(message.kind))
        return None

    def _failed(
        self, name: str, message: Message, event: Event, error: DeliveryError
    ) -> timedelta | None:
        now = self.clock()
        retry = self._retries.get(name)
        if retry is None or retry.seq != event.seq:
            retry = self._retries[name] = _Retry(event.seq, 0, now, now)
        retry.attempts += 1
        if error.permanent or now - retry.first_failed_at >= self.config.give_up_after:
            del self._retries[name]
            self._result(name, "dropped")
            self.log.error(
                "notification given up",
                channel=name,
                seq=event.seq,
                kind=str(message.kind),
                attempts=retry.attempts,
                error=str(error),
                why="refused for good" if error.permanent else "failing too long",
            )
            return None
        delay = self._delay(retry.attempts, error.retry_after)
        retry.next_at = now + delay
        self._result(name, "retried")
        self.log.warning(
            "notification not delivered; will retry",
            channel=name,
            seq=event.seq,
            kind=str(message.kind),
            attempt=retry.attempts,
            retry_at=retry.next_at.isoformat(),
            error=str(error),
        )
        return delay

    def _delay(self, attempts: int, retry_after: float | None) -> timedelta:
        """backoff·2^(attempts-1), at least what Retry-After asked, at most max_backoff."""
        cap = self.config.max_backoff
        delay = min(self.config.backoff * (1 << min(attempts - 1, 30)), cap)
        if retry_after is not None:
            delay = max(delay, min(timedelta(seconds=retry_after), cap))
        return delay

    def _save(self, name: str, old: int, new: int) -> bool:
        """Move the cursor; False (and stop) if another notifier moved it meanwhile."""
        if new == old or self.ledger.advance(name, old, new):
            return True
        self.log.warning("notification cursor moved by another controller", channel=name)
        self._leading = None
        return False

    def _result(self, name: str, result: str) -> None:
        if self._on_result is not None:
            self._on_result(name, result)
