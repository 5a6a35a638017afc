"""What the web pages read beyond the controller's status rows: the store and the Git mirror.

Reads run on one thread of their own (the SQLite connection belongs to the thread that
opened it, and a long history read must not stall the server's event loop), never on the
reconcile thread. The store is opened once; the mirror the controller fetches into is
opened per read and closed, as the controller does, because GitPython keeps processes.
The audit check reads the whole chain, so its result is kept for `audit_max_age`.
"""

from __future__ import annotations

import asyncio
import functools
import io
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, TypeVar

from qrelease.anchoring import read_controller_id
from qrelease.config import ControllerConfig
from qrelease.history import AuditFindings, Entry, audit_problems, export_chain, timeline
from qrelease.model.events import Event
from qrelease.model.vocabulary import EventKind
from qrelease.planning.upstream import GATE_EVENTS_SCANNED, GateLine, newest_gates
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.signatures import TrustedKeys
from qrelease.source.workspace import mirror_path
from qrelease.store import StateStore
from qrelease.wiring import open_state

T = TypeVar("T")
EVENTS_SHOWN = 10
EXPORT_SPOOL_BYTES = 8 << 20
"""An export larger than this is spooled to a temporary file rather than held in memory."""


@dataclass(frozen=True)
class AuditStatus:
    """The newest audit check and when it ran."""

    findings: AuditFindings | None
    checked_at: datetime
    head_seq: int
    head_hash: str | None
    controller: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the check ran and found nothing wrong."""
        return self.error is None and self.findings is not None and self.findings.ok


class WebData:
    """The web view's reads, on one worker thread."""

    def __init__(self, config: ControllerConfig, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="qrelease-web")
        self._store: StateStore | None = None
        self._audit: AuditStatus | None = None

    async def run(self, read: Callable[..., T], *args: Any) -> T:
        """Run one read on the worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(read, *args))

    def close(self) -> None:
        """Close the store on its thread and stop the worker."""
        self._executor.submit(self._close_store).result()
        self._executor.shutdown()

    # -- reads (worker thread) ----------------------------------------------------------

    def gates_and_events(
        self, env: str, app: str, version: str | None
    ) -> tuple[tuple[GateLine, ...], tuple[Event, ...]]:
        """The newest gate results of `version` here, and the newest events of the app here."""
        store = self._opened()
        gates: tuple[GateLine, ...] = ()
        if version:
            scanned = store.iter_events(
                env=env,
                app=app,
                actions=[EventKind.GATE],
                descending=True,
                limit=GATE_EVENTS_SCANNED,
            )
            gates = newest_gates(scanned, version)
        events = store.events(env=env, app=app, limit=EVENTS_SHOWN, descending=True)
        return gates, tuple(events)

    def timeline(
        self, rev: str | None, env: str | None, app: str | None, since: datetime | None
    ) -> tuple[list[Entry], str | None]:
        """The history timeline (Git joined with the log), and a note when Git could not be read."""
        store = self._opened()
        try:
            with self._mirror() as repo:
                return timeline(
                    store, repo, rev or self._branch(), env=env, app=app, since=since
                ), None
        except SourceError as error:
            events = store.iter_events(env=env, app=app, since=since)
            entries = [_entry(event) for event in events]
            return entries, f"only the controller's events: the Git mirror cannot be read ({error})"

    def audit(self, rev: str | None, refresh: bool) -> AuditStatus:
        """The audit check of the chain and its anchors, at most `audit_max_age` old."""
        now = self.clock()
        cached = self._audit
        if cached is not None and not refresh and now - cached.checked_at < self._max_age():
            return cached
        store = self._opened()
        controller = read_controller_id(self.config.state_dir)
        newest = store.events(limit=1, descending=True)
        head_seq, head_hash = (newest[0].seq, newest[0].hash) if newest else (0, None)
        keys = TrustedKeys(self.config.verify.trusted_keys, self.config.verify.gpg_home)
        try:
            with self._mirror() as repo:
                findings = audit_problems(
                    store,
                    repo,
                    rev or self._branch(),
                    controller=controller,
                    keys=keys if keys.enabled else None,
                )
            status = AuditStatus(findings, now, head_seq, head_hash, controller)
        except SourceError as error:
            status = AuditStatus(
                None, now, head_seq, head_hash, controller, f"cannot read the Git mirror: {error}"
            )
        self._audit = status
        return status

    def export(self) -> tuple[IO[bytes], int]:
        """The audit export (`qrelease audit export` format) in a spooled file, and its count."""
        spool = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)  # noqa: SIM115 the caller closes it
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="\n")
        count = export_chain(
            self._opened(),
            text,
            controller=read_controller_id(self.config.state_dir),
            exported_at=self.clock(),
        )
        text.flush()
        text.detach()
        spool.seek(0)
        return spool, count

    # -- helpers ------------------------------------------------------------------------

    def _opened(self) -> StateStore:
        if self._store is None:
            self._store = open_state(self.config.state_dir, self.config.store.url)
        return self._store

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @contextmanager
    def _mirror(self) -> Iterator[GitRepo]:
        path = mirror_path(self.config.source.url or ".", self.config.state_dir)
        if not path.is_dir():
            raise SourceError(f"{path.name} has not been fetched yet")
        repo = GitRepo(path)
        try:
            yield repo
        finally:
            repo.close()

    def _branch(self) -> str:
        return f"refs/heads/{self.config.source.branch}"

    def _max_age(self) -> timedelta:
        return self.config.web.audit_max_age


def _entry(event: Event) -> Entry:
    """A controller event as a timeline entry (when Git cannot be read)."""
    return Entry(
        event.seq,
        event.time,
        event.env,
        event.app,
        event.action,
        event.from_version,
        event.to_version,
        event.revision,
        event.actor,
        event.reason,
        event.outcome,
        event.hash,
        "controller",
    )
