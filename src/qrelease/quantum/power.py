"""The smoke test's design: how many shots it takes to tell a wrong program from a right one.

A smoke test draws `n` shots and compares their histogram with the expected distribution.
Two mistakes are possible: failing a program that is right (its probability is `alpha`),
and passing one that is wrong by `max_distance` or more (its probability is 1 − `power`).
This module computes, from the expected distribution, `max_distance`, `alpha` and `power`,
the decision thresholds for a given `n` and the smallest `n` that keeps both mistakes that
rare. It also derives each block of shots' seed, so that two releases never share shots.

**TVD method.** T is the total variation distance between the observed frequencies and
the expectation. Both bounds used are distribution-free (they hold for any program):

- a right program: T concentrates around its mean, which is at most S/√n with
  S = ½·Σ√(pᵢ(1−pᵢ)); McDiarmid's inequality gives P(T > S/√n + a/√n) ≤ alpha for
  a = √(ln(1/alpha)/2).
- a wrong program (true distance ≥ d = max_distance): on the outcomes it over-produces,
  the observed excess is a binomial proportion, so by Hoeffding's inequality
  P(T ≤ d − b/√n) ≤ 1 − power for b = √(ln(1/(1−power))/2).

The gate passes when T ≤ d − b/√n (a deviation of d would have shown with probability
`power`), fails when T > max(S + a)/√n, d − b/√n) (a right program gets that far with
probability at most `alpha`), and is Inconclusive in between, a band that closes once
n ≥ ((S + a + b)/d)²: that is the number of shots needed.

**chi2 method.** Pearson's statistic against the expectation; `max_distance` is the
significance level. Its power against a deviation of `detect` (in TVD) uses the noncentral
chi-square distribution with noncentrality n·w², where w² = 4·detect² is the smallest
Cohen's w² that any deviation of that size can have (deviations that put weight on an
unexpected outcome are caught at once, as their statistic is infinite).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from qrelease.quantum.stats import chi2_sf, regularized_gamma_q

SHOT_BLOCK = 1000
"""Shots run with one derived seed (qdk seeds shot i of a run with seed + i)."""
MAX_SHOTS = 10_000_000
_SEED_BITS = 63


@dataclass(frozen=True)
class TvdDesign:
    """The TVD test's thresholds at `shots`, and what it takes to close its Inconclusive band.

    >>> design = tvd_design({"a": 0.5, "b": 0.5}, 0.1, 0.05, 0.95, 1000)
    >>> design.shots_needed, round(design.pass_at, 4), design.fail_above == design.pass_at
    (869, 0.0613, True)
    """

    shots: int
    pass_at: float
    fail_above: float
    shots_needed: int
    spread: float

    def p_value(self, distance: float) -> float:
        """An upper bound on P(T ≥ distance) for a program that is right."""
        mean = self.spread / math.sqrt(self.shots)
        if distance <= mean:
            return 1.0
        return min(1.0, math.exp(-2 * self.shots * (distance - mean) ** 2))

    def power(self, max_distance: float) -> float:
        """A lower bound on the chance of failing a program wrong by `max_distance`."""
        margin = max_distance - self.fail_above
        return 0.0 if margin <= 0 else 1 - math.exp(-2 * self.shots * margin**2)


def tvd_design(
    expected: Mapping[str, float], max_distance: float, alpha: float, power: float, shots: int
) -> TvdDesign:
    """The TVD test's thresholds for `shots` and the shots its design needs."""
    spread = 0.5 * sum(math.sqrt(p * (1 - p)) for p in expected.values() if p > 0)
    a = math.sqrt(math.log(1 / alpha) / 2)
    b = math.sqrt(math.log(1 / (1 - power)) / 2)
    root = math.sqrt(shots)
    pass_at = max_distance - b / root
    fail_above = max((spread + a) / root, pass_at)
    needed = math.ceil(((spread + a + b) / max_distance) ** 2)
    return TvdDesign(shots, pass_at, fail_above, min(needed, MAX_SHOTS), spread)


@dataclass(frozen=True)
class Chi2Design:
    """The chi-square test's power at `shots` and the shots it needs for the target power.

    >>> design = chi2_design(8, 0.01, 0.1, 0.95, 800)
    >>> design.shots_needed, round(design.power, 3)
    (908, 0.903)
    """

    shots: int
    power: float
    shots_needed: int


def chi2_design(outcomes: int, alpha: float, detect: float, power: float, shots: int) -> Chi2Design:
    """Power against a deviation of `detect`, failing at p < alpha/10 (the Failed verdict)."""
    dof = max(outcomes - 1, 0)
    level = alpha / 10
    if dof == 0:  # one expected outcome: any other outcome fails the test outright
        achieved = 1 - (1 - detect) ** shots
        needed = math.ceil(math.log(1 - power) / math.log(1 - detect))
        return Chi2Design(shots, achieved, min(needed, MAX_SHOTS))
    critical = chi2_critical(level, dof)
    w2 = 4 * detect * detect

    def power_at(n: int) -> float:
        return noncentral_chi2_sf(critical, dof, n * w2)

    low, high = 1, 1
    while power_at(high) < power and high < MAX_SHOTS:
        low, high = high, min(high * 2, MAX_SHOTS)
    while low < high:
        middle = (low + high) // 2
        if power_at(middle) >= power:
            high = middle
        else:
            low = middle + 1
    return Chi2Design(shots, power_at(shots), high)


def chi2_critical(level: float, dof: int) -> float:
    """The x with P(χ²_dof ≥ x) = level.

    >>> round(chi2_critical(0.05, 1), 4)
    3.8415
    """
    low, high = 0.0, 1.0
    while chi2_sf(high, dof) > level:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if chi2_sf(middle, dof) > level:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def noncentral_chi2_sf(x: float, dof: int, noncentrality: float) -> float:
    """P(X ≥ x) for X noncentral chi-square: a Poisson(λ/2) mixture of central chi-squares.

    >>> round(noncentral_chi2_sf(3.8415, 1, 0.0), 4)
    0.05
    >>> round(noncentral_chi2_sf(3.8415, 1, 13.0), 2)
    0.95
    """
    half = noncentrality / 2
    if half == 0:
        return chi2_sf(x, dof)
    mode = int(half)
    width = int(12 * math.sqrt(half)) + 30
    total = 0.0
    for j in range(max(0, mode - width), mode + width + 1):
        log_weight = -half + j * math.log(half) - math.lgamma(j + 1)
        total += math.exp(log_weight) * regularized_gamma_q((dof + 2 * j) / 2, x / 2)
    return min(1.0, total)


def shot_blocks(seed: int, shots: int) -> list[tuple[int, int]]:
    """(seed, size) for each block of shots: each block's seed is a hash of (seed, block).

    qdk seeds shot i of a run with seed + i, so two runs seeded 7 and 8 would share all
    but one shot. Hashed block seeds are 63-bit and unrelated for neighbouring seeds.

    >>> [size for _, size in shot_blocks(7, 2500)]
    [1000, 1000, 500]
    >>> shot_blocks(7, 10)[0][0] - shot_blocks(8, 10)[0][0] not in range(-10, 11)
    True
    """
    blocks = []
    for index, first in enumerate(range(0, shots, SHOT_BLOCK)):
        digest = hashlib.sha256(f"qrelease-smoke/{seed}/{index}".encode()).digest()
        block_seed = int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)
        blocks.append((block_seed, min(SHOT_BLOCK, shots - first)))
    return blocks
