"""How PostgreSQL's usage table is cut into partitions (pure functions)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from afs.continuous.store.partitions import (
    Partition,
    parse_partition_name,
    partition_for,
    retention_plan,
)

TODAY = date(2026, 12, 1)  # the daily horizon (35 days) starts on 2026-10-27


@pytest.mark.parametrize(
    ("day", "existing", "expected"),
    [
        # recent days and days ahead: one partition each
        (date(2026, 12, 3), [], Partition(date(2026, 12, 3), date(2026, 12, 4))),
        (date(2026, 10, 27), [], Partition(date(2026, 10, 27), date(2026, 10, 28))),
        # older: the calendar month
        (date(2019, 3, 4), [], Partition(date(2019, 3, 1), date(2019, 4, 1))),
        (date(2019, 12, 31), [], Partition(date(2019, 12, 1), date(2020, 1, 1))),
        # the month up to the horizon only, so recent days stay daily
        (date(2026, 10, 2), [], Partition(date(2026, 10, 1), date(2026, 10, 27))),
        # clipped to the neighbours, never overlapping them
        (
            date(2019, 3, 10),
            [
                Partition(date(2019, 3, 4), date(2019, 3, 5)),
                Partition(date(2019, 3, 20), date(2019, 3, 21)),
            ],
            Partition(date(2019, 3, 5), date(2019, 3, 20)),
        ),
        (
            date(2019, 3, 5),
            [Partition(date(2019, 2, 1), date(2019, 3, 3))],
            Partition(date(2019, 3, 3), date(2019, 4, 1)),
        ),
    ],
)
def test_the_partition_made_for_a_day(
    day: date, existing: list[Partition], expected: Partition
) -> None:
    made = partition_for(day, today=TODAY, existing=existing)
    assert made == expected and made.covers(day)
    assert not any(made.start < p.end and p.start < made.end for p in existing)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("usage_p20261201", Partition(date(2026, 12, 1), date(2026, 12, 2))),
        ("usage_p20190301_20190401", Partition(date(2019, 3, 1), date(2019, 4, 1))),
        ("usage_p20190301_20190301", None),  # empty range
        ("usage_p20191301", None),  # no 13th month
        ("usage_rollup", None),
        ("usage_p2019030", None),
        ("usage_p20190301_", None),
    ],
)
def test_table_names_read_back(name: str, expected: Partition | None) -> None:
    assert parse_partition_name(name) == expected
    if expected is not None:
        assert expected.name == name


def test_retention_takes_exactly_the_days_that_end_by_the_cutoff() -> None:
    month = Partition(date(2019, 3, 1), date(2019, 4, 1))
    day = Partition(date(2026, 11, 30), date(2026, 12, 1))
    later = Partition(date(2026, 12, 1), date(2026, 12, 2))
    cutoff = datetime(2019, 3, 10, 15, 30, tzinfo=UTC)
    assert retention_plan([month, day, later], cutoff) == (
        [],
        [(month, datetime(2019, 3, 10, tzinfo=UTC))],
    )
    assert retention_plan([month, day, later], datetime(2026, 12, 1, 6, tzinfo=UTC)) == (
        [month, day],
        [],
    )
    # a cutoff on the month's first day leaves it whole: no day of it has ended yet
    assert retention_plan([month], datetime(2019, 3, 1, 23, tzinfo=UTC)) == ([], [])
