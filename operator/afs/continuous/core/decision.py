"""The A/B verdict: promote or roll back only on evidence that survives continuous looks.

``judge`` is a pure function of the test's per-epoch statistics, its settings and its age.
It answers one of five verdicts, with the reasons and every number behind them:

- ``HALT``: traffic did not split as planned (sample-ratio mismatch); the data cannot be
  trusted, so the test stops whatever the metrics say.
- ``ROLLBACK``: a guardrail (latency, errors, negative feedback) or the success metric
  is proven worse for the challenger.
- ``PROMOTE``: the success metric (mean quality) is proven better by more than
  ``min_effect``, no guardrail is proven worse, and — with ``strict_guardrails`` — every
  guardrail is proven within its margin.
- ``INCONCLUSIVE``: the test reached ``max_duration_hours`` without a decision.
- ``CONTINUE``: not enough data yet, or no decision yet.

All intervals are confidence sequences (:mod:`afs.continuous.core.stats`): the success
metric at ``alpha``; the guardrails share another ``alpha`` (weighted Bonferroni): the
error rate ``alpha / 2``, since rare events need every bit of it, latency and negative
feedback ``alpha / 4`` each, since they have evidence to spare. So an A/A test ends in
any decision with probability of about ``alpha`` at most, however often it is checked.
The two exact tests, the sample-ratio and the error e-values, act from the first
request; the intervals, normal approximations, wait for the minimum data. Statistics
are computed within each epoch (a period of constant traffic split) and combined with
weights fixed by the epochs' durations, so a ramp plus a drift over time cannot fake a
difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from afs.continuous.core.unit_statistics import UnitStatistics
from afs.continuous.core.usage_statistics import UsageStatistics

if TYPE_CHECKING:
    from afs.continuous.core.stats import Interval


class VerdictKind(StrEnum):
    PROMOTE = "PROMOTE"
    ROLLBACK = "ROLLBACK"
    CONTINUE = "CONTINUE"
    INCONCLUSIVE = "INCONCLUSIVE"
    HALT = "HALT"


@dataclass(frozen=True)
class DecisionSettings:
    """Everything fixed before the test starts (see docs/statistics.md)."""

    alpha: float = 0.05
    min_effect: float = 0.0
    latency_margin: float = 0.10
    error_rate_margin: float = 0.01
    negative_feedback_margin: float = 0.05
    error_ratio: float = 2.0
    """The increase of the error rate the error guardrail is tuned to catch soonest."""
    unit: Literal["request", "key"] = "request"
    """What was randomised: each request, or each assignment key (a user routed
    stickily), whose requests are alike and so count as one draw."""
    min_units: int = 20
    """With ``unit="key"``: the least units per arm before the intervals (the delta
    method over units needs a few dozen)."""
    min_requests: int = 200
    min_feedback: int = 20
    max_duration_hours: float = 168.0
    min_duration_hours: float = 0.0
    strict_guardrails: bool = False
    srm_alpha: float = 0.001
    planned_challenger_requests: int = 1000
    planned_challenger_share: float = 0.1
    # prior scales used only to place the boundary (tau2); they do not bias estimates
    quality_sd: float = 0.2
    log_latency_sd: float = 0.5
    feedback_rate: float = 0.1

    def planned_variance(self, unit_variance: float, fraction: float = 1.0) -> float:
        """Variance of a difference of means at the planned size (both arms)."""
        n_b = max(2.0, self.planned_challenger_requests * fraction)
        share = min(max(self.planned_challenger_share, 1e-6), 1 - 1e-6)
        n_a = n_b * (1 - share) / share
        return unit_variance / n_a + unit_variance / n_b


@dataclass(frozen=True)
class Epoch:
    """A period with a constant traffic split, and what each arm did in it."""

    hours: float
    challenger_share: float
    champion: UsageStatistics
    challenger: UsageStatistics
    champion_units: UnitStatistics | None = None
    """With ``unit="key"``: the statistics over each arm's units."""
    challenger_units: UnitStatistics | None = None


@dataclass(frozen=True)
class EpochWindow:
    """When an epoch's records count (``end`` None: still open) and its planned split."""

    start: datetime
    end: datetime | None
    hours: float
    challenger_share: float


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.kind.value, "reasons": self.reasons, "metrics": self.metrics}


def _total(parts: Sequence[UsageStatistics]) -> UsageStatistics:
    total = UsageStatistics()
    for part in parts:
        total += part
    return total


def _variance(n: int, total: float, sq_total: float) -> float:
    if n < 2:
        return 0.0
    return max(0.0, (sq_total - total * total / n) / (n - 1))


def _weight(epoch: Epoch) -> float:
    """An epoch's weight: its duration (fixed by the schedule, not by the data)."""
    return max(epoch.hours, 1e-9)


