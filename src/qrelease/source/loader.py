"""Desired state at a revision: every manifest and environment file, validated, with all errors.

The loader never stops at the first problem: it returns the valid models *and* one
`LoadError` per problem, each naming the file, line and field, so one bad file never hides
the rest. Nothing a file holds makes a load raise: whatever goes wrong reading one file is a
problem of that file, and a file's problems are capped so a hostile one cannot flood the
report. A load after the first re-reads only the files git says changed since the last
one, so a one-pin commit costs a `git diff-tree` and one parse, however large the repo.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.source.parsing import (
    BlobCache,
    ManifestFacts,
    ParsedFile,
    cache_key,
    decode,
    lines_of,
    parse_many,
    paused_gc,
)
from qrelease.source.parsing import parse_file as parse_file  # tests and tools use it here
from qrelease.source.repo import TRACKED_ROOTS, GitRepo, TreeEntry
from qrelease.source.yamldoc import MAX_FILE_BYTES, Path_

YAML_SUFFIXES = (".yaml", ".yml")
INCREMENTAL_LIMIT = 256
"""More changed files than this and a load lists the whole tree (sizes come with the list)."""
SMALL_READ = 8
"""Up to this many blobs are read through the persistent reader rather than a new batch."""
MAX_FILE_PROBLEMS = 50
"""A file reports this many problems, then one line saying how many more it has."""
KEEP_FILES = (".gitkeep",)
"""Files allowed directly in manifests/ and releases/ besides the ones the loader reads."""


@dataclass(frozen=True, order=True)
class LoadError:
    """One problem in one file; renders as `path:line: field: message`."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class Snapshot:
    """The desired state at one revision: valid models plus every error found."""

    revision: str
    manifests: Mapping[tuple[str, str], ReleaseManifest]
    environments: Mapping[str, Environment]
    programs: Mapping[str, str]
    pin_lines: Mapping[tuple[str, str], int]
    errors: tuple[LoadError, ...]
    env_paths: Mapping[str, str] = field(default_factory=dict)
    broken_envs: Mapping[str, LoadError] = field(default_factory=dict)
    """Environments whose file exists but is invalid, with its first problem: their apps hold."""
    pin_problems: Mapping[tuple[str, str], LoadError] = field(default_factory=dict)
    """(env, app) pins that name no valid release, with the problem."""

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.errors

    def manifest(self, app: str, version: str) -> ReleaseManifest | None:
        """The valid manifest of a release, if there is one."""
        return self.manifests.get((app, version))

    def release(self, app: str, version: str) -> ParsedFile | ReleaseManifest | None:
        """A valid release (a `planning.Release`): its target at once, its manifest on use."""
        if isinstance(self.manifests, ManifestView):
            return self.manifests.parse((app, version))
        return self.manifest(app, version)

    def program_blob(self, manifest: ReleaseManifest) -> str | None:
        """The blob id of a manifest's program at this revision."""
        return self.programs.get(program_path(manifest.app, manifest.quantum.program))

    def pins(self, env_filter: str | None = None) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(env, app) -> (pinned version, its target when the release is valid)."""
        out: dict[tuple[str, str], tuple[str, str | None]] = {}
        for name, env in self.environments.items():
            if env_filter not in (None, name):
                continue
            for app, version in env.apps.items():
                release = self.release(app, version)  # its target: no manifest decoded
                out[(name, app)] = (version, release.target if release is not None else None)
        return out

    def versions(self, app: str) -> list[str]:
        """Every valid version of an app."""
        return [version for (name, version) in self.manifests if name == app]


class ManifestView(Mapping[tuple[str, str], ReleaseManifest]):
    """A snapshot's valid manifests by (app, version), each decoded when first asked for.

    Keys, `in` and `facts` cost no decoding; a value read from the parse cache is unpickled
    on first access and kept (the parse is shared by every later snapshot that has it).
    """

    __slots__ = ("_parsed",)

    def __init__(self, parsed: Mapping[tuple[str, str], ParsedFile]) -> None:
        self._parsed = parsed

    def __getitem__(self, key: tuple[str, str]) -> ReleaseManifest:
        manifest = self._parsed[key].manifest()
        if manifest is None:
            raise KeyError(key)
        return manifest

    def __contains__(self, key: object) -> bool:
        return key in self._parsed

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)

    def values(self) -> ValuesView[ReleaseManifest]:
        """Every valid manifest (decoded together first: see `decode`)."""
        self.decode()
        return super().values()

    def items(self) -> ItemsView[tuple[str, str], ReleaseManifest]:
        """Every valid release and its manifest (decoded together first: see `decode`)."""
        self.decode()
        return super().items()

    def decode(self) -> None:
        """Decode every release's manifest at once, collections paused.

        Thousands of models decoded one by one between other work would be walked again
        and again by the garbage collector; decoded together they are frozen out of its
        sight, as a cold load's parses are (`paused_gc`).
        """
        with paused_gc(freeze=True):
            for found in self._parsed.values():
                if found.model is None:
                    found.manifest()

    def parse(self, key: tuple[str, str]) -> ParsedFile | None:
        """A valid release's parse (its manifest decoded on `manifest()`)."""
        return self._parsed.get(key)


