"""The smoke and estimate judgements: histogram keys, distances, chi-square, verdict bands."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrelease.model.manifest import EstimateGate, SmokeGate
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary
from qrelease.quantum.gates import (
    canonical_key,
    canonical_text,
    chi2_statistic,
    histogram,
    judge_estimate,
    judge_smoke,
    total_variation,
)
from qrelease.quantum.stats import chi2_sf, regularized_gamma_q

BELL = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}


class FakeResult:
    """Stands in for qdk's Result, which prints as its name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


ZERO, ONE = FakeResult("Zero"), FakeResult("One")


def smoke(expect: dict[str, float], **fields: object) -> SmokeGate:
    """A smoke gate as a manifest would declare it."""
    return SmokeGate.model_validate({"expect": expect, **fields})


# --- keys ---------------------------------------------------------------------------------


def test_result_values_render_as_q_sharp_prints_them() -> None:
    assert canonical_key([ZERO, ONE]) == "[Zero, One]"
    assert canonical_key((ZERO, ONE)) == "(Zero, One)"
    assert canonical_key(ZERO) == "Zero"
    assert canonical_key([]) == "[]"
    assert canonical_key(([ONE], True, 3)) == "([One], true, 3)"
    assert canonical_key(None) == "()"


def test_histogram_counts_equal_results_under_one_key() -> None:
    shots = [[ZERO, ZERO], [ONE, ONE], [ZERO, ZERO], (ZERO, ONE)]
    assert histogram(shots) == {"[Zero, Zero]": 2, "[One, One]": 1, "(Zero, One)": 1}


@pytest.mark.parametrize(
    "written", ["[Zero,One]", " [ Zero , One ] ", "[Zero,  One]", "[Zero,\tOne]"]
)
def test_hand_written_keys_are_brought_to_canonical_spacing(written: str) -> None:
    assert canonical_text(written) == "[Zero, One]"


results = st.recursive(
    st.sampled_from([ZERO, ONE]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=8,
)


@given(results)
def test_canonical_keys_are_fixed_points_of_canonical_text(value: object) -> None:
    key = canonical_key(value)
    assert canonical_text(key) == key


# --- distances ----------------------------------------------------------------------------


def test_total_variation_known_values() -> None:
    assert total_variation({"a": 50, "b": 50}, {"a": 0.5, "b": 0.5}) == 0.0
    assert total_variation({"a": 75, "b": 25}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.25)
    assert total_variation({"c": 10}, {"a": 0.5, "b": 0.5}) == 1.0


counts = st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 500), min_size=1)


@given(counts, counts)
def test_total_variation_is_a_bounded_symmetric_distance(
    left: dict[str, int], right: dict[str, int]
) -> None:
    right_p = {key: n / sum(right.values()) for key, n in right.items()}
    left_p = {key: n / sum(left.values()) for key, n in left.items()}
    distance = total_variation(left, right_p)
    assert 0.0 <= distance <= 1.0
    assert distance == pytest.approx(total_variation(right, left_p))
    assert total_variation(left, left_p) == pytest.approx(0.0, abs=1e-12)


# --- chi-square ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "dof", "p_value"),
    [
        (3.841458820694124, 1, 0.05),  # the textbook critical values
        (6.634896601021214, 1, 0.01),
        (5.991464547107979, 2, 0.05),
        (7.814727903251178, 3, 0.05),
        (18.307038053275146, 10, 0.05),
        (124.34211340400407, 100, 0.05),
        (1.0, 1, 0.31731050786291415),
        (100.0, 100, 0.48119168452796),
        (0.0, 5, 1.0),
    ],
)
def test_chi2_sf_matches_published_values(statistic: float, dof: int, p_value: float) -> None:
    assert chi2_sf(statistic, dof) == pytest.approx(p_value, rel=1e-9)


