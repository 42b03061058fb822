"""The weighted A/B judgement and sticky routing."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.config import ABTestConfig
from afs.continuous.core.abtest import compare, next_action, routes_to_challenger


def _metrics(
    n: int = 500,
    quality: float | None = 0.7,
    positive: float | None = 0.6,
    latency: float | None = 200.0,
) -> dict[str, Any]:
    return {
        "count": n,
        "avg_quality_score": quality,
        "positive_feedback_rate": positive,
        "avg_latency_ms": latency,
    }


@pytest.mark.parametrize(
    ("challenger", "winner"),
    [
        (_metrics(quality=0.8, positive=0.7), "challenger"),
        (_metrics(quality=0.6, positive=0.5), "champion"),
        (_metrics(quality=0.71), "inconclusive"),
        (_metrics(latency=400.0), "champion"),  # twice as slow: -0.2 * 100%
        (_metrics(n=99, quality=0.99), "inconclusive"),
    ],
)
def test_weighted_rule(challenger: dict[str, Any], winner: str) -> None:
    assert compare(_metrics(), challenger, ABTestConfig()).winner == winner


def test_not_enough_data_says_how_much() -> None:
    result = compare(_metrics(n=40), _metrics(n=12), ABTestConfig())
    assert result.winner == "inconclusive"
    assert result.reason == "not enough data: champion 40/100, challenger 12/100 records"


def test_a_metric_without_data_is_skipped_not_zero() -> None:
    result = compare(_metrics(), _metrics(quality=0.8, positive=None), ABTestConfig())
    assert "positive_feedback_rate" in result.skipped
    # quality +14.3% with weight 0.5, latency 0 with weight 0.2, normalised by 0.7
    assert result.improvement == pytest.approx(0.5 * (0.1 / 0.7) / 0.7)


def test_custom_metric_without_values_is_reported() -> None:
    config = ABTestConfig(
        metrics=["avg_quality_score", "custom_metric"],
        metric_weights={"avg_quality_score": 0.6, "custom_metric": 0.4},
    )
    result = compare(_metrics(), _metrics(quality=0.8), config)
    assert result.skipped == {"custom_metric": "no data for one of the versions"}
    assert result.winner == "challenger"


@pytest.mark.parametrize(
    ("winner_quality", "hours", "action"),
    [(0.8, 10, "continue"), (0.8, 48, "promote"), (0.6, 48, "rollback"), (0.71, 100, "continue")],
)
def test_next_action_waits_for_the_minimum_duration(
    winner_quality: float, hours: float, action: str
) -> None:
    config = ABTestConfig()
    comparison = compare(_metrics(), _metrics(quality=winner_quality, positive=None), config)
    assert next_action(comparison, elapsed_hours=hours, config=config) == action


def test_routing_is_sticky_and_proportional() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    first = [routes_to_challenger(k, salt="t1", challenger_weight=0.1) for k in keys]
    again = [routes_to_challenger(k, salt="t1", challenger_weight=0.1) for k in keys]
    assert first == again
    assert 0.09 < sum(first) / len(keys) < 0.11
    assert not any(routes_to_challenger(k, salt="t1", challenger_weight=0.0) for k in keys[:100])
    assert all(routes_to_challenger(k, salt="t1", challenger_weight=1.0) for k in keys[:100])
