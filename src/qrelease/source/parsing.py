"""Parsing blobs into validated models: the cold path, both cores, and a cache keyed by blob id.

A large repo is mostly release manifests that never change once written, so a parse is
kept by Git blob id (content-addressed: the same bytes always give the same answer) in a
`BlobCache` that every process sharing a state dir reads: a CLI read of an unchanged repo
parses nothing. The cache holds pickles of `ParsedFile`; its key carries `FORMAT`, a digest
of the code that decides what a parse is (the models, this module, the YAML reader), so
an upgraded qrelease never reads an older parse. The store's SQLite cache
(`store/parsecache.py`) is the one implementation; it lives in the state dir (0700).

The cold path parses without recording where each key is (`parse_mapping(lines=False)`),
validates, and parses a file a second time, with lines, only when it has a problem to
report. Garbage collection is paused while a batch is parsed (a YAML document is a few
hundred short-lived objects: with a large heap alive, collections would cost more than the
parse) and a batch of thousands is split with a worker process so both cores parse.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pydantic
import yaml
from pydantic import BaseModel, ValidationError

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.source.yamldoc import (
    PACKED_PART,
    QUOTE_LIMIT,
    Path_,
    YamlDoc,
    YamlError,
    dotted,
    packed_key_lines,
    packed_part,
    parse_mapping,
    quote,
)

MESSAGE_LIMIT = QUOTE_LIMIT + 200
"""No message is longer, whatever a validator put in it (each quoted value is cut first)."""
SCHEMAS: dict[str, type[BaseModel]] = {
    ReleaseManifest.__name__: ReleaseManifest,
    Environment.__name__: Environment,
}
WORKER_TIMEOUT_SECONDS = 600.0
"""A worker that has not answered by then is stopped and its share parsed here."""
PARALLEL_MIN = 2000
"""A batch of at least this many blobs is split with a worker process (when there are 2+ cores)."""


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    """What the loader needs of a valid manifest to settle its release, without the model."""

    app: str
    version: str
    program: str
    target: str

    @classmethod
    def of(cls, manifest: ReleaseManifest) -> ManifestFacts:
        """The facts of a manifest."""
        quantum = manifest.quantum
        return cls(manifest.app, manifest.version, quantum.program, quantum.target.id)


@dataclass(frozen=True, slots=True, eq=False)
class ParsedFile:
    """A parse of one blob: the model or its problems, and the key lines.

    `located` is False when the key lines were not recorded (a valid manifest: nothing to
    point at); a caller that needs one after all parses the blob again with lines.

    A valid manifest carries its `facts`. As the loader keeps it (fresh or from the cache),
    its model is `packed` (its own pickle) and decoded on first `manifest()`: a status read
    or a controller's pass over 30,000 releases needs each one's target, not 30,000 models
    of nine parts each.
    """

    model: BaseModel | None
    problems: tuple[tuple[int, str, str], ...]
    lines: Mapping[Path_, int]
    located: bool = True
    facts: ManifestFacts | None = None
    packed: bytes | None = None

    @property
    def target(self) -> str:
        """The target a valid manifest is pinned to (known without decoding it)."""
        if self.facts is None:
            raise ValueError("not a valid release manifest")
        return self.facts.target

    def manifest(self) -> ReleaseManifest | None:
        """The valid manifest this parse holds (decoded now if it is still packed)."""
        if self.model is None and self.packed is not None:
            model = pickle.loads(self.packed)  # noqa: S301 checked with its cache entry
            if not isinstance(model, ReleaseManifest):
                raise RuntimeError(f"a packed manifest decoded to {type(model).__name__}")
            object.__setattr__(self, "model", model)  # same value, decoded: a memo, not a change
            object.__setattr__(self, "packed", None)
        return self.model if isinstance(self.model, ReleaseManifest) else None

    def cached(self) -> ParsedFile:
        """The form the cache stores: a manifest's model packed behind its facts."""
        if self.facts is None or self.model is None:
            return self
        packed = pickle.dumps(self.model, protocol=5)
        return ParsedFile(None, self.problems, self.lines, self.located, self.facts, packed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParsedFile):
            return NotImplemented
        mine = self.manifest() if self.facts is not None else self.model
        theirs = other.manifest() if other.facts is not None else other.model
        same = (self.problems, dict(self.lines), self.located, self.facts)
        return mine == theirs and same == (
            other.problems,
            dict(other.lines),
            other.located,
            other.facts,
        )

    def __hash__(self) -> int:
        return hash((self.problems, self.facts))


