"""Splitting a time window into whole rollup buckets and partial edges (pure).

Both backends keep additive statistics per hour; a window [since, until) is answered from
the buckets that lie wholly inside it plus the raw records of the (at most two) partial
hours at its edges, so its cost does not grow with history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

BUCKET = timedelta(hours=1)


def bucket_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class WindowPlan:
    """``empty``: nothing can match. Buckets: ``first_bucket`` (inclusive) to
    ``end_bucket`` (exclusive), either unbounded when None, none at all when
    ``use_buckets`` is False. ``edges``: [start, end) ranges to aggregate from records."""

    empty: bool
    use_buckets: bool
    first_bucket: datetime | None
    end_bucket: datetime | None
    edges: tuple[tuple[datetime, datetime], ...]


def plan_window(since: datetime | None, until: datetime | None) -> WindowPlan:
    """Both bounds aware UTC (or None for unbounded)."""
    if since is not None and until is not None:
        if since >= until:
            return WindowPlan(True, False, None, None, ())
        if bucket_start(since) == bucket_start(until):
            return WindowPlan(False, False, None, None, ((since, until),))
    edges: list[tuple[datetime, datetime]] = []
    first = end = None
    if since is not None:
        first = bucket_start(since)
        if first != since:
            edges.append((since, first + BUCKET))
            first += BUCKET
    if until is not None:
        end = bucket_start(until)
        if end != until:
            edges.append((end, until))
    return WindowPlan(False, True, first, end, tuple(edges))