def program_path(app: str, program: str) -> str:
    """Repo path of a manifest's program."""
    return f"manifests/{app}/{program}"


Key = tuple[str, str]
"""An (app, version) pair: the folder and file stem of a manifest."""


@dataclass(frozen=True)
class _Release:
    """What the files of one (app, version) add up to at a revision."""

    path: str  # the first of its files in git order: errors about the release name it
    manifest: ParsedFile | None  # None when any file of the release has a problem
    program: str | None  # the program path a well-formed manifest names (checked or not)
    errors: tuple[LoadError, ...]


class _Tree:
    """Everything one load learned, file by file, so the next load redoes only what changed.

    A tree is never changed after it backs a snapshot: the next load works on a copy
    (dict copies of a few thousand entries each: well under a millisecond).
    """

    def __init__(self, revision: str = "") -> None:
        self.revision = revision
        self.entries: dict[str, TreeEntry] = {}
        self.parsed: dict[str, ParsedFile] = {}  # manifest and environment files
        self.file_errors: dict[str, LoadError] = {}  # symlinks and unsupported entries
        self.key_paths: dict[Key, tuple[str, ...]] = {}  # a release's files, in git order
        self.programs: dict[str, str] = {}  # program path -> blob id
        self.users: dict[str, frozenset[Key]] = {}  # program path -> releases naming it
        self.releases: dict[Key, _Release] = {}
        self.manifests: dict[Key, ParsedFile] = {}  # valid releases (models decoded on use)
        self.env_files: dict[str, None] = {}  # releases/*.yaml paths
        self.failing: dict[Key, tuple[LoadError, ...]] = {}  # releases with errors
        self.pins: dict[str, _Pins] = {}  # environment file -> its checked pins
        self.dirty: frozenset[Key] = frozenset()  # releases the last update re-settled

    def copy(self, revision: str) -> _Tree:
        """A copy to update for the next revision (values are immutable, dicts are new)."""
        tree = _Tree(revision)
        for name, value in vars(self).items():
            if isinstance(value, dict):
                setattr(tree, name, dict(value))
        return tree

    def blob_parses(self) -> dict[tuple[str, str], ParsedFile]:
        """Its parses by (schema, blob id), to reuse in a load that lists the whole tree."""
        return {
            (_schema_name(path), self.entries[path].sha): parsed
            for path, parsed in self.parsed.items()
        }