def _mean_cs(
    epochs: Sequence[Epoch],
    pick: Any,
    *,
    tau2: float,
    alpha: float,
) -> Interval | None:
    """Epoch-combined confidence sequence of a per-record mean (challenger − champion)."""
    from afs.continuous.core import stats

    parts = []
    for epoch in epochs:
        a_n, a_sum, a_sq = pick(epoch.champion)
        b_n, b_sum, b_sq = pick(epoch.challenger)
        if a_n < 2 or b_n < 2:
            continue
        estimate = b_sum / b_n - a_sum / a_n
        variance = _variance(a_n, a_sum, a_sq) / a_n + _variance(b_n, b_sum, b_sq) / b_n
        parts.append((_weight(epoch), estimate, variance))
    if not parts:
        return None
    estimate, variance = stats.combine(parts)
    return stats.interval(estimate, variance, tau2=tau2, alpha=alpha)


def _unit_cs(epochs: Sequence[Epoch], metric: str, *, tau2: float, alpha: float) -> Interval | None:
    """Epoch-combined confidence sequence of a per-request mean, challenger − champion,
    with the variance of whole units (the delta method over units)."""
    from afs.continuous.core import stats

    parts = []
    for epoch in epochs:
        arms = []
        for units in (epoch.champion_units, epoch.challenger_units):
            assert units is not None
            sums = units.sums[metric]
            arm_mean, arm_variance = stats.ratio_mean_variance(
                units.units, sums.n, sums.y, sums.y2, sums.yn, sums.n2
            )
            arms.append((float(arm_mean), float(arm_variance)))
        (mean_a, var_a), (mean_b, var_b) = arms
        if math.isfinite(var_a) and math.isfinite(var_b):
            parts.append((_weight(epoch), mean_b - mean_a, var_a + var_b))
    if not parts:
        return None
    estimate, variance = stats.combine(parts)
    return stats.interval(estimate, variance, tau2=tau2, alpha=alpha)


def _rate_cs(epochs: Sequence[Epoch], pick: Any, *, tau2: float, alpha: float) -> Interval | None:
    """Epoch-combined confidence sequence of a rate (events / trials), challenger − champion."""
    from afs.continuous.core import stats

    parts = []
    for epoch in epochs:
        a_x, a_n = pick(epoch.champion)
        b_x, b_n = pick(epoch.challenger)
        if a_n < 1 or b_n < 1:
            continue
        p_a, p_b = stats.smoothed_rate(a_x, a_n), stats.smoothed_rate(b_x, b_n)
        variance = p_a * (1 - p_a) / a_n + p_b * (1 - p_b) / b_n
        parts.append((_weight(epoch), b_x / b_n - a_x / a_n, variance))
    if not parts:
        return None
    estimate, variance = stats.combine(parts)
    return stats.interval(estimate, variance, tau2=tau2, alpha=alpha)


def _request_intervals(
    epochs: Sequence[Epoch], s: DecisionSettings, *, guard_alpha: float, error_alpha: float
) -> tuple[Interval | None, Interval | None, Interval | None, Interval | None]:
    """Quality, latency, negative feedback and error rate, request by request."""
    from afs.continuous.core import stats

    quality = _mean_cs(
        epochs,
        lambda arm: (arm.scored, arm.quality_sum, arm.quality_sq_sum),
        tau2=stats.mixing_variance(s.planned_variance(s.quality_sd**2), s.alpha),
        alpha=s.alpha,
    )
    latency = _mean_cs(
        epochs,
        lambda arm: (arm.log_latency_count, arm.log_latency_sum, arm.log_latency_sq_sum),
        tau2=stats.mixing_variance(s.planned_variance(s.log_latency_sd**2), guard_alpha),
        alpha=guard_alpha,
    )
    negative = _rate_cs(
        epochs,
        lambda arm: (arm.negative, arm.with_feedback),
        tau2=stats.mixing_variance(s.planned_variance(0.25, s.feedback_rate), guard_alpha),
        alpha=guard_alpha,
    )
    errors_rate = _rate_cs(
        epochs,
        lambda arm: (arm.errors, arm.count),
        tau2=stats.mixing_variance(s.planned_variance(0.05 * 0.95), error_alpha),
        alpha=error_alpha,
    )
    return quality, latency, negative, errors_rate


def _describe(ci: Interval | None, **extra: Any) -> dict[str, Any] | None:
    if ci is None:
        return None
    return {"estimate": ci.estimate, "lower": ci.lower, "upper": ci.upper, **extra}


