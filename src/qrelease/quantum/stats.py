"""Special functions the smoke statistics need, in plain Python (no SciPy in the controller).

The chi-square survival function is the upper regularized incomplete gamma function,
computed by its power series or Lentz's continued fraction (Numerical Recipes, 6.2).
"""

from __future__ import annotations

import math

_EPSILON = 1e-15
_TINY = 1e-300
_MAX_ITERATIONS = 100_000


def chi2_sf(statistic: float, dof: int) -> float:
    """Chi-square survival function P(X ≥ statistic) for `dof` degrees of freedom.

    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    if dof < 0:
        raise ValueError(f"degrees of freedom must be >= 0, not {dof}")
    if dof == 0:
        return 1.0 if statistic <= 0 else 0.0
    return regularized_gamma_q(dof / 2, max(statistic, 0.0) / 2)


def regularized_gamma_q(a: float, x: float) -> float:
    """Upper regularized incomplete gamma Q(a, x) = Γ(a, x)/Γ(a), for a > 0 and x ≥ 0.

    >>> round(regularized_gamma_q(1.0, 2.0), 12) == round(math.exp(-2.0), 12)
    True
    """
    if a <= 0 or x < 0 or math.isnan(x):
        raise ValueError(f"Q(a, x) needs a > 0 and x >= 0, not a={a}, x={x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1:
        return max(0.0, 1.0 - _gamma_p_series(a, x))
    return min(1.0, _gamma_q_continued_fraction(a, x))


def _gamma_prefactor(a: float, x: float) -> float:
    """e^(−x)·x^a / Γ(a), computed in logs to stay finite."""
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_p_series(a: float, x: float) -> float:
    """Lower regularized gamma P(a, x) by its power series (converges fast for x < a + 1)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPSILON:
            break
    return total * _gamma_prefactor(a, x)


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    """Upper regularized gamma Q(a, x) by Lentz's continued fraction (for x ≥ a + 1)."""
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    result = d
    for step in range(1, _MAX_ITERATIONS):
        numerator = -step * (step - a)
        b += 2
        d = numerator * d + b
        d = 1 / (d if abs(d) > _TINY else _TINY)
        c = b + numerator / c
        c = c if abs(c) > _TINY else _TINY
        result *= d * c
        if abs(d * c - 1) < _EPSILON:
            break
    return result * _gamma_prefactor(a, x)
