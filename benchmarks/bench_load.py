"""Cold and warm load of every manifest at one revision, against the raw git + libyaml pipeline.

Cold: a fresh `GitRepo` and `Loader` (empty parse cache, new `cat-file` process) load the
head revision. Warm: a loader that has read the repo before loads the revision next to the
one it loaded last (the head and its parent, alternately: one environment file differs),
so it asks git what changed and re-reads only that. (Loading the very revision loaded last
returns the same snapshot without any work, which would measure nothing.) The reference
is `rawgit.load`, cold every time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from contextlib import contextmanager
from dataclasses import replace

from benchmarks import rawgit
from benchmarks.fixtures import gitops
from benchmarks.harness import Action, Context, Row, Trial, plain, ratio_row
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo

COLD_TARGET = 1.3
WARM_TARGET = 0.1
REFERENCE = "git ls-tree -r + one git cat-file --batch + yaml CSafeLoader + same pydantic models"


def _cold(repo_path: str, rev: str, expected: int) -> Trial:
    @contextmanager
    def trial() -> Iterator[Action]:
        with GitRepo(repo_path) as repo:
            loader = Loader(repo)
            yield lambda: _check(loader.load(rev).manifests, expected)

    return trial


def _check(manifests: Sized, expected: int) -> None:
    """Fail loudly if a side did less work than the other."""
    count = len(manifests)
    if count != expected:
        raise AssertionError(f"loaded {count} manifests, expected {expected}")


def run(ctx: Context) -> list[Row]:
    """Two rows: cold load and warm (cached) load."""
    data = gitops(ctx)
    rev, expected = data.commits[-1], data.manifest_count
    reference = plain(lambda: _check(rawgit.load(data.path, rev).manifests, expected))
    size = f"{expected:,} manifests ({data.apps:,} apps x {data.versions} versions) + 3 envs"
    cold = ratio_row(
        ctx,
        f"cold load, {expected:,} manifests",
        COLD_TARGET,
        _cold(str(data.path), rev, expected),
        reference,
        reference_name=REFERENCE,
        notes=[f"{size}; qrelease: fresh GitRepo + Loader(repo).load(rev)"],
    )
    with GitRepo(data.path) as repo:
        loader = Loader(repo)
        pair = (data.commits[-2], rev)
        loader.load(pair[0])
        loader.load(pair[1])
        parses, loads = loader.parse_count, [0]

        def warm_load() -> None:
            loads[0] += 1
            _check(loader.load(pair[(loads[0] + 1) % 2]).manifests, expected)

        warm = ratio_row(
            ctx,
            f"warm load, {expected:,} manifests",
            WARM_TARGET,
            plain(warm_load),
            reference,
            reference_name=REFERENCE + " (cold, as above)",
        )
        reparsed = loader.parse_count - parses
    note = (
        f"{size}; qrelease: Loader.load of the head and its parent, alternately, by a loader "
        f"that has read both ({reparsed} re-parses in {loads[0]} loads)"
    )
    return [cold, replace(warm, notes=(note, *warm.notes))]
