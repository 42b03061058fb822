"""The retraining decision, as a pure function of (config, state, observations, now).

The shell (``afs.continuous.trigger``, and later the operator) gathers the observations
from the store, calls :func:`decide`, and persists the state; this module only reasons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from afs.continuous.config import TriggerConfig
from afs.continuous.core.usage_statistics import UsageStatistics
from afs.continuous.timeutil import format_timestamp, parse_timestamp


class TriggerType(StrEnum):
    SAMPLE_COUNT = "sample_count"
    SCHEDULED = "scheduled"
    QUALITY_DROP = "quality_drop"
    ERROR_RATE = "error_rate"
    MANUAL = "manual"


_TIME_FIELDS = ("last_retrain", "last_attempt", "schedule_anchor")


@dataclass(frozen=True)
class TriggerState:
    """What the trigger remembers between checks (persisted, so restarts change nothing).

    ``baseline_quality``/``baseline_samples``: mean quality and scored count of the
    quality window at the last retrain. ``schedule_anchor``: when scheduling began, for a
    loop that has never retrained (so a restart does not fire "scheduled" again).
    """

    last_retrain: datetime | None = None
    last_attempt: datetime | None = None
    consecutive_failures: int = 0
    baseline_quality: float | None = None
    baseline_samples: int = 0
    schedule_anchor: datetime | None = None
    total_retrains: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _TIME_FIELDS:
            if data[name] is not None:
                data[name] = format_timestamp(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriggerState:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in _TIME_FIELDS:
            if values.get(name) is not None:
                values[name] = parse_timestamp(values[name])
        return cls(**values)

    def attempted(self, now: datetime, *, succeeded: bool) -> TriggerState:
        """The state after a retrain attempt."""
        if not succeeded:
            return replace(
                self, last_attempt=now, consecutive_failures=self.consecutive_failures + 1
            )
        return replace(self, last_attempt=now, consecutive_failures=0)

    def retrained(self, now: datetime, *, baseline: UsageStatistics | None = None) -> TriggerState:
        """The state after a completed retrain: cooldown starts, baseline recorded."""
        return replace(
            self.attempted(now, succeeded=True),
            last_retrain=now,
            total_retrains=self.total_retrains + 1,
            baseline_quality=None if baseline is None else baseline.quality_mean,
            baseline_samples=0 if baseline is None else baseline.scored,
        )


@dataclass(frozen=True)
class Windows:
    """The time windows whose statistics :func:`decide` needs, as [start, end) pairs."""

    quality_current: tuple[datetime, datetime]
    quality_previous: tuple[datetime, datetime]
    errors: tuple[datetime, datetime]


def windows(config: TriggerConfig, now: datetime) -> Windows:
    """The windows of a check at ``now``. A window of whole hours (24, 168…) is laid on
    hour boundaries: the current one runs from the start of the hour ``width`` before
    the current hour until now (between ``width`` and an hour more), the previous one
    is the ``width`` of whole hours before it. Why: the stores keep hourly sums, and read
    raw records only for a partial hour; with every other edge on the hour that is the
    current hour alone, so a check costs what the recent traffic costs, not what the
    history does (a window ending mid-hour in a busy past read thousands of records).
    Other widths are exact, ending now."""
    width = timedelta(hours=config.quality_window_hours)
    anchor = _hour_anchor(now, config.quality_window_hours)
    return Windows(
        quality_current=(anchor - width, now),
        quality_previous=(anchor - 2 * width, anchor - width),
        errors=(_hour_anchor(now, config.error_window_hours)
                - timedelta(hours=config.error_window_hours), now),
    )  # fmt: skip


def _hour_anchor(now: datetime, hours: float) -> datetime:
    """Where windows of ``hours`` end their whole part: the start of the current hour for
    a whole number of hours, else ``now`` itself."""
    if float(hours).is_integer():
        return now.replace(minute=0, second=0, microsecond=0)
    return now


@dataclass(frozen=True)
class Observations:
    """What the store said. ``new_samples`` is what the generator would accept since the
    last retrain, counted up to ``sample_cap`` (enough to compare with every threshold)."""

    new_samples: int
    sample_cap: int
    quality_current: UsageStatistics = field(default_factory=UsageStatistics)
    quality_previous: UsageStatistics = field(default_factory=UsageStatistics)
    errors: UsageStatistics = field(default_factory=UsageStatistics)


@dataclass(frozen=True)
class Decision:
    triggered: bool
    trigger_type: TriggerType | None
    reason: str
    metrics: dict[str, Any]


def sample_cap(config: TriggerConfig) -> int:
    """How far the sample count must go to decide: past the largest threshold."""
    return max(config.min_new_samples, config.min_samples_for_retrain, 1)


#: the longest back-off when there is no cooldown to cap it (a repaired trainer must run
#: again within a week, however many attempts failed before)
MAX_BACKOFF_HOURS = 7 * 24.0


def backoff(config: TriggerConfig, failures: int) -> timedelta:
    """Wait after ``failures`` consecutive failed attempts: doubling, capped by the cooldown
    (or a week without one). The exponent is bounded first: after a thousand failures
    ``2 ** n`` hours no longer fits a timedelta."""
    if failures <= 0:
        return timedelta(0)
    cap = config.cooldown_hours if config.cooldown_hours > 0 else MAX_BACKOFF_HOURS
    hours = config.retry_backoff_hours * 2.0 ** min(failures - 1, 64)
    return timedelta(hours=min(hours, cap))


def decide(
    config: TriggerConfig, state: TriggerState, seen: Observations, now: datetime
) -> Decision:
    """Whether to retrain now, which rule fired, why, and every number behind it.

    Order: cooldown, then back-off after failures, then the rules in priority order
    (quality drop, error rate, sample count, schedule). Whether there is enough data to
    train on is not the trigger's question (as in the seed): the retrainer asks
    :func:`too_little_data` and counts a run on too little as a failed attempt.
    """
    metrics = _metrics(config, state, seen, now)
    if state.last_retrain is not None:
        until = state.last_retrain + timedelta(hours=config.cooldown_hours)
        if now < until:
            return Decision(
                False, None,
                f"in cooldown until {format_timestamp(until)} "
                f"(cooldown_hours={config.cooldown_hours:g} after the last retrain)",
                metrics,
            )  # fmt: skip
    if state.consecutive_failures and state.last_attempt is not None:
        until = state.last_attempt + backoff(config, state.consecutive_failures)
        if now < until:
            return Decision(
                False, None,
                f"backing off until {format_timestamp(until)} after "
                f"{state.consecutive_failures} failed retrain attempt(s)",
                metrics,
            )  # fmt: skip

    fired = _fired_rules(config, state, seen, now, metrics)
    if not fired:
        return Decision(False, None, "no trigger fired: " + _summary(config, metrics), metrics)
    kind, reason = fired[0]
    return Decision(True, kind, reason, metrics)


def too_little_data(config: TriggerConfig, samples: int) -> str | None:
    """Why a retrain that fired should not train: fewer than ``min_samples_for_retrain``
    samples (training on less is pointless); None when there are enough."""
    if samples >= config.min_samples_for_retrain:
        return None
    return (
        f"only {samples} training samples; need min_samples_for_retrain="
        f"{config.min_samples_for_retrain}"
    )


def _fired_rules(
    config: TriggerConfig,
    state: TriggerState,
    seen: Observations,
    now: datetime,
    metrics: dict[str, Any],
) -> list[tuple[TriggerType, str]]:
    fired: list[tuple[TriggerType, str]] = []
    drop = metrics.get("quality_drop")
    if config.enable_quality_drop and drop is not None and drop >= config.quality_drop_threshold:
        fired.append((
            TriggerType.QUALITY_DROP,
            f"quality dropped {drop:.1%} (from {metrics['reference_quality']:.3f} to "
            f"{metrics['current_quality']:.3f}; threshold {config.quality_drop_threshold:.0%})",
        ))  # fmt: skip
    rate = metrics.get("error_rate")
    if config.enable_error_rate and rate is not None and rate >= config.error_rate_threshold:
        fired.append((
            TriggerType.ERROR_RATE,
            f"negative feedback rate {rate:.1%} over {seen.errors.with_feedback} rated "
            f"records (threshold {config.error_rate_threshold:.0%})",
        ))  # fmt: skip
    if config.enable_sample_count and seen.new_samples >= config.min_new_samples:
        fired.append((
            TriggerType.SAMPLE_COUNT,
            f"{_samples(seen)} new training samples (threshold {config.min_new_samples})",
        ))  # fmt: skip
    anchor = state.last_retrain or state.schedule_anchor
    if config.enable_scheduled and anchor is not None:
        due = anchor + timedelta(hours=config.schedule_interval_hours)
        if now >= due:
            fired.append((
                TriggerType.SCHEDULED,
                f"scheduled retrain was due at {format_timestamp(due)} "
                f"(every {config.schedule_interval_hours:g} h)",
            ))  # fmt: skip
    return fired


def _samples(seen: Observations) -> str:
    return f">={seen.new_samples}" if seen.new_samples >= seen.sample_cap else str(seen.new_samples)


def _metrics(
    config: TriggerConfig, state: TriggerState, seen: Observations, now: datetime
) -> dict[str, Any]:
    current = seen.quality_current
    metrics: dict[str, Any] = {
        "new_samples": seen.new_samples,
        "new_samples_capped": seen.new_samples >= seen.sample_cap,
        "current_quality": current.quality_mean,
        "current_quality_samples": current.scored,
        "reference_quality": None,
        "reference_samples": 0,
        "reference": None,
        "quality_drop": None,
        "rated_records": seen.errors.with_feedback,
        "error_rate": None,
        "last_retrain": None
        if state.last_retrain is None
        else format_timestamp(state.last_retrain),
        "consecutive_failures": state.consecutive_failures,
    }
    enough = config.min_window_samples
    reference: tuple[float | None, int, str]
    if state.baseline_quality is not None and state.baseline_samples >= enough:
        reference = (state.baseline_quality, state.baseline_samples, "baseline at last retrain")
    else:
        previous = seen.quality_previous
        reference = (previous.quality_mean, previous.scored, "previous window")
    metrics["reference_quality"], metrics["reference_samples"], metrics["reference"] = reference
    ref_quality, ref_samples = reference[0], reference[1]
    if (
        current.quality_mean is not None
        and current.scored >= enough
        and ref_quality is not None
        and ref_samples >= enough
        and ref_quality > 0
    ):
        metrics["quality_drop"] = (ref_quality - current.quality_mean) / ref_quality
    if (
        seen.errors.with_feedback >= config.min_feedback_for_error_rate
        and seen.errors.with_feedback
    ):
        metrics["error_rate"] = seen.errors.negative / seen.errors.with_feedback
    anchor = state.last_retrain or state.schedule_anchor
    if anchor is not None:
        due = anchor + timedelta(hours=config.schedule_interval_hours)
        metrics["next_scheduled"] = format_timestamp(due)
    return metrics


def _summary(config: TriggerConfig, metrics: dict[str, Any]) -> str:
    parts = [f"{metrics['new_samples']}/{config.min_new_samples} new samples"]
    if metrics["quality_drop"] is None:
        parts.append(
            f"quality drop not measurable ({metrics['current_quality_samples']} and "
            f"{metrics['reference_samples']} scored records; need {config.min_window_samples})"
        )
    else:
        parts.append(f"quality change {-metrics['quality_drop']:+.1%}")
    if config.enable_error_rate:
        rate = metrics["error_rate"]
        parts.append(
            f"error rate {rate:.1%}" if rate is not None
            else f"error rate not measurable ({metrics['rated_records']} rated records)"
        )  # fmt: skip
    if "next_scheduled" in metrics:
        parts.append(f"next scheduled {metrics['next_scheduled']}")
    return "; ".join(parts)
