"""The smoke test's design: shots needed, thresholds, power, and independent shot seeds."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from qrelease.model.manifest import SmokeGate
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.gates import judge_smoke, shots_needed
from qrelease.quantum.power import (
    SHOT_BLOCK,
    chi2_critical,
    chi2_design,
    noncentral_chi2_sf,
    shot_blocks,
    tvd_design,
)

BELL = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}


def test_shots_needed_for_a_known_case() -> None:
    # S = ½(√¼ + √¼) = 0.5; a = b = √(ln 20 / 2); n = ((S + a + b) / d)²
    by_hand = ((0.5 + 2 * math.sqrt(math.log(20) / 2)) / 0.1) ** 2
    assert shots_needed(SmokeGate(expect=BELL, max_distance=0.1)) == math.ceil(by_hand) == 869
    assert shots_needed(SmokeGate(expect=BELL, max_distance=0.05)) == math.ceil(4 * by_hand)
    stricter = SmokeGate(expect=BELL, max_distance=0.1, power=0.99, alpha=0.01)
    assert shots_needed(stricter) > 869


def test_chi2_power_matches_the_normal_approximation_for_one_degree_of_freedom() -> None:
    # one dof: power = P(|Z + √λ| > z) with λ = n·w², w² = 4·detect²
    design = chi2_design(2, alpha=0.05, detect=0.1, power=0.95, shots=1)
    z = math.sqrt(chi2_critical(0.005, 1))
    needed_by_hand = (z + 1.6448536269514722) ** 2 / (4 * 0.1**2)
    assert design.shots_needed == math.ceil(needed_by_hand)
    assert noncentral_chi2_sf(z * z, 1, 0.0) == pytest.approx(0.005, rel=1e-6)


def test_a_single_expected_outcome_needs_only_that_others_show_up() -> None:
    design = chi2_design(1, alpha=0.05, detect=0.1, power=0.95, shots=10)
    assert design.shots_needed == math.ceil(math.log(0.05) / math.log(0.9)) == 29
    assert design.power == pytest.approx(1 - 0.9**10)


def draw(rng: random.Random, probabilities: dict[str, float], shots: int) -> dict[str, int]:
    """A histogram of `shots` draws from a distribution."""
    keys = list(probabilities)
    return dict(Counter(rng.choices(keys, weights=[probabilities[k] for k in keys], k=shots)))


def verdicts(probabilities: dict[str, float], gate: SmokeGate, trials: int) -> Counter[str]:
    """How often each verdict comes out over seeded repetitions."""
    rng = random.Random(20261203)
    return Counter(
        str(judge_smoke(draw(rng, probabilities, gate.shots), gate).outcome) for _ in range(trials)
    )


def test_with_the_shots_needed_the_design_keeps_both_mistakes_rare() -> None:
    gate = SmokeGate(expect=BELL, shots=shots_needed(SmokeGate(expect=BELL)), seed=1)
    right = verdicts(BELL, gate, 300)
    wrong = verdicts({"[Zero, Zero]": 0.6, "[One, One]": 0.4}, gate, 300)  # TVD exactly 0.1
    assert right[GateOutcome.PASSED] >= 0.95 * 300 and right[GateOutcome.INCONCLUSIVE] == 0
    assert wrong[GateOutcome.FAILED] >= 0.95 * 300 and wrong[GateOutcome.INCONCLUSIVE] == 0


def test_an_expectation_wrong_by_the_threshold_fails_at_a_thousand_shots() -> None:
    # the case the issue reports: with 1,000 shots the old rule gave 17/20 Inconclusive
    # and up to 7/20 Passed for an expectation wrong by about the threshold
    gate = SmokeGate(expect={"[Zero, Zero]": 0.6, "[One, One]": 0.4}, shots=1000)
    outcomes = verdicts(BELL, gate, 200)
    assert outcomes[GateOutcome.FAILED] >= 0.95 * 200
    assert outcomes[GateOutcome.PASSED] <= 0.05 * 200


def test_thresholds_never_cross_and_the_band_closes_at_the_shots_needed() -> None:
    for shots in (10, 100, 500, 868, 869, 5000):
        design = tvd_design(BELL, 0.1, 0.05, 0.95, shots)
        assert design.pass_at <= design.fail_above
        assert (design.pass_at == design.fail_above) == (shots >= design.shots_needed)


def test_shot_seeds_are_independent_of_neighbouring_seeds() -> None:
    def seeds(seed: int, shots: int) -> set[int]:
        return {s + i for s, size in shot_blocks(seed, shots) for i in range(size)}

    # qdk seeds shot i with seed + i: seeds 7 and 8 would share 999 of 1,000 shots
    assert len({7 + i for i in range(1000)} & {8 + i for i in range(1000)}) == 999
    assert seeds(7, 1000).isdisjoint(seeds(8, 1000))
    assert len(seeds(7, 5000)) == 5000  # blocks of one release never overlap either
    assert shot_blocks(7, 5000) == shot_blocks(7, 5000)  # and stay reproducible
    assert all(0 <= s < 2**63 for s, _ in shot_blocks(123, 10 * SHOT_BLOCK))
