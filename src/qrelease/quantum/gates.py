"""Judging gate figures: shot histograms and their statistics, resource-estimate budgets.

Kept free of qdk so the judgements can be unit-tested, reused by every backend and reasoned
about on their own. A smoke gate must not flap on sampling noise: its thresholds are
designed (`power.py`) so that a right program passes and one wrong by `max_distance` fails
with the configured probabilities, and an Inconclusive band remains only while the shots
are fewer than that design needs.

Canonical histogram keys: a shot's result is rendered the way Q# prints values —
arrays as ``[Zero, One]``, tuples as ``(Zero, One)``, results as ``Zero``/``One``, booleans
as ``true``/``false``, Unit as ``()``, separators always ``", "``. Manifest ``expect`` keys are
brought to the same form by `canonical_text`, so ``"[Zero,One]"`` matches ``"[Zero, One]"``.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from qrelease.model.manifest import EstimateGate, SmokeGate
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateResult
from qrelease.quantum.power import chi2_design, tvd_design
from qrelease.quantum.stats import chi2_sf

_COMMA = re.compile(r"\s*,\s*")
_AFTER_OPEN = re.compile(r"([\[(])\s+")
_BEFORE_CLOSE = re.compile(r"\s+([\])])")
_SHOWN_OUTCOMES = 16


def canonical_key(value: object) -> str:
    """The histogram key of one shot's result value.

    >>> canonical_key(["Zero", "One"]), canonical_key(("One", True)), canonical_key(None)
    ('[Zero, One]', '(One, true)', '()')
    """
    if value is None:
        return "()"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(canonical_key(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(canonical_key(item) for item in value) + ")"
    return str(value)


def canonical_text(key: str) -> str:
    """A hand-written key (as in a manifest) in canonical spacing.

    >>> canonical_text(" [ Zero,One ] ")
    '[Zero, One]'
    """
    spaced = _COMMA.sub(", ", key.strip())
    return _BEFORE_CLOSE.sub(r"\1", _AFTER_OPEN.sub(r"\1", spaced))


def histogram(results: Iterable[object]) -> dict[str, int]:
    """Count shot results by canonical key.

    >>> histogram([["Zero", "Zero"], ["One", "One"], ["Zero", "Zero"]])
    {'[Zero, Zero]': 2, '[One, One]': 1}
    """
    return dict(Counter(canonical_key(result) for result in results))


def normalise_expect(expect: Mapping[str, float]) -> dict[str, float]:
    """Expected probabilities keyed canonically; keys equal after spacing are merged."""
    merged: dict[str, float] = {}
    for key, probability in expect.items():
        canonical = canonical_text(key)
        merged[canonical] = merged.get(canonical, 0.0) + probability
    return merged


def frequencies(observed: Mapping[str, int]) -> dict[str, float]:
    """Observed counts as fractions of all shots (empty for no shots)."""
    shots = sum(observed.values())
    return {key: count / shots for key, count in observed.items()} if shots else {}


def total_variation(observed: Mapping[str, int], expected: Mapping[str, float]) -> float:
    """Total variation distance between observed counts and expected probabilities.

    Summed over counts and divided once, so a histogram wholly outside the expectation is at
    distance exactly 1 whatever the number of shots.

    >>> total_variation({"a": 50, "b": 50}, {"a": 0.5, "b": 0.5})
    0.0
    >>> total_variation({"a": 1499}, {"b": 1.0})
    1.0
    """
    shots = sum(observed.values())
    if shots == 0:
        return min(1.0, sum(expected.values()) / 2)
    outcomes = set(observed) | set(expected)
    difference = sum(abs(observed.get(k, 0) - shots * expected.get(k, 0.0)) for k in outcomes)
    return min(1.0, difference / (2 * shots))


def chi2_statistic(observed: Mapping[str, int], expected: Mapping[str, float]) -> tuple[float, int]:
    """Pearson's chi-square and its degrees of freedom; infinite when an impossible outcome occurs.

    >>> chi2_statistic({"a": 60, "b": 40}, {"a": 0.5, "b": 0.5})
    (4.0, 1)
    """
    shots = sum(observed.values())
    statistic = 0.0
    for key in set(observed) | set(expected):
        want = expected.get(key, 0.0) * shots
        got = observed.get(key, 0)
        if want > 0:
            statistic += (got - want) ** 2 / want
        elif got > 0:
            statistic = math.inf
    possible = sum(1 for probability in expected.values() if probability > 0)
    return statistic, max(possible - 1, 0)


def judge_smoke(observed: Mapping[str, int], smoke: SmokeGate) -> GateResult:
    """Passed, Failed or Inconclusive for a shot histogram against the manifest's smoke gate."""
    counts = histogram_of(observed)
    expected = normalise_expect(smoke.expect)
    shots = sum(counts.values())
    if shots == 0:
        return GateResult("smoke", GateOutcome.FAILED, "no shot completed", {"shots": 0})
    if smoke.method == "chi2":
        return _judge_chi2(counts, expected, smoke)
    return _judge_tvd(counts, expected, smoke)


