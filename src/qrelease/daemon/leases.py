"""A replica's leases: which environments this controller reconciles, when several share a store.

Every few seconds (`renew`) the keeper's own thread beats (the `replicas` row), renews the
leases it holds and takes free or expired ones up to a fair share: the environments this
replica may serve divided by the replicas alive to serve them (a replica is alive while its
heartbeat is younger than the lease TTL). When it takes an environment it wakes the
reconcile thread, so a dead replica's work is picked up within one TTL plus one renew
period, not at the next poll. Between passes the reconcile thread asks it to `rebalance`:
a replica holding more than its share gives the surplus up when another live replica holds
less, which spreads the work after a replica joins.

A lease is lost when someone else acquired it (renewal says so): the keeper drops it at
once and the fenced store refuses every later write under it. Correctness never depends on
clocks agreeing: only the fencing token decides what may be written; clocks decide how soon
an expired lease is taken.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from structlog.typing import FilteringBoundLogger

from qrelease.store import Lease, Replica, StateStore
from qrelease.store.fenced import lease_name


@dataclass(frozen=True)
class Identity:
    """Who this replica is, as its heartbeat says."""

    id: str
    address: str
    serves: tuple[str, ...] | None
    started_at: datetime
    host: str = socket.gethostname()
    pid: int = os.getpid()


class LeaseKeeper:
    """Holds this replica's environment leases; thread-safe, one thread drives `tick`."""

    def __init__(
        self,
        store: StateStore,
        identity: Identity,
        *,
        ttl: timedelta,
        renew: timedelta,
        clock: Callable[[], datetime],
        log: FilteringBoundLogger,
        on_acquired: Callable[[list[str]], None] = lambda names: None,
    ) -> None:
        self.store = store  # used only on the thread that calls tick/rebalance/release_all
        self.identity = identity
        self.ttl, self.renew = ttl, renew
        self.clock = clock
        self.log = log.bind(replica=identity.id)
        self.on_acquired = on_acquired
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}  # environment -> lease
        self._all: frozenset[str] = frozenset()
        self._local: frozenset[str] = frozenset()
        self._fleet: list[Replica] = []
        self._leases: list[Lease] = []

    # -- what the engine asks -------------------------------------------------------------

    def token_for(self, env: str) -> int | None:
        """The fencing token of the environment's lease while this replica holds it."""
        with self._lock:
            lease = self._held.get(env)
        return lease.token if lease is not None else None

    def owned(self) -> frozenset[str]:
        """The environments this replica holds leases for."""
        with self._lock:
            return frozenset(self._held)

    def track(self, environments: Collection[str], local: Collection[str]) -> None:
        """The environments at the newest revision, and those bound to one host's disk."""
        with self._lock:
            self._all, self._local = frozenset(environments), frozenset(local)

    def can_serve(self, replica: Replica, env: str) -> bool:
        """True when `replica` may reconcile `env` (a local one only where it says so)."""
        with self._lock:
            local = env in self._local
        return not local or replica.serves is None or env in replica.serves

    def eligible(self) -> frozenset[str]:
        """The environments this replica may serve."""
        with self._lock:
            environments = self._all
        me = self._me(self.clock())
        return frozenset(env for env in environments if self.can_serve(me, env))

    def fleet(self) -> tuple[list[Replica], list[Lease]]:
        """The replicas and leases as the last tick read them."""
        with self._lock:
            return list(self._fleet), list(self._leases)

    # -- the keeper's work ----------------------------------------------------------------

    def tick(self) -> None:
        """Beat, renew what is held, and take free environments up to the fair share."""
        now = self.clock()
        self.store.heartbeat(self._me(now))
        self._renew(now)
        fleet = self.store.replicas()
        leases = {lease.name: lease for lease in self.store.leases()}
        with self._lock:
            self._fleet, self._leases = fleet, sorted(leases.values(), key=lambda x: x.name)
            held = set(self._held)
        eligible = self.eligible()
        share = self._share(eligible, fleet, now)
        taken: list[str] = []
        for env in sorted(eligible - held):
            if len(held) + len(taken) >= share:
                break
            current = leases.get(lease_name(env))
            mine = current is not None and current.owner == self.identity.id
            if current is not None and not mine and current.expires_at > now:
                continue
            lease = self.store.acquire_lease(lease_name(env), self.identity.id, self.ttl, now)
            if lease is not None:
                with self._lock:
                    self._held[env] = lease
                taken.append(env)
                self.log.info("lease acquired", env=env, fence=lease.token)
        if taken:
            self.on_acquired(taken)

    def rebalance(self) -> list[str]:
        """Between passes: give up environments beyond the share, or no longer eligible."""
        now = self.clock()
        fleet = self.store.replicas()
        leases = self.store.leases()
        with self._lock:
            held = dict(self._held)
        eligible = self.eligible()
        share = self._share(eligible, fleet, now)
        counts: dict[str, int] = {}
        for lease in leases:
            if lease.expires_at > now:
                counts[lease.owner] = counts.get(lease.owner, 0) + 1
        underfull = [
            r
            for r in fleet
            if r.id != self.identity.id and _alive(r, now, self.ttl) and counts.get(r.id, 0) < share
        ]
        drop = [env for env in sorted(held) if env not in eligible]
        surplus = len(held) - len(drop) - share
        for env in sorted((env for env in held if env not in drop), reverse=True):
            if surplus <= 0:
                break
            if any(self.can_serve(peer, env) for peer in underfull):
                drop.append(env)
                surplus -= 1
        for env in drop:
            self._give_up(env, held[env], "no longer eligible" if env not in eligible else "share")
        return drop

    def release_all(self) -> None:
        """On a clean stop: give every lease up and leave the fleet, so others take over now."""
        with self._lock:
            held = dict(self._held)
        for env, lease in held.items():
            self._give_up(env, lease, "stopping")
        self.store.forget_replica(self.identity.id)

    # -- internals ------------------------------------------------------------------------

    def _renew(self, now: datetime) -> None:
        with self._lock:
            held = dict(self._held)
        for env, lease in held.items():
            fresh = self.store.renew_lease(lease, self.ttl, now)
            with self._lock:
                if fresh is None:
                    self._held.pop(env, None)
                elif env in self._held:
                    self._held[env] = fresh
            if fresh is None:
                self.log.warning("lease lost", env=env, fence=lease.token)

    def _give_up(self, env: str, lease: Lease, why: str) -> None:
        with self._lock:
            self._held.pop(env, None)
        self.store.release_lease(lease)
        self.log.info("lease released", env=env, fence=lease.token, why=why)

    def _share(self, eligible: frozenset[str], fleet: list[Replica], now: datetime) -> int:
        """How many of the eligible environments this replica should hold."""
        if not eligible:
            return 0
        peers = [
            r
            for r in fleet
            if r.id != self.identity.id
            and _alive(r, now, self.ttl)
            and any(self.can_serve(r, env) for env in eligible)
        ]
        return math.ceil(len(eligible) / (len(peers) + 1))

    def _me(self, now: datetime) -> Replica:
        me = self.identity
        return Replica(me.id, me.host, me.pid, me.address, me.serves, me.started_at, now)


def _alive(replica: Replica, now: datetime, ttl: timedelta) -> bool:
    return now - replica.last_seen < ttl
