"""Who changed which pin, when and why: environment-file history read from Git.

Commits made by qrelease carry `Qrelease-*` trailers; any other commit that edits
`releases/*.yaml` by hand is still found, by comparing the pins before and after it.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from threading import Lock

from qrelease.source.repo import GitRepo
from qrelease.source.yamldoc import YamlError, parse_mapping

_FIELD = "\x1f"
_RECORD = "\x1e"
_FORMAT = _RECORD + _FIELD.join(["%H", "%an <%ae>", "%cI", "%G?", "%B"])
_RAW = ["--raw", "--no-abbrev", "--no-renames"]
_CACHE_SIZE = 256
_CACHE_PINS = 100_000
"""The cache holds at most this many pins in all (about 10 MiB): an environment file of
10,000 apps is 10,000 pins, so 256 versions of it would otherwise hold a quarter GiB."""
_PIN_CACHE: OrderedDict[str, Mapping[str, str]] = OrderedDict()
"""Pins by blob id: content-addressed, so one cache serves every repository and revision."""
_CACHE_LOCK = Lock()
_cached_pins = [0]
"""How many pins `_PIN_CACHE` holds (a list: changed under the lock, never rebound)."""
SIGNATURE_STATUS = {
    "G": "good",
    "B": "bad",
    "U": "untrusted",
    "X": "expired",
    "Y": "expired key",
    "R": "revoked key",
    "E": "unverifiable",
    "N": "unsigned",
}


@dataclass(frozen=True)
class PinCommit:
    """One pin moved by one commit; `override` is what its `Qrelease-Override` trailer names."""

    commit: str
    time: datetime
    author: str
    signature: str
    env: str
    app: str
    from_version: str | None
    to_version: str | None
    action: str
    reason: str
    override: tuple[str, ...] = ()


def pin_commits(repo: GitRepo, rev: str, since: datetime | None = None) -> list[PinCommit]:
    """Every pin change on the history of `rev`, newest first."""
    args = ["--format=" + _FORMAT, *_RAW]
    if since is not None:
        args.append(f"--since={since.isoformat()}")
    output = repo.git.log(*args, rev, "--", "releases")
    changes: list[PinCommit] = []
    for record in output.split(_RECORD):
        if record.strip():
            changes += _changes(repo, record)
    return changes


KnownPins = Callable[[str], Mapping[str, str] | None]
"""Pins of a blob someone already parsed (the controller's loader), or None to parse it."""


def _changes(repo: GitRepo, record: str, known: KnownPins | None = None) -> list[PinCommit]:
    commit, author, when, signature, rest = record.strip("\n").split(_FIELD, 4)
    body, _, raw = rest.rstrip("\n").rpartition("\n\n")
    trailers = _trailers(body)
    out = []
    for path, old_blob, new_blob in _raw_entries(raw):
        env = path.removeprefix("releases/").rsplit(".", 1)[0]
        before, after = _pins(repo, old_blob, known), _pins(repo, new_blob, known)
        for app in sorted(set(before) | set(after)):
            if before.get(app) != after.get(app):
                manual = trailers.get("App") != app or trailers.get("Env") != env
                action = "pin" if manual else trailers.get("Action", "pin")
                reason = "" if manual else trailers.get("Reason", "")
                out.append(
                    PinCommit(
                        commit,
                        datetime.fromisoformat(when),
                        author,
                        SIGNATURE_STATUS.get(signature, signature),
                        env,
                        app,
                        before.get(app),
                        after.get(app),
                        action,
                        reason or body.splitlines()[0] if body else "",
                        () if manual else _names(trailers.get("Override", "")),
                    )
                )
    return out


def _raw_entries(raw: str) -> list[tuple[str, str, str]]:
    """(path, old blob, new blob) of each `releases/` file in `git log --raw` output."""
    entries = []
    for line in raw.splitlines():
        meta, tab, path = line.partition("\t")
        fields = meta.split()
        if tab and line.startswith(":") and len(fields) >= 4 and path.startswith("releases/"):
            entries.append((path, fields[2], fields[3]))
    return entries


class PinHistory:
    """The pin changes of environment files on the history of `rev`, read a page at a time.

    The pin that just moved is almost always in the file's newest commit, so asking about
    every app of an environment usually costs one `git log` for all of them.
    """

    def __init__(
        self, repo: GitRepo, rev: str, known: KnownPins | None = None, page: int = 20
    ) -> None:
        self._repo, self._rev, self._known, self._page = repo, rev, known, page
        self._changes: dict[str, list[PinCommit]] = {}  # env -> changes read so far
        self._pending: dict[str, list[str]] = {}  # env -> log records not yet compared
        self._skip: dict[str, int | None] = {}  # env -> commits fetched; None when all were

    def last_change(self, env: str, app: str) -> PinCommit | None:
        """The newest commit that moved `apps.<app>` in `releases/<env>.yaml`."""
        changes = self._changes.setdefault(env, [])
        pending = self._pending.setdefault(env, [])
        for change in changes:
            if change.app == app:
                return change
        while pending or self._fetch(env, pending):
            found = [c for c in _changes(self._repo, pending.pop(0), self._known) if c.env == env]
            changes += found
            for change in found:
                if change.app == app:
                    return change
        return None

    def _fetch(self, env: str, pending: list[str]) -> bool:
        """Read the next page of the file's history into `pending`; False when none is left."""
        skip = self._skip.get(env, 0)
        if skip is None:
            return False
        path = f"releases/{env}.yaml"
        args = ["--format=" + _FORMAT, *_RAW, f"-n{self._page}", f"--skip={skip}"]
        output = self._repo.git.log(*args, self._rev, "--", path)
        records = [record for record in output.split(_RECORD) if record.strip()]
        pending += records
        self._skip[env] = None if len(records) < self._page else skip + self._page
        return bool(records)


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))


def _trailers(body: str) -> dict[str, str]:
    found = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Qrelease-"):
            found[key.removeprefix("Qrelease-")] = value.strip()
    return found


def _pins(repo: GitRepo, blob: str, known: KnownPins | None = None) -> Mapping[str, str]:
    """The `apps` pins of one environment-file blob; parses are shared by blob id."""
    if not blob.strip("0"):
        return {}  # the file did not exist on that side of the change
    if known is not None and (pins := known(blob)) is not None:
        return pins
    with _CACHE_LOCK:
        if blob in _PIN_CACHE:
            _PIN_CACHE.move_to_end(blob)
            return _PIN_CACHE[blob]
    try:
        data = parse_mapping(repo.read_blob(blob)).data  # a hostile old file is no pins
    except YamlError:
        data = {}
    apps = data.get("apps")
    # Interned: every version of a file names the same apps and mostly the same versions.
    pins = (
        {sys.intern(str(k)): sys.intern(str(v)) for k, v in apps.items()}
        if isinstance(apps, dict)
        else {}
    )
    with _CACHE_LOCK:
        if blob not in _PIN_CACHE:
            _PIN_CACHE[blob] = pins
            _cached_pins[0] += len(pins)
        while len(_PIN_CACHE) > 1 and (
            len(_PIN_CACHE) > _CACHE_SIZE or _cached_pins[0] > _CACHE_PINS
        ):
            _cached_pins[0] -= len(_PIN_CACHE.popitem(last=False)[1])
    return pins


def rollback_hold(repo: GitRepo, rev: str, env: str, app: str) -> PinCommit | None:
    """The rollback commit holding this pin, when the pin's latest change was a rollback."""
    for change in pin_commits(repo, rev):
        if change.env == env and change.app == app:
            return change if change.action == "rollback" else None
    return None