def histogram_of(observed: Mapping[str, int]) -> dict[str, int]:
    """Counts re-keyed canonically, merging keys that differ only in spacing."""
    merged: Counter[str] = Counter()
    for key, count in observed.items():
        merged[canonical_text(key)] += count
    return dict(merged)


def shots_needed(smoke: SmokeGate) -> int:
    """The shots the smoke test's design needs (see `power.py`).

    >>> shots_needed(SmokeGate(expect={"[Zero]": 0.5, "[One]": 0.5}))
    869
    """
    design = (smoke.max_distance, smoke.detect, smoke.power, smoke.alpha, smoke.shots)
    return _shots_needed(smoke.method, tuple(smoke.expect.items()), *design)


@functools.lru_cache(maxsize=1024)
def _shots_needed(
    method: str,
    expect: tuple[tuple[str, float], ...],
    max_distance: float,
    detect: float,
    power: float,
    alpha: float,
    shots: int,
) -> int:
    """`shots_needed` of one design (a large repo's releases share a few: `validate` asks 30,000
    times, and a design's search takes a millisecond)."""
    expected = normalise_expect(dict(expect))
    if method == "chi2":
        outcomes = sum(1 for p in expected.values() if p > 0)
        return chi2_design(outcomes, max_distance, detect, power, shots).shots_needed
    return tvd_design(expected, max_distance, alpha, power, 1).shots_needed


def _judge_tvd(counts: dict[str, int], expected: dict[str, float], smoke: SmokeGate) -> GateResult:
    """Pass below the designed cut, fail above what a right program reaches, else Inconclusive."""
    shots = sum(counts.values())
    limit = smoke.max_distance
    distance = total_variation(counts, expected)
    design = tvd_design(expected, limit, smoke.alpha, smoke.power, shots)
    power = design.power(limit)
    details = _details("tvd", counts, expected) | {
        "distance": distance,
        "p_value": design.p_value(distance),
        "power": power,
        "target_power": smoke.power,
        "alpha": smoke.alpha,
        "max_distance": limit,
        "pass_at": design.pass_at,
        "fail_above": design.fail_above,
        "shots_needed": design.shots_needed,
    }
    figures = f"over {shots} shots (power {power:.2f} against {limit:g})"
    if distance <= design.pass_at:
        text = f"TVD {distance:.3f} <= {design.pass_at:.3f} {figures}"
        return GateResult("smoke", GateOutcome.PASSED, text, details)
    if distance > design.fail_above:
        text = f"TVD {distance:.3f} > {design.fail_above:.3f} {figures}" + _unexpected(details)
        return GateResult("smoke", GateOutcome.FAILED, text, details)
    text = (
        f"TVD {distance:.3f} is between {design.pass_at:.3f} and {design.fail_above:.3f}"
        f" {figures}; {design.shots_needed} shots would decide"
    )
    return GateResult("smoke", GateOutcome.INCONCLUSIVE, text, details)


def _judge_chi2(counts: dict[str, int], expected: dict[str, float], smoke: SmokeGate) -> GateResult:
    """p ≥ alpha passes, p < alpha/10 fails, in between is Inconclusive."""
    alpha = smoke.max_distance
    shots = sum(counts.values())
    statistic, dof = chi2_statistic(counts, expected)
    p_value = chi2_sf(statistic, dof)
    design = chi2_design(dof + 1, alpha, smoke.detect, smoke.power, shots)
    finite = statistic if math.isfinite(statistic) else None  # details stay strict JSON
    details = _details("chi2", counts, expected)
    details |= {
        "statistic": finite,
        "dof": dof,
        "p_value": p_value,
        "alpha": alpha,
        "distance": total_variation(counts, expected),
        "power": design.power,
        "target_power": smoke.power,
        "detect": smoke.detect,
        "shots_needed": design.shots_needed,
    }
    summary = (
        f"chi-square {statistic:.3f} (dof {dof}) over {shots} shots: p = {p_value:.3g}"
        f" (power {design.power:.2f} against a deviation of {smoke.detect:g})"
    )
    if p_value >= alpha:
        return GateResult("smoke", GateOutcome.PASSED, f"{summary} >= {alpha:g}", details)
    if p_value < alpha / 10:
        text = f"{summary} < {alpha / 10:g}" + _unexpected(details)
        return GateResult("smoke", GateOutcome.FAILED, text, details)
    text = f"{summary} is between {alpha / 10:g} and {alpha:g}; more shots would decide"
    return GateResult("smoke", GateOutcome.INCONCLUSIVE, text, details)


