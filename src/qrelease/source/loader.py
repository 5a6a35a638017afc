"""Desired state at a revision: every manifest and environment file, validated, with all errors.

The loader never stops at the first problem: it returns the valid models *and* one
`LoadError` per problem, each naming the file, line and field, so one bad file never hides
the rest. Parsed files are cached by blob id: a file unchanged between revisions is parsed
once for the life of the loader.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ValidationError

from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.source.repo import GitRepo, TreeEntry
from qrelease.source.yamldoc import MAX_FILE_BYTES, Path_, YamlDoc, YamlError, dotted, parse_mapping

YAML_SUFFIXES = (".yaml", ".yml")
CACHE_ENTRIES = 50_000


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

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.errors

    def manifest(self, app: str, version: str) -> ReleaseManifest | None:
        """The valid manifest of a release, if there is one."""
        return self.manifests.get((app, version))

    def program_blob(self, manifest: ReleaseManifest) -> str | None:
        """The blob id of a manifest's program at this revision."""
        return self.programs.get(program_path(manifest.app, manifest.quantum.program))

    def versions(self, app: str) -> list[str]:
        """Every valid version of an app."""
        return [version for (name, version) in self.manifests if name == app]


def program_path(app: str, program: str) -> str:
    """Repo path of a manifest's program."""
    return f"manifests/{app}/{program}"


@dataclass(frozen=True)
class _Parsed:
    """A cached parse of one blob: the model or its errors, and the key lines."""

    model: BaseModel | None
    problems: tuple[tuple[int, str, str], ...]
    lines: Mapping[Path_, int]


@dataclass
class _Collected:
    manifests: dict[tuple[str, str], ReleaseManifest] = field(default_factory=dict)
    manifest_paths: dict[tuple[str, str], str] = field(default_factory=dict)
    invalid: set[tuple[str, str]] = field(default_factory=set)
    environments: dict[str, Environment] = field(default_factory=dict)
    env_paths: dict[str, str] = field(default_factory=dict)
    env_lines: dict[str, Mapping[Path_, int]] = field(default_factory=dict)
    programs: dict[str, TreeEntry] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)


class Loader:
    """Loads snapshots from a repo, caching parses by blob id."""

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._cache: OrderedDict[tuple[str, str], _Parsed] = OrderedDict()
        self._prefetched: dict[str, bytes] = {}
        self._last: Snapshot | None = None
        self._used_now: set[tuple[str, str]] = set()
        self._used_before: set[tuple[str, str]] = set()
        self.parse_count = 0

    def _prefetch(self, entries: list[TreeEntry]) -> None:
        """Read every uncached manifest and environment file in one batch."""
        wanted = [
            entry.sha
            for entry in entries
            if (schema := _schema_for(entry)) is not None
            and (schema.__name__, entry.sha) not in self._cache
            and entry.size <= MAX_FILE_BYTES
        ]
        self._prefetched = self._repo.read_blobs(wanted)

    def load(self, rev: str = "HEAD") -> Snapshot:
        """Read and validate every manifest and environment file at `rev`."""
        revision = self._repo.resolve(rev)
        if self._last is not None and self._last.revision == revision:
            return self._last  # the engine, the status view and auto-promotion share one load
        collected = _Collected()
        entries = self._repo.list_files(revision)
        self._prefetch(entries)
        for entry in entries:
            self._visit(entry, collected)
        self._prefetched.clear()
        self._forget_superseded()
        _check_manifest_programs(collected)
        _check_environments(collected)
        self._last = Snapshot(
            revision=revision,
            manifests=collected.manifests,
            environments=collected.environments,
            programs={path: e.sha for path, e in collected.programs.items()},
            pin_lines={
                (env, app): lines.get(("apps", app), 1)
                for env, lines in collected.env_lines.items()
                for app in collected.environments[env].apps
                if env in collected.environments
            },
            errors=tuple(sorted(collected.errors)),
            env_paths=collected.env_paths,
        )
        return self._last

    def _visit(self, entry: TreeEntry, out: _Collected) -> None:
        parts = PurePosixPath(entry.path).parts
        if entry.is_symlink:
            out.errors.append(LoadError(entry.path, 0, "", "symbolic links are not allowed here"))
        elif not entry.is_regular:
            out.errors.append(
                LoadError(entry.path, 0, "", f"unsupported git entry (mode {entry.mode})")
            )
        elif parts[0] == "manifests" and len(parts) == 3 and _is_yaml(entry.path):
            self._visit_manifest(entry, parts[1], out)
        elif parts[0] == "manifests" and len(parts) >= 4:
            out.programs[entry.path] = entry
        elif parts[0] == "releases" and len(parts) == 2 and _is_yaml(entry.path):
            self._visit_environment(entry, out)

    def _visit_manifest(self, entry: TreeEntry, app_dir: str, out: _Collected) -> None:
        parsed = self._parse(entry, ReleaseManifest)
        errors = _located(entry.path, parsed.problems)
        stem = PurePosixPath(entry.path).stem
        model = parsed.model
        key = (app_dir, stem)
        if isinstance(model, ReleaseManifest):
            errors += _name_checks(entry.path, parsed.lines, model, app_dir, stem)
        if key in out.manifest_paths:
            other = out.manifest_paths[key]
            errors.append(
                LoadError(entry.path, 1, "", f"duplicate release {key[0]} {key[1]} (also {other})")
            )
        out.manifest_paths.setdefault(key, entry.path)
        if errors or not isinstance(model, ReleaseManifest):
            out.invalid.add(key)
            out.manifests.pop(key, None)
        elif key not in out.invalid:
            out.manifests[key] = model
        out.errors += errors

    def _visit_environment(self, entry: TreeEntry, out: _Collected) -> None:
        parsed = self._parse(entry, Environment)
        errors = _located(entry.path, parsed.problems)
        stem = PurePosixPath(entry.path).stem
        model = parsed.model
        if isinstance(model, Environment):
            if model.environment != stem:
                line = parsed.lines.get(("environment",), 1)
                msg = f"{model.environment!r} does not match the file name {stem!r}"
                errors.append(LoadError(entry.path, line, "environment", msg))
            elif model.environment in out.env_paths:
                other = out.env_paths[model.environment]
                errors.append(LoadError(entry.path, 1, "", f"duplicate environment (also {other})"))
            else:
                out.environments[model.environment] = model
                out.env_paths[model.environment] = entry.path
                out.env_lines[model.environment] = parsed.lines
        out.errors += errors

    def _forget_superseded(self) -> None:
        """Keep only parses the last two loads used, so a daemon's memory stays flat."""
        keep = self._used_now | self._used_before
        for key in [key for key in self._cache if key not in keep]:
            del self._cache[key]
        self._used_before, self._used_now = self._used_now, set()

    def _parse(self, entry: TreeEntry, schema: type[BaseModel]) -> _Parsed:
        key = (schema.__name__, entry.sha)
        self._used_now.add(key)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        parsed = self._parse_blob(entry, schema)
        self._cache[key] = parsed
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return parsed

    def _parse_blob(self, entry: TreeEntry, schema: type[BaseModel]) -> _Parsed:
        self.parse_count += 1
        if entry.size > MAX_FILE_BYTES:
            msg = f"file is {entry.size} bytes; the limit is {MAX_FILE_BYTES} (1 MiB)"
            return _Parsed(None, ((0, "", msg),), {})
        raw = self._prefetched.pop(entry.sha, None)
        try:
            doc = parse_mapping(raw if raw is not None else self._repo.read_blob(entry.sha))
        except YamlError as exc:
            return _Parsed(None, ((exc.line, "", exc.message),), {})
        try:
            return _Parsed(schema.model_validate(doc.data), (), doc.lines)
        except ValidationError as exc:
            return _Parsed(None, tuple(_problems(exc, doc)), doc.lines)