class BlobCache(Protocol):
    """Parses by key, shared between processes; a missing or damaged entry is simply absent."""

    def get_many(self, keys: Collection[str]) -> dict[str, bytes]:
        """The stored values of those keys that are present and intact."""
        ...

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store values (a key already present keeps the same value: parses are pure)."""
        ...

    def discard(self, keys: Collection[str]) -> None:
        """Drop entries that did not decode."""
        ...


def _fingerprint() -> str:
    """A digest of what decides a parse: our model and parser sources, pydantic, PyYAML, Python."""
    here = Path(__file__).resolve().parent
    model = sorted((here.parent / "model").glob("*.py"))
    sources = [*model, here / "yamldoc.py", here / "parsing.py"]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    versions = (pydantic.VERSION, yaml.__version__, sys.version, str(pickle.HIGHEST_PROTOCOL))
    digest.update("\0".join(versions).encode())
    return digest.hexdigest()[:16]


FORMAT = _fingerprint()
"""Changes whenever a cached parse could differ: part of every cache key."""


def cache_key(schema: str, blob: str) -> str:
    """The cache key of one blob read as one schema."""
    return f"{FORMAT}:{schema}:{blob}"


def parse_file(raw: bytes, schema: type[BaseModel]) -> ParsedFile:
    """One file's model, or its problems; nothing in the file makes this raise."""
    located = schema is not ReleaseManifest  # environment files: pins and fields need lines
    try:
        doc = parse_mapping(raw, lines=located)
    except YamlError as exc:
        return ParsedFile(None, ((exc.line, exc.field, capped(exc.message)),), {})
    try:
        model = schema.model_validate(doc.data)
        facts = ManifestFacts.of(model) if isinstance(model, ReleaseManifest) else None
        return ParsedFile(model, (), doc.lines, located, facts)
    except ValidationError as exc:
        doc = doc if located else parse_mapping(raw)  # the same data, now with its lines
        return ParsedFile(None, tuple(_problems(exc, doc)), doc.lines)
    except Exception as exc:  # a validator that raised past pydantic: still this file's problem
        message = f"could not be validated: {type(exc).__name__}: {quote(str(exc))}"
        return ParsedFile(None, ((1, "", message),), {})


def lines_of(raw: bytes) -> Mapping[Path_, int]:
    """The key lines of a blob that parsed before (empty if it somehow no longer does)."""
    try:
        return parse_mapping(raw).lines
    except YamlError:
        return {}


LINES_SCHEMA = "lines"
"""The cache's name for a blob's key lines (what `qrelease validate` points its findings at)."""


def lines_many(
    read: Callable[[list[str]], Mapping[str, bytes]],
    blobs: Collection[str],
    cache: BlobCache | None,
) -> dict[str, KeyLines]:
    """The key lines of each blob: from the cache, else read (by `read`), parsed and offered to it.

    Lines are as pure a function of the blob as its parse, so they are kept by blob id too:
    a second `validate` that warns about every manifest of a large repo reads no blob.
    """
    keys = {blob: cache_key(LINES_SCHEMA, blob) for blob in blobs}
    found: dict[str, KeyLines] = {}
    if cache is not None and keys:
        stored = cache.get_many(list(keys.values()))
        found = {
            blob: KeyLines(stored[key])
            for blob, key in keys.items()
            if KeyLines.looks_packed(stored.get(key))
        }
    missing = [blob for blob in keys if blob not in found]
    if missing:
        raw = read(missing)
        with paused_gc():
            fresh = {blob: KeyLines(packed_key_lines(raw[blob])) for blob in missing if blob in raw}
        found |= fresh
        if cache is not None and fresh:
            cache.put_many({keys[blob]: lines.packed for blob, lines in fresh.items()})
    return found


