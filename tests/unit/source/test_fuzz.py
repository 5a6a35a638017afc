"""Fuzzing the loader, fast lane: about a hundred hostile commits over the bundled examples.

Each seed breaks one bundled file (tests/helpers/fuzz.py lists the ways) and commits it with
an unrelated pin change; `qrelease validate` must name the file and line without a traceback,
leave every other file's verdict alone, and a reconcile pass must still deploy the pin.
The slow lane (tests/integration/source/test_fuzz_slow.py) runs more than a thousand seeds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.fuzz import BUNDLED, KINDS, FuzzRig, Mutation, kind_of, mutate

SEEDS = range(8 * len(KINDS))  # every class of damage eight times


@pytest.fixture(scope="module")
def fuzz_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRig]:
    """One repo and engine for the module's cases: each case puts back the one before."""
    rig = FuzzRig(tmp_path_factory.mktemp("fuzz"))
    yield rig
    rig.close()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{seed}-{kind_of(seed)}" for seed in SEEDS])
def test_a_hostile_file_is_reported_and_the_rest_reconciles(fuzz_rig: FuzzRig, seed: int) -> None:
    fuzz_rig.check(mutate(seed))


def test_the_mutator_is_deterministic_and_every_class_breaks_its_file() -> None:
    for seed in range(2 * len(KINDS)):
        first, again = mutate(seed), mutate(seed)
        assert first == again
        assert first.content != b"" or first.kind == "truncation"
    assert {kind_of(seed) for seed in SEEDS} == set(KINDS)


QRNG = BUNDLED["manifests/qrng/0.2.0.yaml"].replace("version: 0.2.0", "version: 0.3.0")
DEV = BUNDLED["releases/dev.yaml"].replace("environment: dev", "environment: qa")
NOTHING_USES = {
    "unpinned release, impossible date": (
        "manifests/qrng/0.3.0.yaml",
        QRNG,
        "seed: 3",
        "seed: 2026-02-30",
    ),
    "unpinned release, 5,000 digits": (
        "manifests/qrng/0.3.0.yaml",
        QRNG,
        "seed: 3",
        "seed: " + "5" * 5000,
    ),
    "unused environment, 999 levels": (
        "releases/qa.yaml",
        DEV,
        "keep: 3",
        "keep: " + "[" * 998 + "]" * 998,
    ),
    "unused environment, endless soak": (
        "releases/qa.yaml",
        DEV,
        "soak: 0s",
        "soak: 99999999999999d",
    ),
}


@pytest.mark.parametrize("case", sorted(NOTHING_USES))
def test_a_hostile_file_nothing_uses_stops_nothing(fuzz_rig: FuzzRig, case: str) -> None:
    path, text, old, new = NOTHING_USES[case]
    line = next(i for i, row in enumerate(text.splitlines(), 1) if old in row)
    content = text.replace(old, new).encode()
    fuzz_rig.check(Mutation(case, -1, path, content, line, must_fail=True))
