"""How PostgreSQL's ``usage`` table is cut into partitions: pure functions, no SQL.

Recent days get a partition each, so retention usually drops whole tables. A day older
than ``DAILY_HORIZON_DAYS`` (a backfill, an import of an archive) gets one partition for
its calendar month instead, clipped to its neighbours. Why: a statement that cannot prune
by time (feedback by id, the id uniqueness check) locks every partition and each of its
indexes, and PostgreSQL's lock table holds ``max_locks_per_transaction × max_connections``
locks (6,400 by default) for all sessions together; an import spanning 4,000 days with a
partition per day needs ~24,000 in one transaction and fails with "out of shared memory".
Per month it needs ~800.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAILY_HORIZON_DAYS = 35
ONE_DAY = timedelta(days=1)
_NAME = re.compile(r"usage_p(\d{8})(?:_(\d{8}))?")


@dataclass(frozen=True)
class Partition:
    """A partition of ``usage``: the UTC days ``start`` (inclusive) to ``end`` (exclusive)."""

    start: date
    end: date

    @property
    def name(self) -> str:
        if self.end - self.start == ONE_DAY:
            return f"usage_p{self.start:%Y%m%d}"
        return f"usage_p{self.start:%Y%m%d}_{self.end:%Y%m%d}"

    def bounds(self) -> tuple[datetime, datetime]:
        return midnight(self.start), midnight(self.end)

    def covers(self, day: date) -> bool:
        return self.start <= day < self.end

    def days(self) -> set[date]:
        return {self.start + ONE_DAY * i for i in range((self.end - self.start).days)}


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_partition_name(name: str) -> Partition | None:
    """The partition a table name stands for; None for a table that is not one of ours."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        start = datetime.strptime(match.group(1), "%Y%m%d").date()
        end = datetime.strptime(match.group(2), "%Y%m%d").date() if match.group(2) else None
    except ValueError:
        return None
    if end is None:
        return Partition(start, start + ONE_DAY)
    return Partition(start, end) if end > start else None


def partition_for(day: date, *, today: date, existing: Iterable[Partition]) -> Partition:
    """The partition to create for ``day``, which no partition in ``existing`` covers."""
    horizon = today - timedelta(days=DAILY_HORIZON_DAYS)
    if day >= horizon:
        return Partition(day, day + ONE_DAY)
    start = day.replace(day=1)
    end = min((start + timedelta(days=32)).replace(day=1), horizon)
    for other in existing:
        if other.end <= day:
            start = max(start, other.end)
        elif other.start > day:
            end = min(end, other.start)
    return Partition(start, end)


def retention_plan(
    partitions: Iterable[Partition], cutoff: datetime
) -> tuple[list[Partition], list[tuple[Partition, datetime]]]:
    """What ``drop_before(cutoff)`` does: the partitions that end by ``cutoff`` are
    dropped; one that holds whole days before the cutoff and days after it (only a month
    partition can) loses those days' records, up to the last midnight before the cutoff.
    Either way exactly the days that end by the cutoff go, whatever the partitions' sizes.
    """
    cutoff_day = cutoff.astimezone(UTC).date()
    dropped: list[Partition] = []
    trimmed: list[tuple[Partition, datetime]] = []
    for partition in partitions:
        if midnight(partition.end) <= cutoff:
            dropped.append(partition)
        elif partition.start < cutoff_day:
            trimmed.append((partition, midnight(cutoff_day)))
    return dropped, trimmed
