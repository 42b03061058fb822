"""The retraining decision, rule by rule, with the edge cases the original got wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from afs.continuous.config import TriggerConfig
from afs.continuous.core.triggers import (
    Decision,
    Observations,
    TriggerState,
    TriggerType,
    backoff,
    decide,
    too_little_data,
    windows,
)
from afs.continuous.store import UsageStatistics

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
QUIET = {"enable_scheduled": False, "enable_quality_drop": False, "enable_sample_count": False}


def _quality(mean: float, n: int) -> UsageStatistics:
    return UsageStatistics(count=n, scored=n, quality_sum=mean * n, quality_sq_sum=mean * mean * n)


def _feedback(rated: int, negative: int) -> UsageStatistics:
    return UsageStatistics(count=rated, with_feedback=rated, negative=negative)


def _decide(
    config: dict[str, Any],
    *,
    state: TriggerState | None = None,
    new: int = 0,
    current: UsageStatistics | None = None,
    previous: UsageStatistics | None = None,
    errors: UsageStatistics | None = None,
) -> Decision:
    cfg = TriggerConfig(**config)
    seen = Observations(
        new_samples=new,
        sample_cap=max(cfg.min_new_samples, cfg.min_samples_for_retrain),
        quality_current=current or UsageStatistics(),
        quality_previous=previous or UsageStatistics(),
        errors=errors or UsageStatistics(),
    )
    return decide(cfg, state or TriggerState(schedule_anchor=NOW), seen, NOW)


@pytest.mark.parametrize(
    ("new", "fires"),
    [(999, False), (1000, True), (5000, True)],
)
def test_sample_count(new: int, fires: bool) -> None:
    config = QUIET | {"enable_sample_count": True}
    decision = _decide(config, new=new)
    assert decision.triggered is fires
    assert decision.trigger_type == (TriggerType.SAMPLE_COUNT if fires else None)


def test_a_rule_fires_whatever_the_retrain_minimum_which_the_retrainer_checks() -> None:
    """As in the seed: the trigger reports that a rule fired; whether there is enough data
    to train on is the retrainer's question."""
    config = QUIET | {
        "enable_sample_count": True,
        "min_new_samples": 10,
        "min_samples_for_retrain": 100,
    }
    decision = _decide(config, new=50)
    assert decision.triggered
    parsed = TriggerConfig(min_new_samples=10, min_samples_for_retrain=100)
    assert too_little_data(parsed, 50) == (
        "only 50 training samples; need min_samples_for_retrain=100"
    )
    assert too_little_data(parsed, 100) is None


@pytest.mark.parametrize(
    ("current", "previous", "fires"),
    [
        (_quality(0.70, 100), _quality(0.80, 100), True),  # 12.5% drop
        (_quality(0.75, 100), _quality(0.80, 100), False),  # 6.25% drop
        (_quality(0.90, 100), _quality(0.80, 100), False),  # improvement
        (UsageStatistics(), _quality(0.80, 100), False),  # empty window: not a 100% drop
        (_quality(0.10, 10), _quality(0.80, 100), False),  # too few in the current window
        (_quality(0.10, 100), _quality(0.80, 5), False),  # too few in the previous window
    ],
)
def test_quality_drop_needs_both_windows(
    current: UsageStatistics, previous: UsageStatistics, fires: bool
) -> None:
    config = QUIET | {"enable_quality_drop": True}
    decision = _decide(config, new=500, current=current, previous=previous)
    assert decision.triggered is fires
    if not current.scored:
        assert decision.metrics["quality_drop"] is None


def test_quality_drop_prefers_the_baseline_recorded_at_the_last_retrain() -> None:
    state = TriggerState(
        last_retrain=NOW - timedelta(days=3), baseline_quality=0.9, baseline_samples=200
    )
    config = QUIET | {"enable_quality_drop": True}
    decision = _decide(
        config, state=state, new=500, current=_quality(0.78, 100), previous=_quality(0.78, 100)
    )
    assert decision.triggered and decision.trigger_type is TriggerType.QUALITY_DROP
    assert decision.metrics["reference"] == "baseline at last retrain"


@pytest.mark.parametrize(
    ("rated", "negative", "fires"),
    [(1, 1, False), (19, 19, False), (20, 4, True), (20, 3, False), (100, 50, True)],
)
def test_error_rate_needs_enough_rated_records(rated: int, negative: int, fires: bool) -> None:
    config = QUIET | {"enable_error_rate": True}
    decision = _decide(config, new=500, errors=_feedback(rated, negative))
    assert decision.triggered is fires


def test_scheduled_fires_after_the_interval_from_the_anchor() -> None:
    config = QUIET | {"enable_scheduled": True, "schedule_interval_hours": 24}
    fresh = TriggerState(schedule_anchor=NOW - timedelta(hours=23))
    assert not _decide(config, state=fresh, new=500).triggered
    due = TriggerState(schedule_anchor=NOW - timedelta(hours=24))
    decision = _decide(config, state=due, new=500)
    assert decision.triggered and decision.trigger_type is TriggerType.SCHEDULED


