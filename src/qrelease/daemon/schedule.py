"""When the controller looks at its source next: jittered polls, capped exponential backoff.

Jitter keeps a fleet of controllers from fetching from one Git server in lock-step;
backoff keeps a failing server from being hammered while it recovers. Pure functions:
the random draw is passed in, so tests and callers decide where randomness comes from.
"""

from __future__ import annotations

from datetime import timedelta

JITTER = 0.1
MAX_DOUBLINGS = 32


def jittered(interval: timedelta, draw: float) -> timedelta:
    """`interval` moved by up to ±10%, where `draw` in [0, 1] picks the point in that range.

    >>> jittered(timedelta(seconds=10), 0.0), jittered(timedelta(seconds=10), 1.0)
    (datetime.timedelta(seconds=9), datetime.timedelta(seconds=11))
    """
    return interval * (1 - JITTER + 2 * JITTER * draw)


def backoff(interval: timedelta, failures: int, cap: timedelta) -> timedelta:
    """The wait after `failures` failed fetches in a row: interval·2ⁿ, never more than `cap`.

    >>> [backoff(timedelta(seconds=30), n, timedelta(minutes=10)).seconds for n in (0, 1, 2, 9)]
    [30, 60, 120, 600]
    """
    doublings = min(max(failures, 0), MAX_DOUBLINGS)
    grown: timedelta = interval * 2**doublings
    return min(grown, max(cap, interval))


def next_delay(interval: timedelta, failures: int, cap: timedelta, draw: float) -> timedelta:
    """The jittered wait before the next poll, backing off while fetches keep failing.

    >>> next_delay(timedelta(seconds=30), 0, timedelta(minutes=10), 0.5)
    datetime.timedelta(seconds=30)
    """
    return jittered(backoff(interval, failures, cap), draw)


def resync_due(since_last_pass: timedelta | None, resync: timedelta) -> bool:
    """True when no pass has run yet, or the last one is at least `resync` ago.

    >>> five = timedelta(minutes=5)
    >>> resync_due(None, five), resync_due(timedelta(minutes=1), five), resync_due(five, five)
    (True, False, True)
    """
    return since_last_pass is None or since_last_pass >= resync
