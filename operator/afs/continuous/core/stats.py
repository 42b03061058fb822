"""Always-valid inference for A/B tests (pure; numpy/scipy only).

Why not a t-test: the loop looks at a running test every few minutes, and a test that is
checked repeatedly will eventually cross any fixed threshold by chance (Armitage et al.,
1969). A *confidence sequence* is an interval that holds at every look at once: the
probability that it ever excludes the truth, over the whole test, is at most alpha. So
the loop may look as often as it likes and stop the moment the interval is decisive.

The interval used here is the normal-mixture (mSPRT) boundary (Robbins 1970; Howard et
al. 2021; Johari et al. 2022) for a difference of two means with estimator variance V:

    Delta +/- sqrt( V * (1 + V/tau2) * (2 ln(1/alpha) + ln(1 + tau2/V)) )

``tau2`` (the mixing variance) is fixed before the test; it makes the interval tightest
when V reaches the variance planned for the end of the test (:func:`mixing_variance`).

Counts are tested with e-values: the traffic split (sample-ratio mismatch) with a
Beta-mixture for a binomial proportion, excess errors with a mixture of likelihood ratios
over planned rate ratios. An e-value's chance of ever exceeding 1/alpha under the null is
at most alpha (Ville's inequality), so it too may be checked at every look.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import betaln, logsumexp


@dataclass(frozen=True)
class Interval:
    """An always-valid interval for a difference (challenger minus champion)."""

    estimate: float
    lower: float
    upper: float
    variance: float

    @property
    def radius(self) -> float:
        return (self.upper - self.lower) / 2

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def optimal_ratio(alpha: float) -> float:
    """The tau2/V ratio at which the boundary is narrowest: r = 2 ln(1/alpha) + ln(1+r)."""
    level = 2 * math.log(1 / alpha)
    return float(brentq(lambda r: r - level - math.log1p(r), level, 10 * level + 10))


def mixing_variance(planned_variance: float, alpha: float) -> float:
    """tau2 chosen so that the boundary is tightest when V equals ``planned_variance``
    (the estimator's variance at the planned sample size)."""
    if not planned_variance > 0:
        raise ValueError("planned_variance must be > 0")
    return optimal_ratio(alpha) * planned_variance


def radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at estimator variance V."""
    return float(radii(np.asarray(variance, dtype=float), tau2, alpha))


def radii(variance: NDArray[np.float64], tau2: float, alpha: float) -> NDArray[np.float64]:
    """:func:`radius` for an array of variances (simulations judge many tests at once)."""
    v = np.maximum(variance, 0.0)
    safe = np.where(v > 0, v, 1.0)
    width = np.sqrt(safe * (1 + safe / tau2) * (2 * math.log(1 / alpha) + np.log1p(tau2 / safe)))
    return np.where(v > 0, width, 0.0)


def interval(estimate: float, variance: float, *, tau2: float, alpha: float) -> Interval:
    r = radius(variance, tau2, alpha)
    return Interval(estimate, estimate - r, estimate + r, variance)


def mean_difference(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    *,
    tau2: float,
    alpha: float,
) -> Interval:
    """Confidence sequence for mean_b - mean_a from per-arm n, mean and variance."""
    if n_a < 2 or n_b < 2:
        raise ValueError("each arm needs at least two observations")
    variance = var_a / n_a + var_b / n_b
    return interval(mean_b - mean_a, variance, tau2=tau2, alpha=alpha)


def smoothed_rate(events: int, n: int) -> float:
    """(x + 1/2) / (n + 1): never 0 or 1, so a variance estimate is never 0."""
    return (events + 0.5) / (n + 1)


def proportion_difference(
    x_a: int, n_a: int, x_b: int, n_b: int, *, tau2: float, alpha: float
) -> Interval:
    """Confidence sequence for p_b - p_a; the variance uses smoothed rates."""
    if n_a < 1 or n_b < 1:
        raise ValueError("each arm needs at least one observation")
    p_a, p_b = smoothed_rate(x_a, n_a), smoothed_rate(x_b, n_b)
    variance = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    return interval(x_b / n_b - x_a / n_a, variance, tau2=tau2, alpha=alpha)


def combine(parts: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Combine per-epoch (weight, estimate, variance) with fixed weights (summing to 1):
    the estimate is the weighted sum and its variance the sum of weight^2 * variance.

    The weights must not depend on the data (here: each epoch's share of the test's
    duration), or the combination would not be a fixed contrast.
    """
    total = sum(w for w, _, _ in parts)
    if not total > 0:
        raise ValueError("epoch weights must sum to more than 0")
    estimate = sum(w * e for w, e, _ in parts) / total
    variance = sum((w / total) ** 2 * v for w, _, v in parts)
    return estimate, variance


def binomial_log_evalues(
    successes: NDArray[np.float64] | float,
    trials: NDArray[np.float64] | float,
    null: float,
    concentration: float,
) -> NDArray[np.float64]:
    """Array form of :func:`binomial_log_evalue`."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    a, b = concentration * null, concentration * (1 - null)
    f = n - k
    mixture = betaln(a + k, b + f) - betaln(a, b)
    result: NDArray[np.float64] = mixture - (k * math.log(null) + f * math.log1p(-null))
    return np.where(n > 0, result, 0.0)


def binomial_log_evalue(successes: int, trials: int, null: float, concentration: float) -> float:
    """log of a Beta-mixture e-value against H0: p = ``null``, for ``successes`` in
    ``trials``. The mixture is Beta(c*null, c*(1-null)): centred on the null, with
    ``concentration`` c setting how far from it the alternatives it bets on lie."""
    if not 0 < null < 1:
        raise ValueError("null share must be in (0, 1)")
    if successes < 0 or trials < successes:
        raise ValueError("need 0 <= successes <= trials")
    return float(binomial_log_evalues(successes, trials, null, concentration))


def sample_ratio_log_evalue(
    challenger: int, champion: int, planned_share: float, *, concentration: float = 100.0
) -> float:
    """Evidence that traffic did not split as planned (sample-ratio mismatch)."""
    return binomial_log_evalue(challenger, challenger + champion, planned_share, concentration)


def excess_ratio_mixture(ratio: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The rate ratios the excess-events test bets on, and its weight on each, for a
    planned ``ratio`` r: 80% on r itself (the test is then within ln(1/0.8) = 0.22 nats of
    the likelihood ratio of exactly r), 10% each on 1 + (r - 1)/2 and 1 + 2(r - 1) so that
    a smaller or larger excess is still caught, later."""
    if not ratio > 1:
        raise ValueError("the planned ratio of event rates must exceed 1")
    return (1 + (ratio - 1) / 2, ratio, 1 + 2 * (ratio - 1)), (0.1, 0.8, 0.1)


def excess_events_log_evalues(
    parts: Sequence[tuple[NDArray[np.float64] | float, NDArray[np.float64] | float, float]],
    *,
    ratio: float = 2.0,
) -> NDArray[np.float64]:
    """Array form of :func:`excess_events_log_evalue` (``parts``: events on the
    challenger, events on the champion, challenger share, per epoch)."""
    ratios, weights = excess_ratio_mixture(ratio)
    log_lr: list[NDArray[np.float64]] = [np.zeros(()) for _ in ratios]
    for events_b, events_a, share in parts:
        if not 0 < share < 1:
            continue
        k = np.asarray(events_b, dtype=float)
        f = np.asarray(events_a, dtype=float)
        for index, r in enumerate(ratios):
            p = r * share / (r * share + 1 - share)
            log_lr[index] = log_lr[index] + k * math.log(p / share)
            log_lr[index] = log_lr[index] + f * math.log((1 - p) / (1 - share))
    stacked = np.stack(np.broadcast_arrays(*(
        lr + math.log(w) for lr, w in zip(log_lr, weights, strict=True)
    )))  # fmt: skip
    result: NDArray[np.float64] = logsumexp(stacked, axis=0)
    return result


def excess_events_log_evalue(
    parts: Sequence[tuple[int, int, float]], *, ratio: float = 2.0
) -> float:
    """Evidence that the challenger has a higher event rate (errors, …) than the
    champion, from (events on the challenger, events on the champion, challenger share)
    per epoch.

    Given that an event happened, under H0 (equal rates) it fell on the challenger with
    probability s, its epoch's share; if the challenger's rate is r times the
    champion's, with probability p(r) = r·s / (r·s + 1 − s). The likelihood ratio of all
    events for one r is the product over epochs of (p/s)^k ((1−p)/(1−s))^f: a test
    martingale under H0 whatever the shares (each is fixed before its events). The
    e-value mixes it over the ratios of :func:`excess_ratio_mixture` with fixed weights,
    so it is one too, and by Ville's inequality it ever reaches 1/α with probability at
    most α. Every r > 1, so it grows only with an excess on the challenger's side.
    """
    for events_b, events_a, share in parts:
        if events_b < 0 or events_a < 0:
            raise ValueError("event counts must be non-negative")
        if not 0 <= share <= 1:
            raise ValueError("share must be in [0, 1]")
    return float(excess_events_log_evalues(parts, ratio=ratio))


def ratio_mean_variance(
    units: NDArray[np.float64] | float,
    n: NDArray[np.float64] | float,
    y: NDArray[np.float64] | float,
    y2: NDArray[np.float64] | float,
    yn: NDArray[np.float64] | float,
    n2: NDArray[np.float64] | float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(mean, variance) of a per-request mean when requests come in correlated units
    (the users a sticky assignment routes), by the delta method over units.

    With unit i contributing y_i (the metric summed over its requests) and n_i (its
    requests), the mean is R = Σy/Σn, and R's variance is about
    Σ(y_i − R·n_i)² / (m(m − 1)·n̄²) for m units of n̄ requests on average: the spread of
    whole units, not of requests, so a heavy user's many alike requests count as the one
    draw they are. From the sums over units of n, y, y², y·n and n². NaN below 2 units.
    """
    m, sn, sy = (np.asarray(v, dtype=float) for v in (units, n, y))
    sy2, syn, sn2 = (np.asarray(v, dtype=float) for v in (y2, yn, n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sy / sn
        residual = np.maximum(sy2 - 2 * mean * syn + mean * mean * sn2, 0.0)
        variance = residual * m / ((m - 1) * sn * sn)
    ok = (m >= 2) & (sn > 0)
    return np.where(ok, mean, np.nan), np.where(ok, variance, np.nan)
