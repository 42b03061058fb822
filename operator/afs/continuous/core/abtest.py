"""A/B judgement and routing, as pure functions.

The judgement here is the seed's weighted rule (a weighted relative difference of
per-version metrics, against a threshold). It has no notion of noise; the sequential
decision engine replaces the judgement behind the same API. What it does get right, and
the original did not: metrics are per version, "not enough data" and "no clear
difference" are ``inconclusive`` (never a win for either side), and a metric a version has
no data for is left out rather than counted as zero.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from afs.continuous.config import ABTestConfig
from afs.continuous.core.usage_statistics import UsageStatistics

Winner = Literal["champion", "challenger", "inconclusive"]
Action = Literal["promote", "rollback", "continue"]


def version_metrics(stats: UsageStatistics) -> dict[str, Any]:
    """The comparable metrics of one version's records; None where there is no data."""
    rated = stats.with_feedback
    return {
        "count": stats.count,
        "scored": stats.scored,
        "with_feedback": rated,
        "avg_quality_score": stats.quality_mean,
        "positive_feedback_rate": stats.positive / rated if rated else None,
        "negative_feedback_rate": stats.negative / rated if rated else None,
        "feedback_rate": rated / stats.count if stats.count else None,
        "avg_latency_ms": stats.latency_mean,
    }


@dataclass(frozen=True)
class Comparison:
    improvement: float
    winner: Winner
    reason: str
    contributions: dict[str, float]
    skipped: dict[str, str]


def compare(
    champion: dict[str, Any], challenger: dict[str, Any], config: ABTestConfig
) -> Comparison:
    """The weighted relative improvement of the challenger, and who (if anyone) wins.

    Each metric contributes ``weight * (challenger - champion) / |champion|``; the sum is
    divided by the total weight of the metrics that could be compared.
    """
    need = config.min_samples_per_version
    if champion["count"] < need or challenger["count"] < need:
        return Comparison(
            0.0, "inconclusive",
            f"not enough data: champion {champion['count']}/{need}, "
            f"challenger {challenger['count']}/{need} records",
            {}, {},
        )  # fmt: skip
    contributions: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for metric in config.metrics:
        weight = config.metric_weights[metric]
        base, new = champion.get(metric), challenger.get(metric)
        if base is None or new is None:
            skipped[metric] = "no data for one of the versions"
        elif base == 0:
            skipped[metric] = "champion value is 0: no relative difference"
        else:
            contributions[metric] = weight * (new - base) / abs(base)
    used_weight = sum(abs(config.metric_weights[m]) for m in contributions)
    if not used_weight:
        return Comparison(0.0, "inconclusive", "no metric could be compared", {}, skipped)
    improvement = sum(contributions.values()) / used_weight
    threshold = config.min_improvement_threshold
    parts = ", ".join(f"{m} {c / used_weight:+.1%}" for m, c in contributions.items())
    if improvement > threshold:
        winner: Winner = "challenger"
        verdict = f"challenger better by {improvement:.1%} (> {threshold:.0%})"
    elif improvement < -threshold:
        winner = "champion"
        verdict = f"challenger worse by {-improvement:.1%} (> {threshold:.0%})"
    else:
        winner = "inconclusive"
        verdict = f"difference {improvement:+.1%} within ±{threshold:.0%}"
    return Comparison(improvement, winner, f"{verdict}; {parts}", contributions, skipped)


def next_action(comparison: Comparison, *, elapsed_hours: float, config: ABTestConfig) -> Action:
    """Promote a clear winner, roll back a clear loser, once the test has run long enough."""
    if elapsed_hours < config.min_duration_hours:
        return "continue"
    if comparison.winner == "challenger" and comparison.improvement >= config.promotion_threshold:
        return "promote"
    if comparison.winner == "champion":
        return "rollback"
    return "continue"


def routes_to_challenger(key: str, *, salt: str, challenger_weight: float) -> bool:
    """Sticky routing: a key always lands on the same side while weight and salt hold."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < challenger_weight