class KeyLines:
    """The key lines of one document, packed as text and searched, not decoded.

    Each key path is one line of `packed` (`yamldoc.pack_lines`): a large repo's 30,000
    cached entries cost a read each, not a dictionary of tuples each. An entry that is not
    shaped as one is parsed again.
    """

    __slots__ = ("packed",)

    def __init__(self, packed: bytes) -> None:
        self.packed = packed

    @staticmethod
    def looks_packed(value: bytes | None) -> bool:
        """True for bytes shaped as `packed` is (anything else is re-parsed and replaced)."""
        return value is not None and value[:1] == b"\n" and value[-1:] == b"\n"

    def line(self, path: Path_) -> int | None:
        """The line of exactly this key path, if the document has it."""
        packed = PACKED_PART.join(map(packed_part, path))
        needle = ("\n" + packed + "\t").encode("utf-8", "surrogatepass")
        start = self.packed.find(needle)
        if start < 0:
            return None
        start += len(needle)
        end = self.packed.find(b"\n", start)
        text = self.packed[start:end] if end >= 0 else b""
        return int(text) if text.isdigit() else None

    def line_of(self, path: Path_) -> int:
        """The line of the longest prefix of `path` the document has (1 if none)."""
        for end in range(len(path), 0, -1):
            found = self.line(path[:end])
            if found is not None:
                return found
        return 1


FREEZE_AFTER = 100_000
"""A paused stretch that leaves more new objects than this behind freezes them (see paused_gc)."""


@contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """Collections off for a batch of parses (reference counting still frees every node).

    With `freeze`, what the stretch left behind (a large load: models that live as long as
    their snapshot, and hold no reference cycles) is moved out of the collector's sight with
    `gc.freeze()`, so later collections do not walk it again and again. Replaced models are
    still freed by reference counting; cyclic garbage that happens to be alive at that
    moment is kept (once per large load).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze and gc.get_count()[0] > FREEZE_AFTER:
                gc.freeze()
            gc.enable()


Parsed = tuple[ParsedFile, bytes]
"""A parse and its pickle, as the cache stores it."""


def parse_batch(items: Sequence[tuple[str, bytes]]) -> list[Parsed]:
    """Parse (schema name, raw) pairs: each parse in the form the cache keeps (a manifest's
    model packed, so a batch of thousands never holds thousands of models at once)."""
    out = []
    with paused_gc():
        for name, raw in items:
            kept = parse_file(raw, SCHEMAS[name]).cached()
            out.append((kept, pickle.dumps(kept, protocol=5)))
    return out


def pickled_batch(items: Sequence[tuple[str, bytes]]) -> list[bytes]:
    """`parse_batch` in the worker process (`source/parse_worker.py`): only pickles go back."""
    return [value for _parsed, value in parse_batch(items)]


def decode(value: bytes) -> ParsedFile | None:
    """A cached parse, or None when the stored bytes are not one."""
    try:
        parsed = pickle.loads(value)  # noqa: S301 our own cache, 0600 in the 0700 state dir
    except Exception:  # a damaged entry is a miss: whatever unpickling raised
        return None
    return parsed if isinstance(parsed, ParsedFile) else None


def parse_many(items: Sequence[tuple[str, bytes]]) -> list[Parsed]:
    """`parse_batch`, with a worker process taking part of a large batch on a multi-core host.

    The worker is `python -m qrelease.source.parse_worker`, not a multiprocessing child:
    it needs neither a fork of a threaded daemon nor an importable `__main__`. If it fails
    in any way, its share is parsed here.
    """
    if len(items) < PARALLEL_MIN or (os.cpu_count() or 1) < 2:
        return parse_batch(items)
    split = len(items) * 9 // 20  # ours also unpickles theirs: give the worker a bit more
    worker = _Worker(items[split:])
    ours = parse_batch(items[:split])
    pickles = worker.result()
    if pickles is None or len(pickles) != len(items) - split:
        return ours + parse_batch(items[split:])
    with paused_gc():
        theirs = [(decode(value), value) for value in pickles]
    if any(parsed is None for parsed, _value in theirs):
        return ours + parse_batch(items[split:])
    return ours + [(parsed, value) for parsed, value in theirs if parsed is not None]


class _Worker:
    """One `parse_worker` process fed a batch; its answer is collected by a thread."""

    def __init__(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._output: bytes | None = None
        payload = pickle.dumps(list(items), protocol=5)
        try:
            self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "qrelease.source.parse_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._process = None
            return
        self._thread = threading.Thread(target=self._talk, args=(payload,), daemon=True)
        self._thread.start()

    def _talk(self, payload: bytes) -> None:
        assert self._process is not None
        try:
            output, _ = self._process.communicate(payload, timeout=WORKER_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.communicate()
            return
        if self._process.returncode == 0:
            self._output = output

    def result(self) -> list[bytes] | None:
        """The worker's pickles, or None when it failed."""
        if self._process is None:
            return None
        self._thread.join()
        output, self._output = self._output, None  # a batch's answer is tens of MiB: kept once
        if output is None:
            return None
        try:
            values = pickle.loads(output)  # noqa: S301 our own child's answer
        except Exception:
            return None
        return values if isinstance(values, list) else None


