"""Additive statistics of a set of usage records: the value the stores compute and the
pure decisions (triggers, A/B verdicts) read. It lives here, below both, so that nothing
in ``core`` depends on the storage package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class UsageStatistics:
    """Additive sufficient statistics of a set of records.

    Sums rather than averages, so that statistics of disjoint windows (rollup buckets,
    partitions) combine exactly with ``+``; means and variances are derived on demand.
    Latency logs are kept over records with ``latency_ms > 0`` (0 means "not measured").
    """

    count: int = 0
    scored: int = 0
    quality_sum: float = 0.0
    quality_sq_sum: float = 0.0
    latency_sum: float = 0.0
    log_latency_count: int = 0
    log_latency_sum: float = 0.0
    log_latency_sq_sum: float = 0.0
    token_sum: int = 0
    with_feedback: int = 0
    positive: int = 0
    negative: int = 0
    errors: int = 0

    def __add__(self, other: UsageStatistics) -> UsageStatistics:
        return UsageStatistics(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UsageStatistics:
        """Build from a row in field order, as each field's type: SQL ``SUM`` of nothing
        is NULL (read as 0), SQLite's ``TOTAL`` gives counts as floats and PostgreSQL's
        ``sum`` of integers gives decimals."""
        values: list[Any] = [kind(v or 0) for kind, v in zip(_FIELD_TYPES, row, strict=True)]
        return cls(*values)

    @property
    def neutral(self) -> int:
        return self.with_feedback - self.positive - self.negative

    @property
    def quality_mean(self) -> float | None:
        return self.quality_sum / self.scored if self.scored else None

    @property
    def quality_variance(self) -> float | None:
        """Unbiased sample variance, or None below two scored records."""
        return _variance(self.scored, self.quality_sum, self.quality_sq_sum)

    @property
    def latency_mean(self) -> float | None:
        """Over the records whose latency was measured (> 0): one logged without a
        latency must not pull the average towards 0 ms, as unscored records do not
        pull the quality towards 0."""
        return self.latency_sum / self.log_latency_count if self.log_latency_count else None

    @property
    def log_latency_mean(self) -> float | None:
        if not self.log_latency_count:
            return None
        return self.log_latency_sum / self.log_latency_count

    @property
    def feedback_rate(self) -> float:
        return self.with_feedback / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The seed's ``get_statistics()`` keys, plus the counts behind them.

        Averages over nothing are reported as 0.0, as the original did; ``scored`` and
        ``latency_measured`` tell whether ``avg_quality_score`` and ``avg_latency_ms``
        rest on any data at all.
        """
        return {
            "total": self.count,
            "with_feedback": self.with_feedback,
            "positive_feedback": self.positive,
            "negative_feedback": self.negative,
            "neutral_feedback": self.neutral,
            "avg_quality_score": _tidy(self.quality_mean),
            "avg_latency_ms": _tidy(self.latency_mean),
            "total_tokens": self.token_sum,
            "feedback_rate": _tidy(self.feedback_rate),
            "scored": self.scored,
            "latency_measured": self.log_latency_count,
            "errors": self.errors,
        }


def _tidy(mean: float | None) -> float:
    """A mean for people to read: 0.9, not the 0.8999999999999999 a sum of floats gives
    (12 decimals keep every digit a measurement has); 0.0 over nothing, as the seed."""
    return round(mean, 12) if mean is not None else 0.0


def _variance(n: int, total: float, sq_total: float) -> float | None:
    if n < 2:
        return None
    return max(0.0, (sq_total - total * total / n) / (n - 1))


_FIELD_TYPES: tuple[type[int] | type[float], ...] = tuple(
    int if f.type == "int" else float for f in fields(UsageStatistics)
)
