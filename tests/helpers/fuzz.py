"""A seeded mutator over the bundled examples, and a rig that checks one hostile commit at a time.

`mutate(seed)` breaks one file of the bundled `manifests/` and `releases/` in one of the ways
issue 13 found (invalid timestamps, tags that do not convert, tags on mappings and sequences,
deep nesting, huge integers, overflowing durations, control characters, huge values,
thousands of unknown keys, files where the loader does not read) or at random (byte noise,
truncation, shuffled lines). The same seed always gives the same mutation.

`FuzzRig.check(mutation)` commits the broken file together with an unrelated pin change on a
real git repo and asserts what issue 13 asks of every case: no traceback, `qrelease validate`
exits 0 or 1, the broken file is named with its line, every other file's verdict is
unchanged, and a reconcile pass (the engine over the in-memory fakes) deploys the pin change.
One rig serves many cases: each commit puts back the previous case's file.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from qrelease.cli import main
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.examples.scaffold import initial_files
from qrelease.model.types import version_key
from qrelease.model.vocabulary import Rollout
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.loader import MAX_FILE_PROBLEMS
from qrelease.source.repo import GitRepo
from qrelease.store import open_store
from tests.helpers import PROJECT_ROOT
from tests.helpers.gitops import GitOpsRepo, make_repo

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday morning: no deny window applies
ENVS = ("dev", "staging", "prod")
LONGEST_LINE = 1000
"""No line of `validate` output may be longer: path, field and message are each capped."""


def _bundled() -> dict[str, str]:
    """Path -> text of every manifest and environment file shipped at the project root."""
    return {
        path.relative_to(PROJECT_ROOT).as_posix(): path.read_text(encoding="utf-8")
        for root in ("manifests", "releases")
        for path in sorted((PROJECT_ROOT / root).rglob("*.yaml"))
    }


BUNDLED = _bundled()


@dataclass(frozen=True)
class Mutation:
    """One hostile file: what it is, where it goes and where its problem must be reported."""

    kind: str
    seed: int
    path: str
    content: bytes
    line: int | None
    """The line the problem must be reported at: 0 for the file as a whole, None for any line."""
    must_fail: bool
    """False for random damage, which may leave a valid file."""

    @property
    def adds_a_file(self) -> bool:
        """True when the mutation is a new file rather than a changed bundled one."""
        return self.path not in BUNDLED


# A `key: scalar` line in block style: the value does not open a flow collection.
_SIMPLE = re.compile(r"^(?P<head>\s*(?:- )?(?P<key>[A-Za-z_\"][^:#\n]*)):[ \t]+[^{\[#\s][^\n]*$")
# A `key:` line that opens a block below it.
_BLOCK = re.compile(r"^(?P<head>\s*[A-Za-z_][\w-]*):[ \t]*$")
_DURATION = re.compile(r"\b(?:soak|timeout|max_runtime): (?P<value>[^,}\s#]+)")
# Keys whose value the models check, so that a huge value is sure to be refused (and quoted).
_CHECKED_KEYS = {
    "app",
    "version",
    "entry",
    "program",
    "environment",
    "promote_from",
    "kind",
    "keep",
    "soak",
    "bell-service",
    "qrng",
    "shots",
    "seed",
    "method",
    "max_distance",
}


def _lines_matching(text: str, pattern: re.Pattern[str]) -> list[int]:
    """0-based indexes of the lines a pattern matches."""
    return [i for i, line in enumerate(text.split("\n")) if pattern.match(line)]


def _replace_value(rng: random.Random, path: str, value: str, kind: str, seed: int) -> Mutation:
    """Set the value of one random `key: scalar` line of the file."""
    lines = BUNDLED[path].split("\n")
    index = rng.choice(_lines_matching(BUNDLED[path], _SIMPLE))
    match = _SIMPLE.match(lines[index])
    assert match is not None
    lines[index] = f"{match['head']}: {value}"
    return Mutation(kind, seed, path, "\n".join(lines).encode(), index + 1, True)


def _any_file(rng: random.Random) -> str:
    return rng.choice(sorted(BUNDLED))


def _timestamp(rng: random.Random, seed: int) -> Mutation:
    bad = rng.choice(
        [
            "2026-02-30",
            "2026-13-01",
            "2025-02-29",
            "2026-04-31",
            "0000-01-01",
            "2026-01-01 25:00:00",
            "2026-01-01T00:61:00Z",
            "2026-01-01T00:00:00+99:00",
        ]
    )
    path = _any_file(rng)
    if not path.startswith("releases/") or rng.random() < 0.3:
        return _replace_value(rng, path, bad, "timestamp", seed)
    lines = BUNDLED[path].split("\n")
    policy = lines.index("policy:")
    freeze = [f"    - start: {bad}", "      end: 2027-01-04T00:00:00Z"]
    if rng.random() < 0.5:  # the end, not the start, is the bad one
        freeze = ["    - start: 2026-12-20T00:00:00Z", f"      end: {bad}"]
    lines[policy + 1 : policy + 1] = ["  freezes:", *freeze]
    line = policy + 3 + next(i for i, row in enumerate(freeze) if bad in row)  # 1-based
    return Mutation("timestamp", seed, path, "\n".join(lines).encode(), line, True)


def _scalar_tag(rng: random.Random, seed: int) -> Mutation:
    tagged = rng.choice(
        [
            "!!float xyz",
            "!!int xyz",
            "!!bool xyz",
            "!!binary aGVsbG8=",
            "!!timestamp soon",
            "!foo bar",
            "!!python/name:os.system ''",
            "!<tag:example.com,2026:x> y",
        ]
    )
    return _replace_value(rng, _any_file(rng), tagged, "scalar_tag", seed)


def _collection_tag(rng: random.Random, seed: int) -> Mutation:
    tag = rng.choice(
        ["!!set", "!!omap", "!!pairs", "!!python/object/apply:os.system", "!!python/tuple", "!x"]
    )
    path = _any_file(rng)
    if rng.random() < 0.5:
        value = rng.choice([f"{tag} [echo, pwned]", f"{tag} {{a: 1, b: 2}}"])
        return _replace_value(rng, path, value, "collection_tag", seed)
    lines = BUNDLED[path].split("\n")
    index = rng.choice(_lines_matching(BUNDLED[path], _BLOCK))
    lines[index] = f"{lines[index].rstrip()} {tag}"
    return Mutation("collection_tag", seed, path, "\n".join(lines).encode(), index + 1, True)


def _nesting(rng: random.Random, seed: int) -> Mutation:
    depth = rng.randint(101, 1100)
    value = rng.choice(["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth])
    return _replace_value(rng, _any_file(rng), value, "nesting", seed)


def _big_int(rng: random.Random, seed: int) -> Mutation:
    digits = rng.choice([rng.randint(101, 4300), rng.randint(4301, 20_000)])
    value = rng.choice(["", "-", "+"]) + "".join(rng.choice("123456789") for _ in range(digits))
    if rng.random() < 0.2:
        value = "0x" + "f" * digits
    return _replace_value(rng, _any_file(rng), value, "big_int", seed)


def _duration(rng: random.Random, seed: int) -> Mutation:
    bad = rng.choice(
        ["99999999999999d", ".inf", "-.inf", ".nan", "1.0e300", "3651d", "9" * 30 + "s", "-1"]
    )
    path = rng.choice([p for p in sorted(BUNDLED) if _DURATION.search(BUNDLED[p])])
    lines = BUNDLED[path].split("\n")
    index = rng.choice(_lines_matching(BUNDLED[path], re.compile(f".*{_DURATION.pattern}")))
    match = _DURATION.search(lines[index])
    assert match is not None
    lines[index] = lines[index][: match.start("value")] + bad + lines[index][match.end("value") :]
    return Mutation("duration", seed, path, "\n".join(lines).encode(), index + 1, True)


def _control_char(rng: random.Random, seed: int) -> Mutation:
    char = rng.choice(["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x80", "\x9f"])
    path = _any_file(rng)
    lines = BUNDLED[path].split("\n")
    index = rng.randrange(len(lines) - 1)  # the text ends with a newline: the last "line" is ""
    column = rng.randint(0, len(lines[index]))
    lines[index] = lines[index][:column] + char + lines[index][column:]
    return Mutation("control_char", seed, path, "\n".join(lines).encode(), index + 1, True)


def _huge_value(rng: random.Random, seed: int) -> Mutation:
    path = rng.choice(
        [p for p in sorted(BUNDLED) if _checked_lines(p)]
    )  # every bundled file has one
    lines = BUNDLED[path].split("\n")
    index = rng.choice(_checked_lines(path))
    match = _SIMPLE.match(lines[index])
    assert match is not None
    unit = rng.choice(["x", "A-", "9.", "é"])
    budget = rng.randint(1_000, 1_000_000 - len(BUNDLED[path].encode()))  # bytes, under 1 MiB
    value = unit * (budget // len(unit.encode()))
    lines[index] = f"{match['head']}: {value}"
    return Mutation("huge_value", seed, path, "\n".join(lines).encode(), index + 1, True)


def _checked_lines(path: str) -> list[int]:
    text = BUNDLED[path]
    return [
        index
        for index in _lines_matching(text, _SIMPLE)
        if (m := _SIMPLE.match(text.split("\n")[index])) and m["key"].strip('"') in _CHECKED_KEYS
    ]


def _unknown_keys(rng: random.Random, seed: int) -> Mutation:
    count = rng.choice([rng.randint(2, 50), rng.randint(51, 20_000)])
    path = _any_file(rng)
    text = BUNDLED[path].rstrip("\n")
    first = text.count("\n") + 2
    content = text + "".join(f"\nunknown_{i}: {i}" for i in range(count)) + "\n"
    return Mutation(f"unknown_keys:{count}", seed, path, content.encode(), first, True)


def _misplaced(rng: random.Random, seed: int) -> Mutation:
    env = rng.choice(ENVS)
    manifest = rng.choice([p for p in sorted(BUNDLED) if p.startswith("manifests/")])
    path, source = rng.choice(
        [
            (f"releases/sub/{env}.yaml", f"releases/{env}.yaml"),
            (f"releases/{env}/{env}.yaml", f"releases/{env}.yaml"),
            (f"releases/{env}.yaml.orig", f"releases/{env}.yaml"),
            ("releases/notes.md", f"releases/{env}.yaml"),
            (f"manifests/{manifest.split('/')[-1]}", manifest),
            ("manifests/x.yaml", manifest),
        ]
    )
    return Mutation("misplaced", seed, path, BUNDLED[source].encode(), 0, True)


def _byte_noise(rng: random.Random, seed: int) -> Mutation:
    path = _any_file(rng)
    data = bytearray(BUNDLED[path].encode())
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(data))
        edit = rng.choice(["flip", "insert", "delete"])
        if edit == "flip":
            data[at] = rng.randrange(256)
        elif edit == "insert":
            data.insert(at, rng.randrange(256))
        else:
            del data[at]
    return Mutation("byte_noise", seed, path, bytes(data), None, False)


def _truncation(rng: random.Random, seed: int) -> Mutation:
    path = _any_file(rng)
    data = BUNDLED[path].encode()
    return Mutation("truncation", seed, path, data[: rng.randrange(len(data))], None, False)


def _line_shuffle(rng: random.Random, seed: int) -> Mutation:
    path = _any_file(rng)
    lines = BUNDLED[path].split("\n")
    a, b = rng.randrange(len(lines) - 1), rng.randrange(len(lines) - 1)
    edit = rng.choice(["duplicate", "delete", "swap", "indent", "dedent"])
    if edit == "duplicate":
        lines.insert(a, lines[a])
    elif edit == "delete":
        del lines[a]
    elif edit == "swap":
        lines[a], lines[b] = lines[b], lines[a]
    elif edit == "indent":
        lines[a] = " " * rng.randint(1, 4) + lines[a]
    else:
        lines[a] = lines[a].lstrip()
    return Mutation(f"line_shuffle:{edit}", seed, path, "\n".join(lines).encode(), None, False)


MUTATORS: dict[str, Callable[[random.Random, int], Mutation]] = {
    "timestamp": _timestamp,
    "scalar_tag": _scalar_tag,
    "collection_tag": _collection_tag,
    "nesting": _nesting,
    "big_int": _big_int,
    "duration": _duration,
    "control_char": _control_char,
    "huge_value": _huge_value,
    "unknown_keys": _unknown_keys,
    "misplaced": _misplaced,
    "byte_noise": _byte_noise,
    "truncation": _truncation,
    "line_shuffle": _line_shuffle,
}
KINDS = tuple(MUTATORS)


def kind_of(seed: int) -> str:
    """The class of damage a seed makes: every class in turn."""
    return KINDS[seed % len(KINDS)]


def mutate(seed: int) -> Mutation:
    """The hostile file of one seed (the same seed, the same file)."""
    return MUTATORS[kind_of(seed)](random.Random(seed), seed)


_ERROR_LINE = re.compile(
    r"^(?P<path>(?:manifests|releases)/[^:]+?)(?::(?P<line>\d+))?: (?P<rest>.*)$"
)
_SUMMARY = re.compile(r"^[0-9a-f]{12}: (?P<releases>\d+) releases, (?P<envs>\d+) environments: ")


@dataclass(frozen=True)
class Reported:
    """One line of `qrelease validate` output."""

    path: str
    line: int | None
    rest: str


class FuzzRig:
    """One example repo and one engine over in-memory fakes, for many cases in a row."""

    def __init__(self, root: Path) -> None:
        self.repo: GitOpsRepo = make_repo(root / "gitops", initial_files(example=True))
        assert {p: self.repo.read(p) for p in BUNDLED} == BUNDLED, "the repo is the bundle"
        self.good = dict(BUNDLED)  # what each file holds when it is not the broken one
        self.last: Mutation | None = None
        self.git = GitRepo(self.repo.path)
        self.deployer = MemoryDeployer()
        self.quantum = MemoryQuantum()
        self.store = open_store("memory:")
        backends = Backends(lambda env: self.deployer, lambda env: self.quantum)
        self.now = T0
        self.engine = Engine(self.git, self.store, backends, clock=lambda: self.now)
        first = self.engine.reconcile()
        assert {a.outcome for a in first.apps} == {Rollout.SUCCEEDED}, first
        self.releases, self.envs = 5, 3
        assert self.validate()[0] == 0

    def close(self) -> None:
        """Release the store and the git handles."""
        self.store.close()
        self.git.close()

    def validate(self) -> tuple[int, list[Reported], tuple[int, int]]:
        """`qrelease validate` in-process: exit code, error lines, (valid releases, envs)."""
        argv = ["validate", "--no-compile", "--repo", str(self.repo.path)]  # loading, not qdk
        result = CliRunner().invoke(main, argv)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output[-3000:]
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        assert result.exit_code in (0, 1), (result.exit_code, output[-3000:])
        summary = _SUMMARY.match(result.stdout.splitlines()[-1])
        assert summary is not None, result.stdout[-1000:]
        reported = []
        for text in result.stderr.splitlines():
            assert len(text) <= LONGEST_LINE, f"{len(text)} characters: {text[:300]}"
            found = _ERROR_LINE.match(text)
            assert found is not None, f"an error that names no file: {text}"
            line = int(found["line"]) if found["line"] else None
            reported.append(Reported(found["path"], line, found["rest"]))
        counts = (int(summary["releases"]), int(summary["envs"]))
        return result.exit_code, reported, counts

    def check(self, mutation: Mutation) -> None:
        """Commit the hostile file with an unrelated pin change; assert what issue 13 asks."""
        env, app, version = self._unrelated_pin(mutation.path)
        self._commit(mutation, env, app, version)
        code, reported, (releases, envs) = self.validate()
        mine = [r for r in reported if r.path == mutation.path]
        if mutation.must_fail:
            assert code == 1 and mine, f"{mutation.kind} not reported: {reported}"
        if mutation.line is not None:
            assert any(r.line == (mutation.line or None) for r in mine), (mutation.line, mine)
        elif mine:
            assert any(r.line for r in mine), f"no line: {mine}"
        assert len(mine) <= MAX_FILE_PROBLEMS + 1, f"{len(mine)} problems reported"
        if mutation.kind.startswith("unknown_keys:"):
            unknown = int(mutation.kind.split(":")[1])
            more = [f"and {unknown - MAX_FILE_PROBLEMS:,} more problems"] * (
                unknown > MAX_FILE_PROBLEMS
            )
            assert [r.rest for r in mine if "more problems" in r.rest] == more, mine[-1]
        others = [r for r in reported if r.path != mutation.path]
        assert all(f"(see {mutation.path})" in r.rest for r in others), others
        is_manifest = mutation.path.startswith("manifests/") and not mutation.adds_a_file
        is_env = mutation.path.startswith("releases/") and not mutation.adds_a_file
        assert releases == self.releases - (1 if is_manifest and mine else 0), reported
        # an environment file whose only problem is a pin of its own still loads
        assert envs in ({self.envs - 1, self.envs} if is_env and mine else {self.envs}), reported
        self.now += timedelta(hours=2)  # every soak of the examples has passed since
        report = self.engine.reconcile()
        outcome = {a.key: (a.outcome, a.reason) for a in report.apps}.get((env, app))
        assert outcome == (Rollout.SUCCEEDED, ""), (env, app, version, outcome)
        observed = self.store.get_observed(env, app)
        assert observed is not None and observed.deployed == version

    def _unrelated_pin(self, broken: str) -> tuple[str, str, str]:
        """An (env, app, version) pin change that touches nothing of the broken file and that
        the release policy lets through: what runs upstream, or an older release (a rollback)."""
        env = next(e for e in ENVS if f"releases/{e}.yaml" != broken)
        upstream = {"staging": "dev", "prod": "staging"}.get(env)
        pins = dict(re.findall(r"^  ([a-z-]+): (\S+)$", self.good[f"releases/{env}.yaml"], re.M))
        for app, pinned in sorted(pins.items()):
            observed = self.store.get_observed(env, app)
            running = observed.deployed if observed else None
            taken = {pinned, running}  # a failed case may differ
            above = self.store.get_observed(upstream, app) if upstream else None
            allowed = [
                version
                for path in sorted(BUNDLED)
                if path != broken
                and "/"
                not in (version := path.removeprefix(f"manifests/{app}/").removesuffix(".yaml"))
                and version not in taken
                and (
                    upstream is None
                    or (above is not None and version == above.deployed)
                    or (running is not None and version_key(version) < version_key(running))
                )
            ]
            if allowed:
                return env, app, allowed[0]
        raise AssertionError(f"no pin to change in {env}")

    def _commit(self, mutation: Mutation, env: str, app: str, version: str) -> None:
        if self.last is not None:  # put back what the previous case broke
            if self.last.adds_a_file:
                (self.repo.path / self.last.path).unlink()
            else:
                self.repo.write(self.last.path, self.good[self.last.path])
        env_path = f"releases/{env}.yaml"
        self.good[env_path] = re.sub(
            rf"^  {app}: \S+$", f"  {app}: {version}", self.good[env_path], flags=re.M
        )
        self.repo.write(env_path, self.good[env_path])
        self.repo.write(mutation.path, mutation.content)
        self.repo.commit(f"fuzz {mutation.seed} {mutation.kind}")
        self.last = mutation
