"""Fuzzing the loader, slow lane: more than a thousand hostile commits over the bundled examples.

The same checks as tests/unit/source/test_fuzz.py, on seeds the fast lane never runs: each
case breaks one bundled file (tests/helpers/fuzz.py lists the ways), commits it with an
unrelated pin change, and asserts no traceback, `qrelease validate` exit 0 or 1 naming the
file and line, every other file's verdict unchanged, and the pin change deployed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.fuzz import KINDS, FuzzRig, kind_of, mutate

pytestmark = pytest.mark.slow

SEEDS = range(1000, 1000 + 80 * len(KINDS))  # 1,040 cases: every class of damage 80 times


@pytest.fixture(scope="module")
def fuzz_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRig]:
    """One repo and engine for the module's cases: each case puts back the one before."""
    rig = FuzzRig(tmp_path_factory.mktemp("fuzz-slow"))
    yield rig
    rig.close()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"{seed}-{kind_of(seed)}" for seed in SEEDS])
def test_a_hostile_file_is_reported_and_the_rest_reconciles(fuzz_rig: FuzzRig, seed: int) -> None:
    fuzz_rig.check(mutate(seed))