def _details(method: str, counts: dict[str, int], expected: dict[str, float]) -> dict[str, Any]:
    """The figures every smoke judgement reports, most frequent outcomes first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    unexpected = [(key, count) for key, count in ranked if expected.get(key, 0.0) <= 0]
    return {
        "method": method,
        "shots": sum(counts.values()),
        "distinct_outcomes": len(ranked),
        "observed": dict(ranked[:_SHOWN_OUTCOMES]),
        "expected": expected,
        "unexpected": dict(unexpected[:_SHOWN_OUTCOMES]),
    }


def _unexpected(details: Mapping[str, Any]) -> str:
    """A message suffix naming outcomes that the manifest does not expect, if any."""
    unexpected: dict[str, int] = details["unexpected"]
    if not unexpected:
        return ""
    shown = ", ".join(f"{key} x{count}" for key, count in list(unexpected.items())[:4])
    return f"; unexpected outcomes: {shown}"


def choose_estimate(frontier: Sequence[EstimateSummary], budget: EstimateGate) -> EstimateSummary:
    """The estimate a release is judged by: of the Pareto frontier (fewest qubits first), the
    first that fits the budget, else the one with the fewest qubits.

    >>> frontier = [EstimateSummary(400, 9000), EstimateSummary(600, 3000)]
    >>> choose_estimate(frontier, EstimateGate(max_runtime=timedelta(microseconds=5)))
    EstimateSummary(physical_qubits=600, runtime_ns=3000)
    >>> choose_estimate(frontier, EstimateGate(max_physical_qubits=100)).physical_qubits
    400
    """
    qubit_limit = budget.max_physical_qubits
    runtime_limit = None if budget.max_runtime is None else _ns(budget.max_runtime)
    for point in frontier:
        fits_qubits = qubit_limit is None or point.physical_qubits <= qubit_limit
        fits_runtime = runtime_limit is None or point.runtime_ns <= runtime_limit
        if fits_qubits and fits_runtime:
            return point
    return frontier[0]


def judge_estimate(
    summary: EstimateSummary, budget: EstimateGate, baseline: EstimateSummary | None
) -> GateResult:
    """Failed when the estimate exceeds a budget limit, else Passed; growth vs baseline is reported.

    >>> budget = EstimateGate(max_physical_qubits=400)
    >>> judge_estimate(EstimateSummary(450, 4000), budget, EstimateSummary(300, 4000)).message
    'physical qubits 450 > budget 400 (+50.0% vs baseline); runtime 4 µs (+0.0% vs baseline)'
    """
    growth = estimate_growth(summary, baseline)
    qubit_limit = budget.max_physical_qubits
    runtime_limit = None if budget.max_runtime is None else _ns(budget.max_runtime)
    qubits_over = qubit_limit is not None and summary.physical_qubits > qubit_limit
    runtime_over = runtime_limit is not None and summary.runtime_ns > runtime_limit
    parts = (
        _figure("physical qubits", summary.physical_qubits, qubit_limit, str, growth["qubits"]),
        _figure("runtime", summary.runtime_ns, runtime_limit, format_ns, growth["runtime"]),
    )
    details: dict[str, Any] = {
        "physical_qubits": summary.physical_qubits,
        "runtime_ns": summary.runtime_ns,
        "max_physical_qubits": qubit_limit,
        "max_runtime_ns": runtime_limit,
        "baseline": None if baseline is None else vars(baseline),
        "growth_percent": growth,
    }
    outcome = GateOutcome.FAILED if qubits_over or runtime_over else GateOutcome.PASSED
    return GateResult("estimate", outcome, "; ".join(parts), details)


def _figure(
    name: str,
    value: int,
    limit: int | None,
    show: Callable[[int], str],
    percent: float | None,
) -> str:
    """One estimate figure with its budget and growth, e.g. "runtime 4 µs <= budget 1 ms"."""
    text = f"{name} {show(value)}"
    if limit is not None:
        text += f" {'>' if value > limit else '<='} budget {show(limit)}"
    return text if percent is None else f"{text} ({percent:+.1f}% vs baseline)"


def estimate_growth(
    summary: EstimateSummary, baseline: EstimateSummary | None
) -> dict[str, float | None]:
    """Percent growth of qubits and runtime over the baseline (None where it cannot be said).

    >>> estimate_growth(EstimateSummary(450, 4000), EstimateSummary(300, 4000))
    {'qubits': 50.0, 'runtime': 0.0}
    """
    if baseline is None:
        return {"qubits": None, "runtime": None}
    return {
        "qubits": _percent(summary.physical_qubits, baseline.physical_qubits),
        "runtime": _percent(summary.runtime_ns, baseline.runtime_ns),
    }


def _percent(value: int, base: int) -> float | None:
    """Growth from `base` to `value` in percent, None for a zero base."""
    return None if base == 0 else round((value - base) * 100 / base, 1)


def _ns(duration: timedelta) -> int:
    """A timedelta in whole nanoseconds, exactly."""
    return (duration // timedelta(microseconds=1)) * 1000


def format_ns(nanoseconds: int) -> str:
    """A duration in nanoseconds for people.

    >>> format_ns(4000), format_ns(1_500_000_000)
    ('4 µs', '1.5 s')
    """
    for unit, size in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if nanoseconds >= size:
            return f"{nanoseconds / size:.3g} {unit}"
    return f"{nanoseconds} ns"