class Loader:
    """Loads snapshots from a repo, re-reading only the files that changed since the last load.

    The first load lists the tree and parses every file. Later loads ask git what changed
    since the revision loaded last (`git diff-tree`, about a millisecond) and re-parse and
    re-check only those files and the releases they touch; a large change or an unrelated
    revision lists the whole tree again and still reuses every parse whose blob is unchanged.
    With a `cache` (the state dir's, shared by every process), a blob any process parsed
    before is not parsed again. `roots` narrows what is read (the TUI draws its first frame
    from `releases/` alone).
    """

    def __init__(
        self,
        repo: GitRepo,
        roots: tuple[str, ...] = TRACKED_ROOTS,
        *,
        cache: BlobCache | None = None,
    ) -> None:
        self._repo = repo
        self._roots = roots
        self._cache = cache
        self._tree: _Tree | None = None
        self._last: Snapshot | None = None
        self._recent: dict[tuple[str, str], ParsedFile] = {}  # what the last load replaced
        self.parse_count = 0
        self.cache_hits = 0

    @property
    def cached_parses(self) -> int:
        """How many parses the loader holds: its tree's, plus those the last load replaced."""
        return len(self._tree.parsed if self._tree else ()) + len(self._recent)

    def known_pins(self, blob: str) -> Mapping[str, str] | None:
        """The pins of an environment-file blob this loader parsed (now or one load ago).

        Lets the pin history (`pinlog`) skip re-parsing the file versions a controller has
        just loaded; None when the blob is unknown or did not validate.
        """
        found = self._recent.get((Environment.__name__, blob))
        if found is None and self._tree is not None:
            for path in self._tree.env_files:
                entry = self._tree.entries.get(path)
                if entry is not None and entry.sha == blob:
                    found = self._tree.parsed.get(path)
                    break
        model = found.model if found is not None else None
        return model.apps if isinstance(model, Environment) else None

    def load(self, rev: str = "HEAD") -> Snapshot:
        """Read and validate every manifest and environment file at `rev`."""
        revision = self._repo.resolve(rev)
        if self._last is not None and self._last.revision == revision:
            return self._last  # the engine, the status view and auto-promotion share one load
        base = self._tree or _Tree()
        changes = self._changes_since(base, revision)
        reuse = base.blob_parses() if len(changes) > INCREMENTAL_LIMIT else {}
        with paused_gc(freeze=True):  # thousands of new objects that stay: nothing to collect
            tree = base.copy(revision)
            self._apply(tree, changes, reuse)
            self._tree = tree
            self._last = _snapshot(tree)
        return self._last

    def _changes_since(self, base: _Tree, revision: str) -> dict[str, TreeEntry | None]:
        """Path -> new entry (None: deleted) between the base tree and `revision`."""
        if base.revision:
            changed = self._repo.changed_entries(base.revision, revision, self._roots)
            if changed is not None and len(changed) <= INCREMENTAL_LIMIT:
                return changed
        listed = {e.path: e for e in self._repo.list_files(revision, self._roots)}
        changes: dict[str, TreeEntry | None] = {
            path: entry for path, entry in listed.items() if base.entries.get(path) != entry
        }
        changes.update({path: None for path in base.entries if path not in listed})
        return changes

    def _apply(
        self,
        tree: _Tree,
        changes: Mapping[str, TreeEntry | None],
        reuse: Mapping[tuple[str, str], ParsedFile],
    ) -> None:
        """Bring `tree` up to date with the changed files, then re-settle what they touch."""
        dirty: set[Key] = set()
        to_parse: list[TreeEntry] = []
        dropped: dict[tuple[str, str], ParsedFile] = {}
        for path in sorted(changes):
            entry = changes[path]
            if path in tree.parsed:  # flipping back to this blob next load re-parses nothing
                dropped[(_schema_name(path), tree.entries[path].sha)] = tree.parsed[path]
            dirty |= _forget(tree, path)
            if entry is None:
                continue
            tree.entries[path] = entry
            if entry.is_symlink:
                msg = "symbolic links are not allowed here"
                tree.file_errors[path] = LoadError(path, 0, "", msg)
            elif not entry.is_regular:
                msg = f"unsupported git entry (mode {entry.mode})"
                tree.file_errors[path] = LoadError(path, 0, "", msg)
            elif (kind := _kind(path)) is ReleaseManifest:
                key = _key(path)
                tree.key_paths[key] = tuple(sorted((*tree.key_paths.get(key, ()), path)))
                dirty.add(key)
                to_parse.append(entry)
            elif kind is Environment:
                tree.env_files[path] = None
                to_parse.append(entry)
            elif kind is _Program:
                tree.programs[path] = entry.sha
                dirty |= tree.users.get(path, frozenset())
            elif (misplaced := _misplaced(path)) is not None:
                tree.file_errors[path] = LoadError(path, 0, "", misplaced)
        self._recent.update(dropped)  # a blob that only moved to another path is not re-parsed
        self._parse_all(tree, to_parse, reuse)
        self._recent = dropped  # memory stays flat: one change set, however long it runs
        for key in dirty:
            _settle(tree, key, lambda path: self._lines(tree, path))
        tree.dirty = frozenset(dirty)

    def _parse_all(
        self, tree: _Tree, entries: list[TreeEntry], reuse: Mapping[tuple[str, str], ParsedFile]
    ) -> None:
        """Parse the entries: reuse what this loader or the cache holds, read the rest at once."""
        found: dict[str, ParsedFile] = {}
        for entry in entries:
            key = (_schema_name(entry.path), entry.sha)
            parsed = reuse.get(key) or self._recent.get(key)
            if parsed is None and entry.size > MAX_FILE_BYTES:
                msg = f"file is {entry.size} bytes; the limit is {MAX_FILE_BYTES} (1 MiB)"
                parsed = ParsedFile(None, ((0, "", msg),), {})
            if parsed is not None:
                found[entry.path] = parsed
        keys = {entry.path: cache_key(_schema_name(entry.path), entry.sha) for entry in entries}
        missing = {keys[entry.path]: entry for entry in entries if entry.path not in found}
        by_key = self._cached(missing)
        by_key |= self._parsed({k: entry for k, entry in missing.items() if k not in by_key})
        for entry in entries:
            tree.parsed[entry.path] = found.get(entry.path) or by_key[keys[entry.path]]

    def _cached(self, wanted: Mapping[str, TreeEntry]) -> dict[str, ParsedFile]:
        """The parses the shared cache holds for these keys."""
        if self._cache is None or not wanted:
            return {}
        hits: dict[str, ParsedFile] = {}
        damaged = []
        for key, value in self._cache.get_many(list(wanted)).items():
            parsed = decode(value)
            if parsed is None:
                damaged.append(key)
            else:
                hits[key] = parsed
        if damaged:
            self._cache.discard(damaged)
        self.cache_hits += len(hits)
        return hits

    def _parsed(self, wanted: Mapping[str, TreeEntry]) -> dict[str, ParsedFile]:
        """Read and parse blobs nobody parsed before, and offer the parses to the cache."""
        if not wanted:
            return {}
        blobs = self._read(list(dict.fromkeys(entry.sha for entry in wanted.values())))
        items = [(_schema_name(e.path), blobs[e.sha]) for e in wanted.values()]
        del blobs  # the raw files go as soon as they are parsed (a cold load: tens of MiB)
        results = parse_many(items)
        del items
        self.parse_count += len(wanted)
        if self._cache is not None:
            self._cache.put_many(
                {key: value for key, (_parsed, value) in zip(wanted, results, strict=True)}
            )
        return {key: parsed for key, (parsed, _value) in zip(wanted, results, strict=True)}

    def _read(self, shas: list[str]) -> dict[str, bytes]:
        """Blob contents: a few through the persistent reader, many in one batch process."""
        if len(shas) > SMALL_READ:
            return self._repo.read_blobs(shas)
        return {sha: self._repo.read_blob(sha) for sha in shas}

    def _lines(self, tree: _Tree, path: str) -> Mapping[Path_, int]:
        """The key lines of a parsed file, reading the blob again when they were not kept."""
        parsed = tree.parsed[path]
        if parsed.located:
            return parsed.lines
        return lines_of(self._repo.read_blob(tree.entries[path].sha))