def chi2_sf_closed_form(x: float, dof: int) -> float:
    """The chi-square survival function by its finite closed forms (any integer dof)."""
    half = x / 2
    if dof % 2 == 0:
        return math.exp(-half) * sum(half**i / math.factorial(i) for i in range(dof // 2))
    tail = math.sqrt(2 * x / math.pi) * math.exp(-half)
    terms = sum(x**i / math.prod(range(1, 2 * i + 2, 2)) for i in range(dof // 2))
    return math.erfc(math.sqrt(half)) + tail * terms


@given(st.floats(0.0, 200.0), st.integers(1, 40))
def test_chi2_sf_agrees_with_closed_forms(x: float, dof: int) -> None:
    assert chi2_sf(x, dof) == pytest.approx(chi2_sf_closed_form(x, dof), rel=1e-8, abs=1e-14)


@given(st.floats(0.01, 500.0), st.floats(0.01, 500.0), st.floats(0.5, 300.0))
def test_regularized_gamma_q_is_a_decreasing_probability(x1: float, x2: float, a: float) -> None:
    low, high = sorted((x1, x2))
    assert 0.0 <= regularized_gamma_q(a, high) <= regularized_gamma_q(a, low) <= 1.0


def test_regularized_gamma_q_rejects_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="a > 0"):
        regularized_gamma_q(0.0, 1.0)
    with pytest.raises(ValueError, match="x >= 0"):
        regularized_gamma_q(1.0, -1.0)


def test_chi2_statistic_is_infinite_for_an_impossible_outcome() -> None:
    assert chi2_statistic({"a": 60, "b": 40}, {"a": 0.5, "b": 0.5}) == (4.0, 1)
    statistic, dof = chi2_statistic({"a": 99, "z": 1}, {"a": 1.0})
    assert math.isinf(statistic)
    assert dof == 0
    assert chi2_sf(statistic, dof) == 0.0


# --- smoke verdicts -----------------------------------------------------------------------


def test_tvd_verdict_bands_close_once_the_shots_suffice() -> None:
    # 500 shots are too few for max_distance 0.1: pass up to 0.045, fail above 0.077
    few = smoke(BELL, shots=500, max_distance=0.1)
    passed = judge_smoke({"[Zero, Zero]": 265, "[One, One]": 235}, few)  # TVD 0.03
    unsure = judge_smoke({"[Zero, Zero]": 280, "[One, One]": 220}, few)  # TVD 0.06
    failed = judge_smoke({"[Zero, Zero]": 300, "[One, One]": 200}, few)  # TVD 0.10
    assert passed.outcome is GateOutcome.PASSED, passed.message
    assert unsure.outcome is GateOutcome.INCONCLUSIVE, unsure.message
    assert "869 shots would decide" in unsure.message
    assert failed.outcome is GateOutcome.FAILED, failed.message
    assert failed.details["distance"] == pytest.approx(0.1)
    # 1000 shots suffice: one cut at 0.1 - sqrt(ln(20)/2)/sqrt(1000), no Inconclusive band
    enough = smoke(BELL, shots=1000, max_distance=0.1)
    cut = 0.1 - math.sqrt(math.log(20) / 2) / math.sqrt(1000)
    below = judge_smoke({"[Zero, Zero]": 560, "[One, One]": 440}, enough)  # TVD 0.06
    above = judge_smoke({"[Zero, Zero]": 562, "[One, One]": 438}, enough)  # TVD 0.062
    assert below.details["pass_at"] == below.details["fail_above"] == pytest.approx(cut)
    assert below.outcome is GateOutcome.PASSED and above.outcome is GateOutcome.FAILED
    assert below.details["power"] >= 0.95 and below.details["shots_needed"] == 869


def test_the_report_carries_distance_p_value_and_power() -> None:
    result = judge_smoke({"[Zero, Zero]": 505, "[One, One]": 495}, smoke(BELL, shots=1000))
    assert result.details["distance"] == pytest.approx(0.005)
    assert result.details["p_value"] == 1.0  # below what a right program averages
    assert 0.95 <= result.details["power"] < 1
    assert "power 0.95 against 0.1" in result.message
    far = judge_smoke({"[Zero, Zero]": 560, "[One, One]": 440}, smoke(BELL, shots=1000))
    mean = 0.5 / math.sqrt(1000)
    assert far.details["p_value"] == pytest.approx(math.exp(-2 * 1000 * (0.06 - mean) ** 2))


def test_unexpected_outcomes_count_toward_distance_and_are_named() -> None:
    gate = smoke(BELL, shots=1000)
    result = judge_smoke({"[Zero, Zero]": 400, "[One, One]": 400, "[Zero, One]": 200}, gate)
    assert result.outcome is GateOutcome.FAILED
    assert result.details["distance"] == pytest.approx(0.2)
    assert "unexpected outcomes: [Zero, One] x200" in result.message


def test_manifest_keys_match_histogram_keys_whatever_their_spacing() -> None:
    gate = smoke({"[Zero,Zero]": 0.5, "[One,One]": 0.5})
    result = judge_smoke({"[Zero, Zero]": 500, "[One, One]": 500}, gate)
    assert result.outcome is GateOutcome.PASSED
    assert result.details["distance"] == 0.0


def test_chi2_verdict_bands() -> None:
    gate = smoke(BELL, method="chi2", max_distance=0.05)
    # 1000 shots: chi2 = (d^2/500) * 2; p ≥ 0.05 passes, p < 0.005 fails
    passed = judge_smoke({"[Zero, Zero]": 520, "[One, One]": 480}, gate)  # chi2 1.6, p 0.21
    unsure = judge_smoke({"[Zero, Zero]": 540, "[One, One]": 460}, gate)  # chi2 6.4, p 0.011
    failed = judge_smoke({"[Zero, Zero]": 560, "[One, One]": 440}, gate)  # chi2 14.4, p 0.00015
    assert passed.outcome is GateOutcome.PASSED, passed.message
    assert unsure.outcome is GateOutcome.INCONCLUSIVE, unsure.message
    assert failed.outcome is GateOutcome.FAILED, failed.message
    assert unsure.details["p_value"] == pytest.approx(0.011412036386001, rel=1e-6)
    assert unsure.details["shots_needed"] == 496  # detect 0.1 at 0.005 with power 0.95
    assert unsure.details["distance"] == pytest.approx(0.04)


def test_chi2_fails_an_outcome_the_manifest_rules_out() -> None:
    gate = smoke({"[Zero, Zero]": 0.5, "[One, One]": 0.5, "[Zero, One]": 0.0}, method="chi2")
    result = judge_smoke({"[Zero, Zero]": 500, "[One, One]": 499, "[Zero, One]": 1}, gate)
    assert result.outcome is GateOutcome.FAILED
    assert "[Zero, One] x1" in result.message


def test_no_shots_fails() -> None:
    assert judge_smoke({}, smoke(BELL)).outcome is GateOutcome.FAILED


@given(st.integers(0, 1000), st.sampled_from(["tvd", "chi2"]))
def test_a_verdict_is_always_given_with_its_figures(zeros: int, method: str) -> None:
    observed = {"[Zero, Zero]": zeros, "[One, One]": 1000 - zeros}
    result = judge_smoke(observed, smoke(BELL, method=method))
    assert result.gate == "smoke"
    assert result.outcome in (GateOutcome.PASSED, GateOutcome.FAILED, GateOutcome.INCONCLUSIVE)
    assert result.details["shots"] == 1000


# --- estimate budget ----------------------------------------------------------------------


def test_estimate_within_budget_passes_and_reports_growth() -> None:
    budget = EstimateGate(max_physical_qubits=1000, max_runtime=timedelta(milliseconds=1))
    result = judge_estimate(EstimateSummary(450, 4000), budget, EstimateSummary(300, 5000))
    assert result.outcome is GateOutcome.PASSED
    assert "+50.0% vs baseline" in result.message
    assert "-20.0% vs baseline" in result.message
    assert result.details["growth_percent"] == {"qubits": 50.0, "runtime": -20.0}
    assert result.details["max_runtime_ns"] == 1_000_000


def test_estimate_over_either_limit_fails() -> None:
    slow = EstimateGate(max_runtime=timedelta(microseconds=1))
    result = judge_estimate(EstimateSummary(450, 4000), slow, None)
    assert result.outcome is GateOutcome.FAILED
    assert "runtime 4 µs > budget 1 µs" in result.message
    big = EstimateGate(max_physical_qubits=449)
    assert judge_estimate(EstimateSummary(450, 4000), big, None).outcome is GateOutcome.FAILED
