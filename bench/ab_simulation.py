"""How often each A/B decision rule is right, on simulated traffic (numpy, vectorised).

96 hours of traffic, a look every 5 minutes, challenger share 10%, at 35 and 350
requests/hour. Per request: quality ~ Beta (sd 0.15, mean 0.70), feedback on 10% of
requests (negative with probability 1 - quality), latency log-normal (median 200 ms,
sigma 0.5), errors 5%.

Scenarios: S1 A/A; S2 challenger quality +5% relative; S3 A/A with the challenger share
ramped to 50% at 24 h and a quality drift of -0.04 over the run shared by both arms;
S4 challenger latency +20%; S5 challenger error rate x2; S6 A/A routed stickily by user
(10% of users to the challenger, 5-50 requests each over 12 hours, intra-user
correlation of quality 0.3), judged hourly by the request-level engine and by the engine
with the user as the unit (delta-method variances over users, the split tested on
users, at least `min_units` = 20 users per arm).

Rules: the seed's weighted rule (checked hourly, 24 h window, 100 records per version,
5% threshold, 48 h minimum), a t-test at every look, a fixed-horizon t-test at 48 h, and
the sequential engine of afs.continuous (core.decision, vectorised here with the same
core.stats functions; a test checks both agree), by default (promotion blocked by a
guardrail proven worse) and with strict_guardrails (promotion also needs every guardrail
shown within its margin: latency +10%, error rate +0.01, negative feedback +0.05).

For error-rate scenarios two references show what any test could do with the same data,
at the engine's error-guardrail level (alpha/2) and at the whole alpha: an "oracle SPRT"
(the likelihood ratio of the challenger's errors between the two true rates, at every
look: the best anytime-valid test for this exact alternative), and a "power bound"
(Neyman-Pearson's randomised test on the challenger's errors at 96 h with the champion's
rate known exactly: no test at that level, sequential or not, rolls back more often by
96 h).

Prints P(promote) and P(rollback) by 48 h and by 96 h with Monte Carlo standard errors,
and the median hours and challenger requests to a decision.

Usage: python bench/ab_simulation.py [--reps 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binom

from afs.continuous.core import stats
from afs.continuous.core.decision import DecisionSettings

LOOKS_PER_HOUR = 12
HOURS = 96
LOOKS = HOURS * LOOKS_PER_HOUR
BASE_QUALITY = 0.70
QUALITY_SD = 0.15
FEEDBACK_RATE = 0.10
LATENCY_MEDIAN_MS = 200.0
LATENCY_SIGMA = 0.5
ERROR_RATE = 0.05

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Scenario:
    name: str
    quality_lift: float = 0.0  # relative, challenger only
    latency_factor: float = 1.0
    error_factor: float = 1.0
    ramp_to: float | None = None  # challenger share after 24 h
    drift: float = 0.0  # shared change of mean quality over the run
    truth: str = "none"  # what a right decision is: "promote", "rollback" or "none"


SCENARIOS = (
    Scenario("S1 A/A"),
    Scenario("S2 quality +5%", quality_lift=0.05, truth="promote"),
    Scenario("S3 A/A, ramp + drift", ramp_to=0.5, drift=-0.04),
    Scenario("S4 latency +20%", latency_factor=1.2, truth="rollback"),
    Scenario("S5 errors x2", error_factor=2.0, truth="rollback"),
)

ARM_FIELDS = ("n", "q", "q2", "ll", "ll2", "lat", "rated", "neg", "pos", "err")


@dataclass
class Arm:
    """Running per-arm sums for every replication (and per epoch for the engine)."""

    reps: int
    sums: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sums = {k: np.zeros(self.reps) for k in ARM_FIELDS}

    def add(self, part: dict[str, Array]) -> None:
        for key, value in part.items():
            self.sums[key] += value


def _beta_params(mean: float) -> tuple[float, float]:
    total = mean * (1 - mean) / QUALITY_SD**2 - 1
    return mean * total, (1 - mean) * total


def _draw(
    rng: np.random.Generator, counts: NDArray[np.int64], quality: float, scenario: Scenario,
    challenger: bool, base_error_rate: float,
) -> dict[str, Array]:  # fmt: skip
    """The sums of one look's requests for one arm, for every replication."""
    width = int(counts.max()) if counts.size else 0
    if width == 0:
        return {k: np.zeros(counts.shape) for k in ARM_FIELDS}
    mask = np.arange(width)[None, :] < counts[:, None]
    a, b = _beta_params(quality)
    q = rng.beta(a, b, size=mask.shape)
    factor = scenario.latency_factor if challenger else 1.0
    log_latency = rng.normal(math.log(LATENCY_MEDIAN_MS * factor), LATENCY_SIGMA, size=mask.shape)
    rated = rng.random(mask.shape) < FEEDBACK_RATE
    negative = rated & (rng.random(mask.shape) > q)
    error_rate = base_error_rate * (scenario.error_factor if challenger else 1.0)
    errors = rng.random(mask.shape) < error_rate
    m = mask.astype(float)
    return {
        "n": counts.astype(float),
        "q": (q * m).sum(1),
        "q2": (q * q * m).sum(1),
        "ll": (log_latency * m).sum(1),
        "ll2": (log_latency**2 * m).sum(1),
        "lat": (np.exp(log_latency) * m).sum(1),
        "rated": (rated & mask).sum(1).astype(float),
        "neg": (negative & mask).sum(1).astype(float),
        "pos": (rated & ~negative & mask).sum(1).astype(float),
        "err": (errors & mask).sum(1).astype(float),
    }