class _Program:
    """Marks a file in an app's folder that is not a manifest (a Q# program or its parts)."""


def _kind(path: str) -> type | None:
    """What a regular file at this path is: a manifest, an environment, an app's file, or none."""
    parts = path.split("/")
    if parts[0] == "manifests" and len(parts) == 3 and _is_yaml(path):
        return ReleaseManifest
    if parts[0] == "manifests" and len(parts) >= 3:
        return _Program
    if parts[0] == "releases" and len(parts) == 2 and _is_yaml(path):
        return Environment
    return None


def _misplaced(path: str) -> str | None:
    """Why a file the loader does not read has no business where it is (None: it may be there).

    >>> _misplaced("releases/sub/dev.yaml")
    'not read: environment files are releases/<env>.yaml, without subfolders'
    >>> _misplaced("manifests/.gitkeep") is None
    True
    """
    parts = path.split("/")
    if len(parts) == 2 and parts[1] in KEEP_FILES:
        return None
    if parts[0] == "manifests":
        return "not read: manifests are manifests/<app>/<version>.yaml, in a folder per app"
    if parts[0] == "releases" and len(parts) == 2:
        return "not read: environment files are releases/<env>.yaml (or .yml)"
    return "not read: environment files are releases/<env>.yaml, without subfolders"


def _schema_name(path: str) -> str:
    kind = _kind(path)
    return kind.__name__ if kind is not None else ""


def _key(path: str) -> Key:
    """The (app, version) a manifest file claims: its folder and its file stem."""
    _root, app_dir, name = path.split("/")
    return app_dir, name.rsplit(".", 1)[0]