# -- validation errors as file problems ---------------------------------------------------


def capped(message: str) -> str:
    """A message cut to `MESSAGE_LIMIT` characters."""
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


def _problems(exc: ValidationError, doc: YamlDoc) -> list[tuple[int, str, str]]:
    errors = exc.errors(include_url=False)
    locs = [_present_loc(_field_of(error), doc.data) for error in errors]
    out = []
    for error, loc in zip(errors, locs, strict=True):
        if error["type"] == "too_short" and any(o[: len(loc)] == loc != o for o in locs):
            continue  # a list emptied by its own items' errors: those errors say it better
        out.append((doc.line_of(loc), dotted(loc), _message(error)))
    return out


def _field_of(error: Any) -> tuple[int | str, ...]:
    """A pydantic error's location; a discriminated union's error is its discriminator's."""
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*error["loc"], str(error["ctx"]["discriminator"]).strip("'"))
    return tuple(error["loc"])


def _present_loc(loc: tuple[int | str, ...], data: Any) -> Path_:
    """The part of a pydantic error location that exists in the document (drops union tags)."""
    present: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and str(part) in node:
            present.append(str(part))
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            present.append(part)
            node = node[part]
        elif index == len(loc) - 1 and str(part).isidentifier():
            present.append(part)
    return tuple(present)


def _message(error: Any) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind in ("missing", "union_tag_not_found"):
        return "required field is missing"
    if kind == "union_tag_invalid":
        expected = str(error["ctx"]["expected_tags"]).replace("'", "")
        return f"{quote(error['ctx']['tag'])} is not one of {expected}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "").replace("'", "")
        return f"{quote(given)} is not one of {expected.replace(' or ', ', ')}"
    if kind == "literal_error":
        return f"{quote(given)} is not one of {error.get('ctx', {}).get('expected', '')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(given, str) and len(given) > QUOTE_LIMIT:  # validators quote the whole value
        message = message.replace(repr(given), quote(given))
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message} (got {quote(given)})"
    return capped(message)