def test_cooldown_blocks_every_rule_and_says_so() -> None:
    state = TriggerState(last_retrain=NOW - timedelta(hours=2))
    decision = _decide({"enable_sample_count": True}, state=state, new=10_000)
    assert not decision.triggered and "cooldown" in decision.reason


@pytest.mark.parametrize(
    ("failures", "hours_ago", "blocked"),
    [
        (1, 0.5, True),
        (1, 1.5, False),
        (3, 3.0, True),
        (3, 4.5, False),
        (10, 23, True),
        (10, 25, False),
    ],
)
def test_failed_attempts_back_off(failures: int, hours_ago: float, blocked: bool) -> None:
    state = TriggerState(
        last_attempt=NOW - timedelta(hours=hours_ago),
        consecutive_failures=failures,
        schedule_anchor=NOW - timedelta(days=30),
    )
    decision = _decide({"enable_sample_count": True}, state=state, new=10_000)
    assert decision.triggered is (not blocked)
    if blocked:
        assert "backing off" in decision.reason


def test_backoff_doubles_and_is_capped_by_cooldown() -> None:
    config = TriggerConfig(retry_backoff_hours=1, cooldown_hours=24)
    assert [backoff(config, n).total_seconds() / 3600 for n in (0, 1, 2, 3, 6)] == [0, 1, 2, 4, 24]


@pytest.mark.parametrize(
    ("cooldown", "cap"), [(24, 24), (0, 7 * 24)], ids=["cooldown", "no-cooldown"]
)
def test_backoff_after_endless_failures_stays_bounded(cooldown: float, cap: float) -> None:
    """A trainer that failed a thousand times and was repaired must run again."""
    config = TriggerConfig(retry_backoff_hours=1, cooldown_hours=cooldown)
    for failures in (1025, 10**6):
        assert backoff(config, failures) == timedelta(hours=cap)


def test_priority_and_metrics_are_reported() -> None:
    decision = _decide(
        {"enable_error_rate": True},
        new=5000,
        current=_quality(0.5, 100),
        previous=_quality(0.8, 100),
        errors=_feedback(50, 30),
        state=TriggerState(schedule_anchor=NOW - timedelta(days=30)),
    )
    assert decision.trigger_type is TriggerType.QUALITY_DROP
    assert decision.metrics["error_rate"] == pytest.approx(0.6)
    assert decision.metrics["quality_drop"] == pytest.approx(0.375)


def test_nothing_fired_explains_each_rule() -> None:
    decision = _decide({}, new=3)
    assert not decision.triggered
    assert decision.reason.startswith("no trigger fired: 3/1000 new samples")
    assert "quality drop not measurable" in decision.reason


def test_state_round_trips_through_json_form() -> None:
    state = TriggerState(
        last_retrain=NOW,
        last_attempt=NOW,
        consecutive_failures=2,
        baseline_quality=0.8,
        baseline_samples=40,
        schedule_anchor=NOW - timedelta(days=1),
        total_retrains=3,
    )
    assert TriggerState.from_dict(state.to_dict()) == state


@pytest.mark.parametrize(
    ("hours", "current", "previous"),
    [
        # whole hours: every edge on the hour but now itself
        (24, (datetime(2026, 11, 19, 10, tzinfo=UTC), None),
         (datetime(2026, 11, 18, 10, tzinfo=UTC), datetime(2026, 11, 19, 10, tzinfo=UTC))),
        (1, (datetime(2026, 11, 20, 9, tzinfo=UTC), None),
         (datetime(2026, 11, 20, 8, tzinfo=UTC), datetime(2026, 11, 20, 9, tzinfo=UTC))),
        # other widths end exactly now
        (0.5, (datetime(2026, 11, 20, 10, 10, 12, tzinfo=UTC), None),
         (datetime(2026, 11, 20, 9, 40, 12, tzinfo=UTC),
          datetime(2026, 11, 20, 10, 10, 12, tzinfo=UTC))),
    ],
)  # fmt: skip
def test_windows_of_whole_hours_lie_on_the_hour(
    hours: float,
    current: tuple[datetime, None],
    previous: tuple[datetime, datetime],
) -> None:
    """So the stores read raw records for the current hour only, not for partial hours
    deep in a busy history."""
    now = datetime(2026, 11, 20, 10, 40, 12, tzinfo=UTC)
    config = TriggerConfig(quality_window_hours=hours, error_window_hours=hours)
    spans = windows(config, now)
    assert spans.quality_current == (current[0], now)
    assert spans.quality_previous == previous
    assert spans.errors == (current[0], now)
