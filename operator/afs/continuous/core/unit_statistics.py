"""Statistics of the units an A/B test randomised (users, sessions), for when the
assignment was sticky by key: requests of one user are alike, so the spread that counts
is that of whole users (see :func:`afs.continuous.core.stats.ratio_mean_variance`).

Unlike :class:`UsageStatistics` these do not add across time windows (a user spans
them): the stores compute them from the records of one window, grouped by unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: the ratio metrics, in the order the stores return them: (numerator, denominator)
METRICS = ("quality", "log_latency", "negative", "errors")


@dataclass(frozen=True)
class RatioSums:
    """Sums over units of a per-request mean's numerator y and denominator n."""

    n: float = 0.0
    y: float = 0.0
    y2: float = 0.0
    yn: float = 0.0
    n2: float = 0.0


@dataclass(frozen=True)
class UnitStatistics:
    """``units`` (a record without a key is a unit of its own) and, for each metric of
    :data:`METRICS`, the sums over units: quality over scored records, log latency over
    measured ones, negative feedback over rated ones, errors over requests."""

    units: int = 0
    sums: dict[str, RatioSums] = field(default_factory=lambda: {m: RatioSums() for m in METRICS})

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UnitStatistics:
        """From ``units`` then, per metric, its n, y, y², y·n, n² (NULL reads as 0)."""
        values = [float(v or 0) for v in row]
        sums = {
            metric: RatioSums(*values[1 + 5 * index : 6 + 5 * index])
            for index, metric in enumerate(METRICS)
        }
        return cls(int(values[0]), sums)


#: per unit: its n and y of each metric (``ln`` of a positive latency), over ``usage``
PER_UNIT = (
    "count(quality_score) AS qn, sum(quality_score) AS qy, "
    "count(CASE WHEN latency_ms > 0 THEN 1 END) AS ln_, "
    "sum(CASE WHEN latency_ms > 0 THEN ln(latency_ms) END) AS ly, "
    "count(user_feedback) AS fn, count(CASE WHEN user_feedback = -1 THEN 1 END) AS fy, "
    "count(*) AS en, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS ey"
)
#: over units: their count, then n, y, y², y·n, n² of each metric
OVER_UNITS = ", ".join(
    ["count(*)"]
    + [
        f"sum({n}), sum(coalesce({y}, 0)), sum(coalesce({y}, 0) * coalesce({y}, 0)), "
        f"sum(coalesce({y}, 0) * {n}), sum({n} * {n})"
        for n, y in (("qn", "qy"), ("ln_", "ly"), ("fn", "fy"), ("en", "ey"))
    ]
)


def unit_query(where: str) -> str:
    """The SQL of the unit statistics of the records ``where`` selects (both backends)."""
    return (
        f"SELECT {OVER_UNITS} FROM (SELECT {PER_UNIT} FROM usage WHERE {where} "
        "GROUP BY coalesce(assignment_hash, id)) AS per_unit"
    )