def _welch_t(a: dict[str, Array], b: dict[str, Array]) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_a, mean_b = a["q"] / a["n"], b["q"] / b["n"]
        var_a = (a["q2"] - a["q"] ** 2 / a["n"]) / (a["n"] - 1)
        var_b = (b["q2"] - b["q"] ** 2 / b["n"]) / (b["n"] - 1)
        t = (mean_b - mean_a) / np.sqrt(var_a / a["n"] + var_b / b["n"])
    return np.where((a["n"] > 2) & (b["n"] > 2), t, 0.0)


def _weighted_rule(a: dict[str, Array], b: dict[str, Array]) -> Array:
    """The seed's improvement score over a window: +0.5 quality, +0.3 positive rate,
    -0.2 latency, each as a relative difference."""
    with np.errstate(divide="ignore", invalid="ignore"):

        def rel(x_b: Array, x_a: Array) -> Array:
            return np.where(x_a > 0, (x_b - x_a) / np.abs(x_a), 0.0)

        quality = rel(b["q"] / b["n"], a["q"] / a["n"])
        positive = rel(b["pos"] / np.maximum(b["rated"], 1), a["pos"] / np.maximum(a["rated"], 1))
        latency = rel(b["lat"] / b["n"], a["lat"] / a["n"])
    return np.nan_to_num(0.5 * quality + 0.3 * positive - 0.2 * latency)