def _forget(tree: _Tree, path: str) -> set[Key]:
    """Drop what an old file at `path` contributed; returns the releases that must re-settle."""
    old = tree.entries.pop(path, None)
    tree.parsed.pop(path, None)
    tree.file_errors.pop(path, None)
    tree.env_files.pop(path, None)
    if old is None or not old.is_regular:
        return set()
    kind = _kind(path)
    if kind is ReleaseManifest:
        key = _key(path)
        rest = tuple(p for p in tree.key_paths.get(key, ()) if p != path)
        if rest:
            tree.key_paths[key] = rest
        else:
            tree.key_paths.pop(key, None)
        return {key}
    if kind is _Program:
        tree.programs.pop(path, None)
        return set(tree.users.get(path, frozenset()))
    return set()


Locate = Callable[[str], Mapping[Path_, int]]
"""The key lines of a parsed file by path (read again when the parse did not keep them)."""


def _settle(tree: _Tree, key: Key, locate: Locate) -> None:
    """Recompute one release from its files: valid manifest or the errors that say why not."""
    old = tree.releases.pop(key, None)
    tree.manifests.pop(key, None)
    tree.failing.pop(key, None)
    if old is not None and old.program is not None:
        users = tree.users.get(old.program, frozenset()) - {key}
        if users:
            tree.users[old.program] = users
        else:
            tree.users.pop(old.program, None)
    paths = tree.key_paths.get(key)
    if not paths:
        return
    errors: list[LoadError] = []
    model: ParsedFile | None = None
    for index, path in enumerate(paths):
        parsed = tree.parsed[path]
        errors += _located(path, parsed.problems)
        if parsed.facts is not None:
            errors += _name_checks(path, locate, parsed.facts, *key)
            model = parsed if index == 0 else None
        if index:
            msg = f"duplicate release {key[0]} {key[1]} (also {paths[0]})"
            errors.append(LoadError(path, 1, "", msg))
    program = None
    if model is not None and model.facts is not None and not errors:
        program = program_path(model.facts.app, model.facts.program)
        tree.users[program] = tree.users.get(program, frozenset()) | {key}
        if program not in tree.programs:
            msg = f"{program} does not exist at this revision"
            line = locate(paths[0]).get(("quantum", "program"), 1)
            errors.append(LoadError(paths[0], line, "quantum.program", msg))
    manifest = model if not errors else None
    tree.releases[key] = _Release(paths[0], manifest, program, tuple(errors))
    if errors:
        tree.failing[key] = tuple(errors)
    if manifest is not None:
        tree.manifests[key] = manifest


@dataclass
class _Environments:
    """The environment files settled together (there are a handful)."""

    models: dict[str, Environment] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    lines: dict[str, Mapping[Path_, int]] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)
    broken: dict[str, LoadError] = field(default_factory=dict)
    pin_problems: dict[tuple[str, str], LoadError] = field(default_factory=dict)


def _environments(tree: _Tree) -> _Environments:
    out = _Environments()
    for path in sorted(tree.env_files):
        parsed = tree.parsed[path]
        problems = _located(path, parsed.problems)
        out.errors += problems
        model, stem = parsed.model, PurePosixPath(path).stem
        if not isinstance(model, Environment):
            out.broken.setdefault(stem, problems[0])
            continue
        if model.environment != stem:
            line = parsed.lines.get(("environment",), 1)
            msg = f"{model.environment!r} does not match the file name {stem!r}"
            out.errors.append(LoadError(path, line, "environment", msg))
            out.broken.setdefault(stem, out.errors[-1])
        elif model.environment in out.paths:
            other = out.paths[model.environment]
            out.errors.append(LoadError(path, 1, "", f"duplicate environment (also {other})"))
        else:
            out.models[model.environment] = model
            out.paths[model.environment] = path
            out.lines[model.environment] = parsed.lines
    _check_environments(tree, out)
    return out


def _snapshot(tree: _Tree) -> Snapshot:
    envs = _environments(tree)
    errors = [*tree.file_errors.values(), *envs.errors]
    errors += [error for failing in tree.failing.values() for error in failing]
    pin_lines: dict[tuple[str, str], int] = {}
    for name in envs.models:
        pin_lines.update(tree.pins[envs.paths[name]].lines)
    return Snapshot(
        revision=tree.revision,
        manifests=ManifestView(tree.manifests),
        environments=envs.models,
        programs=tree.programs,
        pin_lines=pin_lines,
        errors=_capped_per_file(sorted(errors)),
        env_paths=envs.paths,
        broken_envs={name: e for name, e in envs.broken.items() if name not in envs.models},
        pin_problems=envs.pin_problems,
    )