def judge(epochs: Sequence[Epoch], settings: DecisionSettings, *, elapsed_hours: float) -> Verdict:
    """The verdict on a running test (see the module docstring)."""
    from afs.continuous.core import stats  # numpy and scipy load only when judging

    s = settings
    by_unit = s.unit == "key"
    if by_unit and any(e.champion_units is None or e.challenger_units is None for e in epochs):
        raise ValueError("unit='key' needs each epoch's unit statistics")
    champion = _total([e.champion for e in epochs])
    challenger = _total([e.challenger for e in epochs])
    units = {
        name: sum(getattr(e, f"{name}_units").units for e in epochs) if by_unit else None
        for name in ("champion", "challenger")
    }
    guard_alpha = s.alpha / 4
    error_alpha = s.alpha / 2
    metrics: dict[str, Any] = {
        "method": "sequential (normal-mixture confidence sequences, mixture e-values)",
        "elapsed_hours": elapsed_hours,
        "epochs": len(epochs),
        "alpha": s.alpha,
        "guardrail_alpha": guard_alpha,
        "error_alpha": error_alpha,
        "unit": s.unit,
        "arms": {
            "champion": _arm_summary(champion) | ({"units": units["champion"]} if by_unit else {}),
            "challenger": _arm_summary(challenger)
            | ({"units": units["challenger"]} if by_unit else {}),
        },
        "thresholds": {
            "min_effect": s.min_effect,
            "latency_margin": s.latency_margin,
            "error_rate_margin": s.error_rate_margin,
            "negative_feedback_margin": s.negative_feedback_margin,
            "min_requests": s.min_requests,
            "min_feedback": s.min_feedback,
            "max_duration_hours": s.max_duration_hours,
        },
    }

    # 1. sample-ratio mismatch: every epoch's split against its plan (of units, when the
    # unit was randomised: a sticky split divides users, not requests, at the share)
    counted = [
        (e.challenger_units.units, e.champion_units.units, e.challenger_share)
        if by_unit and e.challenger_units and e.champion_units
        else (e.challenger.count, e.champion.count, e.challenger_share)
        for e in epochs
    ]
    srm = sum(
        stats.sample_ratio_log_evalue(b, a, share)
        for b, a, share in counted
        if 0 < share < 1 and a + b > 0
    )
    metrics["sample_ratio"] = {
        "log_evalue": srm,
        "threshold": math.log(1 / s.srm_alpha),
        "test": "Beta-mixture e-value per epoch, multiplied" + (" (units)" if by_unit else ""),
    }
    if srm >= math.log(1 / s.srm_alpha):
        what = "units" if by_unit else "requests"
        b_total, a_total = sum(c[0] for c in counted), sum(c[1] for c in counted)
        return Verdict(
            VerdictKind.HALT,
            [
                f"sample-ratio mismatch: challenger {b_total}, champion {a_total} {what} do "
                f"not match the planned split "
                f"(e-value {math.exp(min(srm, 700)):.3g} >= {1 / s.srm_alpha:g})"
            ],
            metrics,
        )

    # 2. errors proven higher: an exact test, valid at any sample size (for independent
    # requests; with units, errors are judged by their interval in step 5)
    error_evidence = (
        None if by_unit else stats.excess_events_log_evalue(
            [(e.challenger.errors, e.champion.errors, e.challenger_share) for e in epochs],
            ratio=s.error_ratio,
        )
    )  # fmt: skip
    metrics["errors"] = (
        {"test": "rate difference over units"} if error_evidence is None else {
            "log_evalue": error_evidence,
            "threshold": math.log(1 / error_alpha),
            "test": "mixture of likelihood ratios of error counts given the planned split, "
            f"tuned to a rate x{s.error_ratio:g}",
        }
    )  # fmt: skip
    if error_evidence is not None and error_evidence >= math.log(1 / error_alpha):
        return Verdict(
            VerdictKind.ROLLBACK,
            [
                f"error rate proven higher: {challenger.errors}/{challenger.count} vs "
                f"{champion.errors}/{champion.count} "
                f"(e-value {math.exp(min(error_evidence, 700)):.3g} >= {1 / error_alpha:g})"
            ],
            metrics,
        )

    # 3. enough data for the intervals
    short = [
        f"{name} has "
        + " and ".join(
            part
            for part, lacking in (
                (f"{arm.count}/{s.min_requests} requests", arm.count < s.min_requests),
                (
                    f"{arm.with_feedback}/{s.min_feedback} feedback events",
                    arm.with_feedback < s.min_feedback,
                ),
            )
            if lacking  # only what is still missing: "85/20" reads as a bar not met
        )
        for name, arm in (("champion", champion), ("challenger", challenger))
        if arm.count < s.min_requests or arm.with_feedback < s.min_feedback
    ] + [
        f"{name} has {count}/{s.min_units} units"
        for name, count in units.items()
        if count is not None and count < s.min_units
    ]
    if short:
        kind = (
            VerdictKind.INCONCLUSIVE
            if elapsed_hours >= s.max_duration_hours
            else VerdictKind.CONTINUE
        )
        return Verdict(kind, ["not enough data: " + "; ".join(short)], metrics)

    # 4. the intervals
    if by_unit:
        quality, latency, negative, errors_rate = (
            _unit_cs(epochs, metric, tau2=stats.mixing_variance(planned, level), alpha=level)
            for metric, planned, level in (
                ("quality", s.planned_variance(s.quality_sd**2), s.alpha),
                ("log_latency", s.planned_variance(s.log_latency_sd**2), guard_alpha),
                ("negative", s.planned_variance(0.25, s.feedback_rate), guard_alpha),
                ("errors", s.planned_variance(0.05 * 0.95), error_alpha),
            )
        )
    else:
        quality, latency, negative, errors_rate = _request_intervals(
            epochs, s, guard_alpha=guard_alpha, error_alpha=error_alpha
        )
    latency_margin = math.log1p(s.latency_margin)
    metrics["quality"] = _describe(quality, test="mean difference")
    metrics["latency"] = _describe(
        latency,
        test="mean log-latency difference (exp = ratio of geometric means)",
        margin=latency_margin,
    )
    if latency is not None:
        metrics["latency"]["ratio"] = math.exp(latency.estimate)
        metrics["latency"]["ratio_interval"] = [math.exp(latency.lower), math.exp(latency.upper)]
    metrics["negative_feedback"] = _describe(negative, test="rate difference among rated records")
    metrics["errors"]["rate_difference"] = _describe(errors_rate, test="rate difference")

    # 5. anything else proven worse rolls back at once
    worse = []
    if latency is not None and latency.lower > 0:
        worse.append(
            f"latency proven higher: ratio {math.exp(latency.estimate):.3f} "
            f"(lower bound {math.exp(latency.lower):.3f} > 1)"
        )
    if negative is not None and negative.lower > 0:
        worse.append(
            f"negative feedback proven higher: {negative.estimate:+.3f} "
            f"(lower bound {negative.lower:+.3f} > 0)"
        )
    if by_unit and errors_rate is not None and errors_rate.lower > 0:
        worse.append(
            f"error rate proven higher: {errors_rate.estimate:+.4f} "
            f"(lower bound {errors_rate.lower:+.4f} > 0, over units)"
        )
    if quality is not None and quality.upper < 0:
        worse.append(
            f"quality proven lower: {quality.estimate:+.4f} (upper bound {quality.upper:+.4f} < 0)"
        )
    if worse:
        return Verdict(VerdictKind.ROLLBACK, worse, metrics)

    # 6. promotion: the success metric proven better by more than the minimum effect
    if quality is not None and quality.lower > s.min_effect:
        blocked = []
        if s.strict_guardrails:
            if latency is None or latency.upper > latency_margin:
                blocked.append(f"latency not yet shown within +{s.latency_margin:.0%}")
            if errors_rate is None or errors_rate.upper > s.error_rate_margin:
                blocked.append(f"error rate not yet shown within +{s.error_rate_margin:.3f}")
            if negative is None or negative.upper > s.negative_feedback_margin:
                blocked.append(
                    f"negative feedback not yet shown within +{s.negative_feedback_margin:.3f}"
                )
        if elapsed_hours < s.min_duration_hours:
            blocked.append(f"test younger than min_duration_hours={s.min_duration_hours:g}")
        if not blocked:
            return Verdict(
                VerdictKind.PROMOTE,
                [
                    f"quality proven higher by {quality.estimate:+.4f} (lower bound "
                    f"{quality.lower:+.4f} > min_effect {s.min_effect:+.4f}); "
                    "no guardrail proven worse"
                ],
                metrics,
            )
        reasons = [f"quality proven higher, but {'; '.join(blocked)}"]
    else:
        reasons = [
            "no decision yet: quality "
            + (
                f"{quality.estimate:+.4f} in [{quality.lower:+.4f}, {quality.upper:+.4f}]"
                if quality
                else "not measurable"
            )
        ]
    if elapsed_hours >= s.max_duration_hours:
        return Verdict(
            VerdictKind.INCONCLUSIVE,
            [f"max_duration_hours={s.max_duration_hours:g} reached; " + reasons[0]],
            metrics,
        )
    return Verdict(VerdictKind.CONTINUE, reasons, metrics)


def _arm_summary(arm: UsageStatistics) -> dict[str, Any]:
    return {
        "requests": arm.count,
        "scored": arm.scored,
        "mean_quality": arm.quality_mean,
        "rated": arm.with_feedback,
        "negative_rate": arm.negative / arm.with_feedback if arm.with_feedback else None,
        "errors": arm.errors,
        "geometric_mean_latency_ms": (
            math.exp(arm.log_latency_mean) if arm.log_latency_mean is not None else None
        ),
    }
