"""Anchoring the audit chain in Git after every reconcile pass, promotion and rollback.

The store holds the chain; `source/anchors.py` writes heads to Git; this module joins them
for the three places that append events (the daemon's report sink, the CLI's reconcile and
promotion's publish), so each calls one function, `anchor_chain`. It never raises: a remote
that refuses the push must not fail a pass or a promotion. The reason is returned, handed
to `warn`, and kept in the store's meta under `audit_anchor_failure` until an anchor gets
through; `qrelease audit verify` shows it. Before writing, the chain is checked against the
newest anchor, so a chain that was cut or rewritten is never anchored over.

The anchor is written in the repository qrelease reads `location` through (the repository
itself when it is local, else the state dir's bare mirror of it) and pushed to `location`.

Stored format: `<state>/controller.id` holds this state dir's controller id (16 random hex
digits and a newline), written once; it names the ref `refs/qrelease/audit/<id>`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qrelease.model.events import Event
from qrelease.source.anchors import (
    CONTROLLER_ID,
    Anchor,
    AnchorPushError,
    newest_anchor,
    refresh_anchor,
    write_anchor,
)
from qrelease.source.private import Remote, split_credentials
from qrelease.source.repo import GitRepo, SourceError
from qrelease.source.workspace import is_local_repo, mirror_path, refresh_mirror
from qrelease.store.base import StateStore

CONTROLLER_ID_FILE = "controller.id"
FAILURE_META_KEY = "audit_anchor_failure"
PUSH_ATTEMPTS = 2
"""A push that loses to a newer anchor is retried once on top of it."""


@dataclass(frozen=True, slots=True)
class Anchoring:
    """What one call did: the newest anchor it knows of, whether it wrote it, why not if not."""

    anchor: Anchor | None
    written: bool = False
    warning: str | None = None


def anchor_chain(
    store: StateStore,
    location: str,
    state_dir: Path,
    *,
    clock: Callable[[], datetime] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Anchoring:
    """Record the chain's head on this controller's audit ref unless it is there already."""
    now = clock or _utcnow
    try:
        outcome = _anchor(store, location, state_dir, now)
    except Exception as error:  # anchoring must never fail a pass or a promotion
        outcome = Anchoring(None, warning=_describe(error))
    try:
        _remember(store, outcome, now())
    except Exception as error:  # the store refused: say so rather than lose the warning
        outcome = Anchoring(outcome.anchor, outcome.written, outcome.warning or _describe(error))
    if outcome.warning and warn is not None:
        warn(outcome.warning)
    return outcome


def controller_id(state_dir: Path) -> str:
    """The state dir's controller id, created (random) on first use."""
    known = read_controller_id(state_dir)
    if known is not None:
        return known
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / CONTROLLER_ID_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another process wrote it first: use theirs
        return _read_id(path)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secrets.token_hex(8) + "\n")
    return _read_id(path)


def read_controller_id(state_dir: Path) -> str | None:
    """The state dir's controller id, or None when it has none yet."""
    path = state_dir / CONTROLLER_ID_FILE
    return _read_id(path) if path.is_file() else None


def last_failure(store: StateStore) -> str | None:
    """When and why the last anchoring failed, if no anchor got through since."""
    return store.get_meta(FAILURE_META_KEY) or None


def _read_id(path: Path) -> str:
    """The id a `controller.id` file holds, refused when it is not one."""
    with path.open(encoding="ascii", errors="replace") as file:
        text = file.read(100).strip()
    if not CONTROLLER_ID.fullmatch(text):
        raise SourceError(f"{path}: {text[:20]!r} is not a controller id")
    return text


def _anchor(
    store: StateStore, location: str, state_dir: Path, now: Callable[[], datetime]
) -> Anchoring:
    """Anchor the head; when a newer anchor on the remote wins the push, once more on top of it."""
    controller = controller_id(state_dir)
    repo, remote = _workspace(location, state_dir)
    with repo:
        try:
            return _anchor_once(store, repo, remote, controller, now)
        except AnchorPushError as error:
            if not error.behind:
                return Anchoring(None, warning=str(error))
        refresh_anchor(repo, remote, controller)
        try:
            return _anchor_once(store, repo, remote, controller, now)
        except AnchorPushError as error:
            return Anchoring(None, warning=str(error))


def _anchor_once(
    store: StateStore, repo: GitRepo, remote: Remote, controller: str, now: Callable[[], datetime]
) -> Anchoring:
    """Check the chain against the newest anchor, then anchor its head on top if it is newer."""
    newest = newest_anchor(repo, controller)  # read before the head: see _contradiction
    head = _head(store)
    contradiction = _contradiction(store, newest, head)
    if contradiction is not None:
        return Anchoring(newest, warning=contradiction)
    if head is None or (newest is not None and newest.seq == head.seq):
        return Anchoring(newest)
    fresh = Anchor(head.seq, head.hash, now(), controller)
    return Anchoring(write_anchor(repo, remote, fresh, newest), written=True)


def _workspace(location: str, state_dir: Path) -> tuple[GitRepo, Remote]:
    """The repository to write the anchor in, and the remote to push it to from there."""
    if is_local_repo(location):
        repo = GitRepo(location)
        return repo, Remote(str(repo.path))
    mirror = mirror_path(location, state_dir)
    refresh_mirror(location, mirror)  # credentials stay in memory (see source/private.py)
    return GitRepo(mirror), split_credentials(location)


def _head(store: StateStore) -> Event | None:
    """The newest event, or None for an empty chain."""
    newest = store.events(descending=True, limit=1)
    return newest[0] if newest else None


def _contradiction(store: StateStore, anchor: Anchor | None, head: Event | None) -> str | None:
    """Why the chain cannot extend `anchor` (cut off, or rewritten), or None when it does.

    The anchor is read before the head, and events are only ever appended, so a head below
    the anchor means events were removed, not that someone appended meanwhile.
    """
    if anchor is None:
        return None
    head_seq = head.seq if head is not None else 0
    if head_seq < anchor.seq:
        return (
            f"the chain ends at seq {head_seq}, before the {anchor.describe()}: "
            "not anchoring over it (run qrelease audit verify)"
        )
    stored = store.events(after_seq=anchor.seq - 1, limit=1)
    if not stored or stored[0].seq != anchor.seq or stored[0].hash != anchor.head_hash:
        return (
            f"event {anchor.seq} differs from the {anchor.describe()}: "
            "not anchoring over it (run qrelease audit verify)"
        )
    return None


def _remember(store: StateStore, outcome: Anchoring, moment: datetime) -> None:
    """Keep the newest failure in the store's meta; clear it once an anchor gets through."""
    value = f"{moment.isoformat()}: {outcome.warning}" if outcome.warning else ""
    if (store.get_meta(FAILURE_META_KEY) or "") != value:
        store.set_meta(FAILURE_META_KEY, value)


def _describe(error: Exception) -> str:
    """An error as a warning: our own messages as they are, anything else with its type."""
    return str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {error}"


def _utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