def _capped_per_file(errors: list[LoadError]) -> tuple[LoadError, ...]:
    """The sorted errors with at most `MAX_FILE_PROBLEMS` per file, then how many more."""
    out: list[LoadError] = []
    for path, group in itertools.groupby(errors, key=lambda error: error.path):
        problems = list(group)
        out += problems[:MAX_FILE_PROBLEMS]
        rest = problems[MAX_FILE_PROBLEMS:]
        if rest:
            out.append(LoadError(path, rest[0].line, "", f"and {len(rest):,} more problems"))
    return tuple(out)


def _is_yaml(path: str) -> bool:
    return path.endswith(YAML_SUFFIXES)


def _located(path: str, problems: Iterable[tuple[int, str, str]]) -> list[LoadError]:
    return [LoadError(path, line, name, message) for line, name, message in problems]


def _name_checks(
    path: str, locate: Locate, facts: ManifestFacts, app_dir: str, stem: str
) -> list[LoadError]:
    errors = []
    app, version = facts.app, facts.version
    if app != app_dir:
        msg = f"{app!r} does not match the folder name {app_dir!r}"
        errors.append(LoadError(path, locate(path).get(("app",), 1), "app", msg))
    if version != stem:
        msg = f"{version!r} does not match the file name {stem!r}"
        errors.append(LoadError(path, locate(path).get(("version",), 1), "version", msg))
    return errors


@dataclass(frozen=True)
class _Pins:
    """One environment file's pins, checked against the releases: lines and problems."""

    parsed: ParsedFile
    lines: dict[tuple[str, str], int]
    problems: tuple[LoadError, ...]


def _pins(tree: _Tree, path: str, env: Environment, lines: Mapping[Path_, int]) -> _Pins:
    """The pins of an environment file, re-checked only when it or a release it pins changed."""
    parsed = tree.parsed[path]
    known = tree.pins.get(path)
    name = env.environment
    touched = any(env.apps.get(app) == version for app, version in tree.dirty)
    if known is not None and known.parsed is parsed and not touched:
        return known
    problems = []
    for app, version in env.apps.items():
        problem = _pin_problem(tree, app, version)
        if problem:
            problems.append(LoadError(path, lines.get(("apps", app), 1), f"apps.{app}", problem))
    pins = _Pins(
        parsed, {(name, app): lines.get(("apps", app), 1) for app in env.apps}, tuple(problems)
    )
    tree.pins[path] = pins
    return pins


def _check_environments(tree: _Tree, out: _Environments) -> None:
    selected = set(out.paths.values())
    for path in [path for path in tree.pins if path not in selected]:
        del tree.pins[path]  # checked only while selected, so never stale when selected again
    for name, env in out.models.items():
        path, lines = out.paths[name], out.lines[name]
        pins = _pins(tree, path, env, lines)
        out.errors += pins.problems
        out.pin_problems.update(
            ((name, problem.field.removeprefix("apps.")), problem) for problem in pins.problems
        )
        if env.promote_from and env.promote_from not in (*out.models, *out.broken):
            line = lines.get(("promote_from",), 1)
            msg = f"unknown environment {env.promote_from!r}"
            out.errors.append(LoadError(path, line, "promote_from", msg))
    for name in _promotion_cycles(out.models):
        path, lines = out.paths[name], out.lines[name]
        line = lines.get(("promote_from",), 1)
        out.errors.append(LoadError(path, line, "promote_from", "promotion chain forms a cycle"))


def _pin_problem(tree: _Tree, app: str, version: str) -> str | None:
    if (app, version) in tree.manifests:
        return None
    release = tree.releases.get((app, version))
    if release is not None:
        return f"release {app} {version} is invalid (see {release.path})"
    return f"no manifest manifests/{app}/{version}.yaml"


def _promotion_cycles(environments: Mapping[str, Environment]) -> list[str]:
    cyclic = []
    for start in environments:
        seen, current = {start}, environments[start].promote_from
        while current is not None and current in environments:
            if current == start:
                cyclic.append(start)
                break
            if current in seen:
                break
            seen.add(current)
            current = environments[current].promote_from
    return sorted(cyclic)
