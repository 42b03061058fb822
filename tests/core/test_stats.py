"""Always-valid intervals and e-values: hand-computed values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from afs.continuous.core import stats


def test_radius_matches_the_formula_by_hand() -> None:
    # sqrt(V (1 + V/tau2) (2 ln(1/alpha) + ln(1 + tau2/V))) with V=1e-4, tau2=8e-4, alpha=.05
    assert stats.radius(1e-4, 8e-4, 0.05) == pytest.approx(0.03035173020603558, rel=1e-12)


def test_mean_difference_by_hand() -> None:
    tau2 = stats.mixing_variance(0.0003, 0.05)
    assert tau2 == pytest.approx(8.211968062068253 * 0.0003)
    ci = stats.mean_difference(400, 0.70, 0.0225, 100, 0.75, 0.0225, tau2=tau2, alpha=0.05)
    assert ci.estimate == pytest.approx(0.05)
    assert ci.variance == pytest.approx(0.0225 / 400 + 0.0225 / 100)
    assert ci.radius == pytest.approx(0.05090558219322275, rel=1e-9)


def test_proportion_difference_uses_smoothed_rates_for_the_variance() -> None:
    ci = stats.proportion_difference(30, 200, 20, 100, tau2=0.01, alpha=0.05)
    assert ci.estimate == pytest.approx(20 / 100 - 30 / 200)
    assert ci.variance == pytest.approx(0.0022613129223811265)
    zero = stats.proportion_difference(0, 50, 0, 50, tau2=0.01, alpha=0.05)
    assert zero.variance > 0 and zero.contains(0.0)


def test_optimal_ratio_solves_its_equation() -> None:
    r = stats.optimal_ratio(0.05)
    assert r == pytest.approx(2 * math.log(20) + math.log1p(r))
    # the boundary is narrowest at V = tau2 / r
    tau2 = 1.0
    widths = [stats.radius(v, tau2, 0.05) / math.sqrt(v) for v in (0.5 / r, 1 / r, 2 / r)]
    assert widths[1] < widths[0] and widths[1] < widths[2]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=100_000),
    sd=st.floats(min_value=0.01, max_value=10),
    alpha=st.floats(min_value=0.001, max_value=0.2),
)
def test_interval_shrinks_with_n_and_is_symmetric(n: int, sd: float, alpha: float) -> None:
    tau2 = stats.mixing_variance(sd * sd / 500, alpha)
    small = stats.mean_difference(n, 1.0, sd * sd, n, 1.5, sd * sd, tau2=tau2, alpha=alpha)
    large = stats.mean_difference(4 * n, 1.0, sd * sd, 4 * n, 1.5, sd * sd, tau2=tau2, alpha=alpha)
    assert large.radius < small.radius
    assert small.estimate - small.lower == pytest.approx(small.upper - small.estimate)


@settings(max_examples=100, deadline=None)
@given(alpha=st.floats(min_value=0.001, max_value=0.2), v=st.floats(min_value=1e-6, max_value=1))
def test_smaller_alpha_gives_a_wider_interval(alpha: float, v: float) -> None:
    assert stats.radius(v, 0.01, alpha / 2) > stats.radius(v, 0.01, alpha)


def test_interval_covers_the_truth_at_every_look() -> None:
    """Monte Carlo: over 2,000 runs of 300 looks each, the share of runs in which the
    interval *ever* missed the true difference stays below alpha."""
    rng = np.random.default_rng(5)
    runs, looks, per_look, alpha = 2000, 300, 5, 0.05
    a = rng.normal(0.7, 0.15, size=(runs, looks * per_look))
    b = rng.normal(0.7, 0.15, size=(runs, looks * per_look))
    tau2 = stats.mixing_variance(2 * 0.0225 / (looks * per_look / 2), alpha)
    missed = np.zeros(runs, dtype=bool)
    for look in range(1, looks + 1):
        n = look * per_look
        delta = b[:, :n].mean(axis=1) - a[:, :n].mean(axis=1)
        variance = a[:, :n].var(axis=1, ddof=1) / n + b[:, :n].var(axis=1, ddof=1) / n
        half = np.sqrt(
            variance * (1 + variance / tau2) * (2 * math.log(1 / alpha) + np.log1p(tau2 / variance))
        )
        missed |= np.abs(delta) > half
    assert missed.mean() < alpha


def test_epochs_combine_with_fixed_weights() -> None:
    estimate, variance = stats.combine([(1.0, 0.1, 0.04), (3.0, 0.2, 0.01)])
    assert estimate == pytest.approx(0.25 * 0.1 + 0.75 * 0.2)
    assert variance == pytest.approx(0.25**2 * 0.04 + 0.75**2 * 0.01)
    with pytest.raises(ValueError):
        stats.combine([(0.0, 0.1, 0.04)])


def test_sample_ratio_evalue_grows_only_with_a_mismatch() -> None:
    planned = stats.sample_ratio_log_evalue(1000, 9000, 0.1)
    skewed = stats.sample_ratio_log_evalue(1300, 8700, 0.1)
    assert planned < 0 < math.log(1000) < skewed


def test_excess_events_evalue_is_one_sided() -> None:
    assert stats.excess_events_log_evalue([(0, 0, 0.1)]) == pytest.approx(0.0)
    deficit = stats.excess_events_log_evalue([(5, 95, 0.1)])
    excess = stats.excess_events_log_evalue([(40, 160, 0.1)])
    assert deficit < 0 < excess
    assert excess > math.log(1 / 0.05)


def test_excess_events_evidence_accumulates_across_epochs() -> None:
    """One bet over all epochs: two epochs that each fall short together prove it."""
    first, second = (16, 64, 0.1), (56, 144, 0.2)
    each = [stats.excess_events_log_evalue([part]) for part in (first, second)]
    both = stats.excess_events_log_evalue([first, second])
    assert max(each) < math.log(60) <= both


def test_the_excess_events_mixture_bets_mostly_on_the_planned_ratio() -> None:
    ratios, weights = stats.excess_ratio_mixture(2.0)
    assert ratios == (1.5, 2.0, 3.0) and weights == (0.1, 0.8, 0.1)
    with pytest.raises(ValueError, match="must exceed 1"):
        stats.excess_ratio_mixture(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        stats.excess_events_log_evalue([(-1, 3, 0.1)])


def test_excess_events_evalue_rarely_crosses_under_the_null() -> None:
    """Ville's inequality, by simulation: equal error rates, a look every step, the share
    ramped from 10% to 50% half-way (the bet is over both epochs); the e-value ever
    reaches 1/alpha in at most alpha of the runs (20,000 runs, 200 looks each)."""
    rng = np.random.default_rng(17)
    runs, looks, alpha = 20_000, 200, 0.05
    crossed = np.zeros(runs, dtype=bool)
    counts = {0.1: [np.zeros(runs), np.zeros(runs)], 0.5: [np.zeros(runs), np.zeros(runs)]}
    for look in range(looks):
        share = 0.1 if look < looks // 2 else 0.5
        events = rng.binomial(10, 0.05, size=runs)  # the same rate on both arms
        on_b = rng.binomial(events, share)
        counts[share][0] += on_b
        counts[share][1] += events - on_b
        parts = [(b, a, sh) for sh, (b, a) in counts.items()]
        crossed |= stats.excess_events_log_evalues(parts) >= math.log(1 / alpha)
    rate = crossed.mean()
    assert rate <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize(
    "call",
    [
        lambda: stats.mean_difference(1, 0, 1, 5, 0, 1, tau2=1, alpha=0.05),
        lambda: stats.proportion_difference(0, 0, 1, 5, tau2=1, alpha=0.05),
        lambda: stats.binomial_log_evalue(5, 3, 0.5, 10),
        lambda: stats.binomial_log_evalue(1, 3, 1.0, 10),
        lambda: stats.mixing_variance(0.0, 0.05),
    ],
)
def test_bad_arguments_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_the_unit_level_variance_is_the_spread_of_whole_units() -> None:
    """Users of 5-50 requests whose requests share a per-user effect (30% of the
    variance): the delta-method variance over users matches the mean's real spread over
    2,000 draws, and is several times the request-level one, which ignores the sharing."""
    rng = np.random.default_rng(4)
    means, variances, naive = [], [], []
    for _ in range(2000):
        n = rng.integers(5, 51, size=100)
        effect = rng.normal(0, 0.15 * math.sqrt(0.3), size=100)
        values = [
            0.7 + e + rng.normal(0, 0.15 * math.sqrt(0.7), k)
            for e, k in zip(effect, n, strict=True)
        ]
        y = np.array([v.sum() for v in values])
        mean, variance = stats.ratio_mean_variance(100, n.sum(), y.sum(), (y * y).sum(),
                                                   (y * n).sum(), (n * n).sum())  # fmt: skip
        means.append(float(mean))
        variances.append(float(variance))
        naive.append(float(np.concatenate(values).var(ddof=1) / n.sum()))
    assert float(np.mean(variances)) == pytest.approx(float(np.var(means)), rel=0.1)
    assert float(np.mean(variances)) > 5 * float(np.mean(naive))


def test_the_unit_level_variance_needs_two_units() -> None:
    mean, variance = stats.ratio_mean_variance(1, 10, 7.0, 49.0, 70.0, 100.0)
    assert math.isnan(float(mean)) and math.isnan(float(variance))