def _schema_for(entry: TreeEntry) -> type[BaseModel] | None:
    """Which model a regular file at this path holds, if any."""
    if not entry.is_regular or not _is_yaml(entry.path):
        return None
    parts = entry.path.split("/")
    if parts[0] == "manifests" and len(parts) == 3:
        return ReleaseManifest
    if parts[0] == "releases" and len(parts) == 2:
        return Environment
    return None


def _is_yaml(path: str) -> bool:
    return path.endswith(YAML_SUFFIXES)


def _located(path: str, problems: Iterable[tuple[int, str, str]]) -> list[LoadError]:
    return [LoadError(path, line, name, message) for line, name, message in problems]


def _name_checks(
    path: str, lines: Mapping[Path_, int], model: ReleaseManifest, app_dir: str, stem: str
) -> list[LoadError]:
    errors = []
    app, version = model.app, model.version
    if app != app_dir:
        msg = f"{app!r} does not match the folder name {app_dir!r}"
        errors.append(LoadError(path, lines.get(("app",), 1), "app", msg))
    if version != stem:
        msg = f"{version!r} does not match the file name {stem!r}"
        errors.append(LoadError(path, lines.get(("version",), 1), "version", msg))
    return errors


def _problems(exc: ValidationError, doc: YamlDoc) -> list[tuple[int, str, str]]:
    errors = exc.errors(include_url=False)
    locs = [_present_loc(error["loc"], doc.data) for error in errors]
    out = []
    for error, loc in zip(errors, locs, strict=True):
        if error["type"] == "too_short" and any(o[: len(loc)] == loc != o for o in locs):
            continue  # a list emptied by its own items' errors: those errors say it better
        out.append((doc.line_of(loc), dotted(loc), _message(error)))
    return out


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
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "").replace("'", "")
        return f"{given!r} is not one of {expected.replace(' or ', ', ')}"
    if kind == "literal_error":
        return f"{given!r} is not one of {error.get('ctx', {}).get('expected', '')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{message} (got {_short(given)})"
    return message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_manifest_programs(out: _Collected) -> None:
    for key, manifest in list(out.manifests.items()):
        path = program_path(manifest.app, manifest.quantum.program)
        if path not in out.programs:
            source = out.manifest_paths[key]
            out.errors.append(
                LoadError(source, 0, "quantum.program", f"{path} does not exist at this revision")
            )
            del out.manifests[key]
            out.invalid.add(key)


def _check_environments(out: _Collected) -> None:
    for name, env in out.environments.items():
        path, lines = out.env_paths[name], out.env_lines[name]
        for app, version in env.apps.items():
            problem = _pin_problem(out, app, version)
            if problem:
                out.errors.append(
                    LoadError(path, lines.get(("apps", app), 1), f"apps.{app}", problem)
                )
        if env.promote_from and env.promote_from not in out.environments:
            line = lines.get(("promote_from",), 1)
            msg = f"unknown environment {env.promote_from!r}"
            out.errors.append(LoadError(path, line, "promote_from", msg))
    for name in _promotion_cycles(out.environments):
        path, lines = out.env_paths[name], out.env_lines[name]
        line = lines.get(("promote_from",), 1)
        out.errors.append(LoadError(path, line, "promote_from", "promotion chain forms a cycle"))


def _pin_problem(out: _Collected, app: str, version: str) -> str | None:
    if (app, version) in out.manifests:
        return None
    if (app, version) in out.invalid:
        return f"release {app} {version} is invalid (see {out.manifest_paths[(app, version)]})"
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