def _cs_mean(
    epochs: list[tuple[float, dict[str, Array], dict[str, Array]]],
    keys: tuple[str, str, str], tau2: float, alpha: float,
) -> tuple[Array, Array]:  # fmt: skip
    """Epoch-combined (estimate, radius) of a mean difference, vectorised like
    core.decision._mean_cs."""
    n_key, s_key, sq_key = keys
    usable = [((a[n_key] >= 2) & (b[n_key] >= 2)) for _, a, b in epochs]
    total_hours = sum(max(h, 1e-9) * ok for (h, _, _), ok in zip(epochs, usable, strict=True))
    estimate = np.zeros_like(epochs[0][1]["n"])
    variance = np.zeros_like(estimate)
    for hours, a, b in epochs:
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(total_hours > 0, max(hours, 1e-9) / total_hours, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_a = (a[sq_key] - a[s_key] ** 2 / a[n_key]) / (a[n_key] - 1)
            var_b = (b[sq_key] - b[s_key] ** 2 / b[n_key]) / (b[n_key] - 1)
            est = b[s_key] / b[n_key] - a[s_key] / a[n_key]
            var = var_a / a[n_key] + var_b / b[n_key]
        ok = (a[n_key] >= 2) & (b[n_key] >= 2)
        estimate += np.where(ok, w * est, 0.0)
        variance += np.where(ok, w * w * np.maximum(var, 0), 0.0)
    return estimate, stats.radii(variance, tau2, alpha)


def _cs_rate(
    epochs: list[tuple[float, dict[str, Array], dict[str, Array]]],
    keys: tuple[str, str], tau2: float, alpha: float,
) -> tuple[Array, Array]:  # fmt: skip
    x_key, n_key = keys
    usable = [((a[n_key] >= 1) & (b[n_key] >= 1)) for _, a, b in epochs]
    total_hours = sum(max(h, 1e-9) * ok for (h, _, _), ok in zip(epochs, usable, strict=True))
    estimate = np.zeros_like(epochs[0][1]["n"])
    variance = np.zeros_like(estimate)
    for hours, a, b in epochs:
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(total_hours > 0, max(hours, 1e-9) / total_hours, 0.0)
        p_a = (a[x_key] + 0.5) / (a[n_key] + 1)
        p_b = (b[x_key] + 0.5) / (b[n_key] + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            est = b[x_key] / b[n_key] - a[x_key] / a[n_key]
            var = p_a * (1 - p_a) / a[n_key] + p_b * (1 - p_b) / b[n_key]
        ok = (a[n_key] >= 1) & (b[n_key] >= 1)
        with np.errstate(invalid="ignore"):
            estimate += np.where(ok, w * est, 0.0)
            variance += np.where(ok, w * w * var, 0.0)
    return estimate, stats.radii(variance, tau2, alpha)


def engine_decisions(
    epochs: list[tuple[float, float, dict[str, Array], dict[str, Array]]],
    settings: DecisionSettings,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(promote, rollback) booleans per replication, from (hours, share, champion,
    challenger) per epoch: core.decision.judge, vectorised over replications."""
    s = settings
    guard, error_alpha = s.alpha / 4, s.alpha / 2
    reps = epochs[0][2]["n"].shape[0]
    srm = np.zeros(reps)
    for _hours, share, a, b in epochs:
        srm += stats.binomial_log_evalues(b["n"], a["n"] + b["n"], share, 100.0)
    errors = stats.excess_events_log_evalues(
        [(b["err"], a["err"], share) for _hours, share, a, b in epochs], ratio=s.error_ratio
    )
    halt = srm >= math.log(1 / s.srm_alpha)
    parts = [(h, a, b) for h, _share, a, b in epochs]
    total = {k: sum(p[1][k] for p in parts) for k in ARM_FIELDS}
    total_b = {k: sum(p[2][k] for p in parts) for k in ARM_FIELDS}
    enough = (
        (total["n"] >= s.min_requests) & (total_b["n"] >= s.min_requests)
        & (total["rated"] >= s.min_feedback) & (total_b["rated"] >= s.min_feedback)
    )  # fmt: skip
    q_est, q_rad = _cs_mean(
        parts, ("n", "q", "q2"),
        stats.mixing_variance(s.planned_variance(s.quality_sd**2), s.alpha), s.alpha,
    )  # fmt: skip
    l_est, l_rad = _cs_mean(
        parts, ("n", "ll", "ll2"),
        stats.mixing_variance(s.planned_variance(s.log_latency_sd**2), guard), guard,
    )  # fmt: skip
    n_est, n_rad = _cs_rate(
        parts, ("neg", "rated"),
        stats.mixing_variance(s.planned_variance(0.25, s.feedback_rate), guard), guard,
    )  # fmt: skip
    strict = np.ones(reps, dtype=bool)
    if s.strict_guardrails:  # promotion also needs every guardrail shown within its margin
        e_est, e_rad = _cs_rate(
            parts, ("err", "n"),
            stats.mixing_variance(s.planned_variance(0.05 * 0.95), error_alpha), error_alpha,
        )  # fmt: skip
        strict = (
            (l_est + l_rad <= math.log1p(s.latency_margin))
            & (e_est + e_rad <= s.error_rate_margin)
            & (n_est + n_rad <= s.negative_feedback_margin)
        )
    worse = (l_est - l_rad > 0) | (n_est - n_rad > 0) | (q_est + q_rad < 0)
    errors_proven = errors >= math.log(1 / error_alpha)  # exact: acts before the minimum
    rollback = (enough & ~halt & worse) | (~halt & errors_proven)
    promote = enough & ~halt & ~worse & ~errors_proven & strict & (q_est - q_rad > s.min_effect)
    return promote, rollback | (enough & halt)


Flags = NDArray[np.bool_]


def _oracle_sprt(errors: Array, requests: Array, p0: float, p1: float, alpha: float) -> Flags:
    """Wald's likelihood ratio of the challenger's errors, true rates known: by Ville's
    inequality it exceeds 1/alpha under p0 with probability at most alpha, at any look."""
    log_lr = errors * math.log(p1 / p0) + (requests - errors) * math.log((1 - p1) / (1 - p0))
    flags: Flags = log_lr >= math.log(1 / alpha)
    return flags


def _power_bound(
    rng: np.random.Generator, errors: Array, requests: Array, p0: float, alpha: float
) -> Flags:
    """The most powerful level-alpha test of p0 against a higher rate, given the
    challenger's requests: reject above the critical count, at it with the probability
    that makes the size exactly alpha."""
    critical = binom.isf(alpha, requests, p0)
    tail = binom.sf(critical, requests, p0)
    at_critical = binom.pmf(critical, requests, p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(at_critical > 0, (alpha - tail) / at_critical, 0.0)
    flags: Flags = (errors > critical) | ((errors == critical) & (rng.random(errors.shape) < gamma))
    return flags


@dataclass
class Outcome:
    decided_at: NDArray[np.int64]  # look index, -1 when never
    kind: NDArray[np.int64]  # 1 promote, -1 rollback, 0 none
    challenger_requests: Array


def simulate(
    scenario: Scenario,
    rate: float,
    reps: int,
    rng: np.random.Generator,
    *,
    error_rate: float = ERROR_RATE,
) -> dict[str, Outcome]:
    settings = DecisionSettings(planned_challenger_requests=int(rate * HOURS * 0.1))
    strict = replace(settings, strict_guardrails=True)
    rules: tuple[str, ...] = (
        "seed weighted rule", "t-test every look", "fixed horizon 48 h", "sequential engine",
        "engine, strict",
    )  # fmt: skip
    guard = settings.alpha / 2  # the engine's error guardrail
    p0, p1 = error_rate, error_rate * scenario.error_factor
    references: dict[str, float] = {}
    if scenario.error_factor != 1.0:
        references = {
            "oracle SPRT a/2": guard, "oracle SPRT a": settings.alpha,
            "power bound a/2": guard, "power bound a": settings.alpha,
        }  # fmt: skip
        rules = (*rules, *references)
    never = np.zeros(reps, dtype=bool)  # the references never promote
    outcome = {
        r: Outcome(np.full(reps, -1), np.zeros(reps, dtype=np.int64), np.zeros(reps)) for r in rules
    }
    champion_epochs = [Arm(reps)]
    challenger_epochs = [Arm(reps)]
    epoch_start = [0]
    shares = [0.1]
    window = LOOKS_PER_HOUR * 24
    history_a = {k: np.zeros((reps, LOOKS)) for k in ("n", "q", "lat", "rated", "pos")}
    history_b = {k: np.zeros((reps, LOOKS)) for k in ("n", "q", "lat", "rated", "pos")}
    cumulative_a, cumulative_b = Arm(reps), Arm(reps)
    for look in range(LOOKS):
        hour = look / LOOKS_PER_HOUR
        share = 0.1
        if scenario.ramp_to is not None and hour >= 24:
            share = scenario.ramp_to
        if share != shares[-1]:
            champion_epochs.append(Arm(reps))
            challenger_epochs.append(Arm(reps))
            epoch_start.append(look)
            shares.append(share)
        requests = rng.poisson(rate / LOOKS_PER_HOUR, size=reps)
        to_b = rng.binomial(requests, share)
        quality = BASE_QUALITY + scenario.drift * hour / HOURS
        part_a = _draw(rng, requests - to_b, quality, scenario, False, error_rate)
        part_b = _draw(rng, to_b, quality * (1 + scenario.quality_lift), scenario, True, error_rate)
        champion_epochs[-1].add(part_a)
        challenger_epochs[-1].add(part_b)
        cumulative_a.add(part_a)
        cumulative_b.add(part_b)
        for key in history_a:
            history_a[key][:, look] = part_a[key]
            history_b[key][:, look] = part_b[key]

        decisions: dict[str, tuple[Flags, Flags]] = {}
        if (look + 1) % LOOKS_PER_HOUR == 0 and hour >= 48 - 1 / LOOKS_PER_HOUR:
            lo = max(0, look + 1 - window)
            win_a = {k: v[:, lo : look + 1].sum(1) for k, v in history_a.items()}
            win_b = {k: v[:, lo : look + 1].sum(1) for k, v in history_b.items()}
            enough = (win_a["n"] >= 100) & (win_b["n"] >= 100)
            score = _weighted_rule(win_a, win_b)
            decisions[rules[0]] = (enough & (score >= 0.05), enough & (score <= -0.05))
        t = _welch_t(cumulative_a.sums, cumulative_b.sums)
        decisions[rules[1]] = (t > 1.96, t < -1.96)
        if look == 48 * LOOKS_PER_HOUR - 1:
            decisions[rules[2]] = (t > 1.96, t < -1.96)
        epochs = [
            ((min(look + 1, end) - start) / LOOKS_PER_HOUR, sh, a.sums, b.sums)
            for start, end, sh, a, b in zip(
                epoch_start, [*epoch_start[1:], LOOKS], shares, champion_epochs,
                challenger_epochs, strict=True,
            )
        ]  # fmt: skip
        decisions[rules[3]] = engine_decisions(epochs, settings)
        decisions[rules[4]] = engine_decisions(epochs, strict)
        errors_b, requests_b = cumulative_b.sums["err"], cumulative_b.sums["n"]
        for rule, level in references.items():
            if rule.startswith("oracle"):
                decisions[rule] = (never, _oracle_sprt(errors_b, requests_b, p0, p1, level))
            elif look == LOOKS - 1:
                decisions[rule] = (never, _power_bound(rng, errors_b, requests_b, p0, level))
        for rule, (promote, rollback) in decisions.items():
            out = outcome[rule]
            fresh = out.decided_at < 0
            for mask, kind in ((promote & fresh, 1), (rollback & fresh & ~promote, -1)):
                out.decided_at[mask] = look
                out.kind[mask] = kind
                out.challenger_requests[mask] = cumulative_b.sums["n"][mask]
    return outcome


# --- S6: sticky users -------------------------------------------------------------------

STICKY = Scenario("S6 A/A, sticky users")
USER_REQUESTS = (5, 50)  # requests per user, uniform
USER_SPAN_HOURS = 12.0  # a user's requests spread over this long after the first
INTRA_USER_CORRELATION = 0.3  # of quality: the share of its variance between users


def _sticky_hours(
    rng: np.random.Generator, reps: int, users: int, *, lift: float = 0.0
) -> tuple[dict[str, Array], NDArray[np.bool_]]:
    """Per replication, user and hour: each user's request count and sums in that hour
    (their quality shares a per-user effect), and each user's arm (sticky by user); the
    challenger's users' quality is higher by ``lift`` (absolute)."""
    low, high = USER_REQUESTS
    counts = rng.integers(low, high + 1, size=(reps, users))
    arrival = rng.uniform(0, HOURS, size=(reps, users))
    to_b = rng.random((reps, users)) < 0.1
    sd_between = QUALITY_SD * math.sqrt(INTRA_USER_CORRELATION)
    sd_within = QUALITY_SD * math.sqrt(1 - INTRA_USER_CORRELATION)
    effect = rng.normal(0, sd_between, size=(reps, users))
    shape = (reps, users, high)
    mask = np.arange(high)[None, None, :] < counts[:, :, None]
    hour = np.floor(arrival[:, :, None] + rng.uniform(0, USER_SPAN_HOURS, size=shape))
    mask &= hour < HOURS
    base = BASE_QUALITY + effect + lift * to_b
    q = np.clip(base[:, :, None] + rng.normal(0, sd_within, shape), 0, 1)
    rated = rng.random(shape) < FEEDBACK_RATE
    values = {
        "n": np.ones(shape),
        "q": q,
        "q2": q * q,
        "ll": rng.normal(math.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, shape),
        "rated": rated.astype(float),
        "neg": (rated & (rng.random(shape) > q)).astype(float),
        "err": (rng.random(shape) < ERROR_RATE).astype(float),
    }
    values["ll2"] = values["ll"] ** 2
    values["lat"] = np.exp(values["ll"])
    values["pos"] = values["rated"] - values["neg"]
    cell = (np.arange(reps)[:, None, None] * users + np.arange(users)[None, :, None]) * HOURS
    index = (cell + np.where(mask, hour, 0).astype(np.int64))[mask]
    size = reps * users * HOURS
    per_hour: dict[str, Array] = {
        key: np.bincount(index, weights=value[mask], minlength=size)
        .astype(float)
        .reshape(reps, users, HOURS)
        for key, value in values.items()
    }
    return per_hour, to_b


def _unit_sums(cumulative: dict[str, Array], arm: NDArray[np.bool_], hour: int) -> dict[str, Array]:
    """Sums over an arm's units (users seen by then) of n, y, y², y·n and n² for each
    ratio metric, from each user's cumulative sums at ``hour``."""
    n = cumulative["n"][:, :, hour] * arm
    seen = n > 0
    sums: dict[str, Array] = {"m": seen.sum(1).astype(float)}
    for metric, (y_key, n_key) in {
        "q": ("q", "n"), "ll": ("ll", "n"), "neg": ("neg", "rated"), "err": ("err", "n"),
    }.items():  # fmt: skip
        y = cumulative[y_key][:, :, hour] * arm
        d = cumulative[n_key][:, :, hour] * arm
        sums[f"{metric}:n"], sums[f"{metric}:y"] = d.sum(1), y.sum(1)
        sums[f"{metric}:y2"], sums[f"{metric}:yn"] = (y * y).sum(1), (y * d).sum(1)
        sums[f"{metric}:n2"] = (d * d).sum(1)
    return sums


def _unit_cs(
    a: dict[str, Array], b: dict[str, Array], metric: str, tau2: float, alpha: float
) -> tuple[Array, Array]:
    """(estimate, radius) of the difference of a per-request mean over units."""
    keys = ("n", "y", "y2", "yn", "n2")
    parts = [stats.ratio_mean_variance(arm["m"], *(arm[f"{metric}:{k}"] for k in keys))
             for arm in (a, b)]  # fmt: skip
    (mean_a, var_a), (mean_b, var_b) = parts
    variance = np.nan_to_num(var_a + var_b, nan=np.inf)
    estimate = np.nan_to_num(mean_b - mean_a)
    with np.errstate(invalid="ignore"):
        radius = np.where(
            np.isfinite(variance), stats.radii(np.minimum(variance, 1e9), tau2, alpha), np.inf
        )
    return estimate, radius


def unit_engine_decisions(
    a: dict[str, Array], b: dict[str, Array], settings: DecisionSettings
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(promote, rollback) with the user as the unit, from one epoch's sums over each
    arm's users: core.decision.judge with ``unit="key"``, vectorised (a test checks both
    agree)."""
    s = settings
    guard, error_alpha = s.alpha / 4, s.alpha / 2
    srm = stats.binomial_log_evalues(b["m"], a["m"] + b["m"], s.planned_challenger_share, 100.0)
    halt = srm >= math.log(1 / s.srm_alpha)
    enough = (
        (a["q:n"] >= s.min_requests) & (b["q:n"] >= s.min_requests)
        & (a["neg:n"] >= s.min_feedback) & (b["neg:n"] >= s.min_feedback)
        & (a["m"] >= s.min_units) & (b["m"] >= s.min_units)
    )  # fmt: skip
    q_est, q_rad = _unit_cs(a, b, "q", stats.mixing_variance(
        s.planned_variance(s.quality_sd**2), s.alpha), s.alpha)  # fmt: skip
    l_est, l_rad = _unit_cs(a, b, "ll", stats.mixing_variance(
        s.planned_variance(s.log_latency_sd**2), guard), guard)  # fmt: skip
    n_est, n_rad = _unit_cs(a, b, "neg", stats.mixing_variance(
        s.planned_variance(0.25, s.feedback_rate), guard), guard)  # fmt: skip
    e_est, e_rad = _unit_cs(a, b, "err", stats.mixing_variance(
        s.planned_variance(0.05 * 0.95), error_alpha), error_alpha)  # fmt: skip
    worse = (l_est - l_rad > 0) | (n_est - n_rad > 0) | (q_est + q_rad < 0) | (e_est - e_rad > 0)
    rollback = enough & ~halt & worse
    promote = enough & ~halt & ~worse & (q_est - q_rad > s.min_effect)
    return promote, rollback | halt


def simulate_sticky(rate: float, reps: int, rng: np.random.Generator) -> dict[str, Outcome]:
    """S6: an A/A test where each user is routed stickily (10% of users to the
    challenger) and their requests share a per-user quality effect; judged every hour by
    the request-level engine and by the engine with the user as the unit."""
    mean_requests = sum(USER_REQUESTS) / 2
    users = max(2, round(rate * HOURS / mean_requests))
    settings = DecisionSettings(planned_challenger_requests=int(rate * HOURS * 0.1))
    by_key = replace(settings, unit="key")
    rules = ("engine, unit: request", "engine, unit: key")
    outcome = {
        r: Outcome(np.full(reps, -1), np.zeros(reps, dtype=np.int64), np.zeros(reps)) for r in rules
    }
    chunk = max(1, 2_000_000 // (users * USER_REQUESTS[1]))
    for first in range(0, reps, chunk):
        size = min(chunk, reps - first)
        per_hour, to_b = _sticky_hours(rng, size, users)
        cumulative = {k: np.cumsum(v, axis=2) for k, v in per_hour.items()}
        rows = slice(first, first + size)
        for hour in range(HOURS):
            arms = {
                arm: {k: (v[:, :, hour] * mask).sum(1) for k, v in cumulative.items()}
                for arm, mask in (("a", ~to_b), ("b", to_b))
            }
            by_request = engine_decisions([(hour + 1.0, 0.1, arms["a"], arms["b"])], settings)
            by_unit = unit_engine_decisions(
                _unit_sums(cumulative, ~to_b, hour), _unit_sums(cumulative, to_b, hour), by_key
            )
            look = (hour + 1) * LOOKS_PER_HOUR - 1
            for rule, (promote, rollback) in zip(rules, (by_request, by_unit), strict=True):
                out = outcome[rule]
                fresh = out.decided_at[rows] < 0
                for mask, kind in ((promote & fresh, 1), (rollback & fresh & ~promote, -1)):
                    out.decided_at[rows][mask] = look
                    out.kind[rows][mask] = kind
                    out.challenger_requests[rows][mask] = arms["b"]["n"][mask]
    return outcome


def _share(mask: NDArray[np.bool_]) -> tuple[float, float]:
    p = float(mask.mean())
    return p, math.sqrt(p * (1 - p) / mask.size)


def report(results: list[tuple[float, Scenario, dict[str, Outcome]]], reps: int) -> list[str]:
    lines = [
        f"{'rate':>5} | {'scenario':<22} | {'rule':<21} | {'promote 48h':>13} | "
        f"{'promote 96h':>13} | {'rollback 48h':>13} | {'rollback 96h':>13} | "
        f"{'median h':>8} | {'median reqs':>11}"
    ]
    lines.append("-" * len(lines[0]))
    checks = []
    for rate, scenario, outcome in results:
        for rule, out in outcome.items():
            by48 = (out.decided_at >= 0) & (out.decided_at < 48 * LOOKS_PER_HOUR)
            by96 = out.decided_at >= 0
            cells = [
                _share(by48 & (out.kind == 1)),
                _share(by96 & (out.kind == 1)),
                _share(by48 & (out.kind == -1)),
                _share(by96 & (out.kind == -1)),
            ]
            decided = out.decided_at[by96]
            hours = f"{np.median(decided) / LOOKS_PER_HOUR:.1f}" if decided.size else "-"
            reqs = f"{np.median(out.challenger_requests[by96]):.0f}" if decided.size else "-"
            lines.append(
                f"{rate:>5.0f} | {scenario.name:<22} | {rule:<21} | "
                + " | ".join(f"{p * 100:5.1f}% ±{se * 100:4.1f}" for p, se in cells)
                + f" | {hours:>8} | {reps and reqs:>11}"
            )
            if rule in ("sequential engine", "engine, unit: key"):
                checks.append(_target(rate, scenario, cells))
    return lines + [""] + [c for c in checks if c]


def _target(rate: float, scenario: Scenario, cells: list[tuple[float, float]]) -> str:
    promote96, se_p = cells[1]
    rollback96 = cells[3][0]
    name = scenario.name.split()[0]
    where = f"{name} at {rate:.0f}/h"
    if name in ("S1", "S6"):
        return _verdict(
            f"{where}: false promotions {promote96:.1%} (target <= 2.5% + 2 SE)",
            promote96 <= 0.025 + 2 * se_p,
        )
    if name == "S2" and rate == 35:
        return _verdict(
            f"{where}: power by 96 h {promote96:.1%} (target >= 85%)", promote96 >= 0.85
        )
    if name == "S3":
        total = promote96 + rollback96
        return _verdict(f"{where}: false decisions {total:.1%} (target <= 5%)", total <= 0.05)
    if name in ("S4", "S5"):
        # a doubled error rate at 35/h: the data allow no more than the oracle's ~86%
        target = 0.75 if (name, rate) == ("S5", 35) else 0.99 if name == "S5" else 0.95
        return _verdict(
            f"{where}: rolled back {rollback96:.1%} (target >= {target:.0%})",
            rollback96 >= target,
        )
    return ""


def _verdict(text: str, ok: bool) -> str:
    return f"{text} {'OK' if ok else 'MISSED'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rates", default="35,350")
    parser.add_argument(
        "--error-rate", type=float, default=ERROR_RATE, help="champion error rate (default 0.05)"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        for scenario in SCENARIOS:
            print(f"{scenario.name} at {rate:.0f}/h …", file=sys.stderr)
            outcome = simulate(scenario, rate, args.reps, rng, error_rate=args.error_rate)
            results.append((rate, scenario, outcome))
        print(f"{STICKY.name} at {rate:.0f}/h …", file=sys.stderr)
        results.append((rate, STICKY, simulate_sticky(rate, args.reps, rng)))
    print("\n".join(report(results, args.reps)))
    print(f"\n{args.reps} replications per cell, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
