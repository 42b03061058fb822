"""Window statistics from the rollup must equal statistics computed from the records."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from afs.continuous.core.unit_statistics import RatioSums, UnitStatistics
from afs.continuous.records import UsageRecord, normalize_record, normalized_batch
from afs.continuous.store import RecordQuery, UsageStatistics, UsageStore
from afs.continuous.store.sqlite import SQLiteUsageStore

START = datetime(2026, 11, 1, tzinfo=UTC)


def _brute_force(
    records: dict[str, UsageRecord],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
) -> UsageStatistics:
    total = UsageStatistics()
    for r in records.values():
        ts = datetime.fromisoformat(r.timestamp)
        if (since is not None and ts < since) or (until is not None and ts >= until):
            continue
        if model is not None and r.model != model:
            continue
        q, fb = r.quality_score, r.user_feedback
        latency = r.latency_ms or 0.0  # not known: counts nowhere, as 0 does
        log_latency = math.log(latency) if latency > 0 else None
        total += UsageStatistics(
            count=1,
            scored=q is not None,
            quality_sum=q or 0.0,
            quality_sq_sum=(q or 0.0) ** 2,
            latency_sum=latency,
            log_latency_count=log_latency is not None,
            log_latency_sum=log_latency or 0.0,
            log_latency_sq_sum=(log_latency or 0.0) ** 2,
            token_sum=r.token_count or 0,
            with_feedback=fb is not None,
            positive=fb == 1,
            negative=fb == -1,
            errors=r.is_error,
        )
    return total


def _assert_same(actual: UsageStatistics, expected: UsageStatistics) -> None:
    for name in (
        "count",
        "scored",
        "token_sum",
        "with_feedback",
        "positive",
        "negative",
        "log_latency_count",
    ):
        assert getattr(actual, name) == getattr(expected, name), name
    for name in (
        "quality_sum",
        "quality_sq_sum",
        "latency_sum",
        "log_latency_sum",
        "log_latency_sq_sum",
    ):
        assert getattr(actual, name) == pytest.approx(getattr(expected, name), rel=1e-9, abs=1e-9)


def _random_record(rng: random.Random, minute: int) -> UsageRecord:
    record = UsageRecord(
        id="",
        timestamp=(START + timedelta(minutes=minute, seconds=rng.randrange(60))).isoformat(),
        query=f"question {rng.randrange(40)}",
        response=f"answer {rng.randrange(40)}",
        model=rng.choice(["a", "b"]),
        expert=rng.choice([None, "asm"]),
        latency_ms=rng.choice([0.0, rng.uniform(1, 500)]),
        token_count=rng.choice([None, rng.randrange(200)]),
        quality_score=rng.choice([None, rng.random()]),
        user_feedback=rng.choice([None, -1, 0, 1]),
        is_error=rng.random() < 0.2,
    )
    return normalize_record(record, now=START + timedelta(days=365))  # dates are the subject


def test_statistics_match_the_records_through_inserts_updates_folds_and_deletes(
    store: UsageStore,
) -> None:
    rng = random.Random(11)
    records: dict[str, UsageRecord] = {}
    for step in range(12):
        batch = [_random_record(rng, rng.randrange(6 * 60)) for _ in range(rng.randrange(1, 60))]
        if step % 3 == 0:
            for record in batch:  # one by one, as log() does
                store.insert([record])
        else:
            store.insert(batch)
        records.update((r.id, r) for r in batch)
        for record_id in rng.sample(sorted(records), 10):  # late feedback and rescoring
            feedback = rng.choice([-1, 0, 1])
            assert store.update_feedback(record_id, feedback, None, START)
            records[record_id].user_feedback = feedback
            score = rng.choice([None, rng.random()])
            assert store.update_quality_score(record_id, score)
            records[record_id].quality_score = score
        if step == 8:
            removed = store.deduplicate()
            kept = {r.id for r in store.iter_records(RecordQuery())}
            assert len(kept) == len(records) - removed
            records = {k: v for k, v in records.items() if k in kept}

        windows = [
            (None, None),
            (START + timedelta(hours=2), None),
            (START + timedelta(hours=1, minutes=17), START + timedelta(hours=4, minutes=3)),
            (START + timedelta(minutes=5), START + timedelta(minutes=50)),
            (None, START + timedelta(hours=3)),
        ]
        for since, until in windows:
            for model in (None, "a"):
                _assert_same(
                    store.statistics(since=since, until=until, model=model),
                    _brute_force(records, since=since, until=until, model=model),
                )


def test_empty_and_inverted_windows_have_zero_counts(store: UsageStore) -> None:
    assert store.statistics() == UsageStatistics()
    store.insert([_random_record(random.Random(1), 30)])
    inverted = store.statistics(since=START + timedelta(hours=2), until=START)
    assert inverted.count == 0


@pytest.mark.parametrize("batch", [1, 7])
def test_small_inserts_are_folded_every_few_hundred(tmp_path: Path, batch: int) -> None:
    store = SQLiteUsageStore(tmp_path / "tail.db")
    rng = random.Random(3)
    records = [_random_record(rng, i % 300) for i in range(1001)]
    for start in range(0, len(records), batch):
        store.insert(records[start : start + batch])
    assert 0 < store._tail_length() < 300
    expected = _brute_force({r.id: r for r in records})
    _assert_same(store.statistics(), expected)
    store.close()


def test_statistics_derive_means_and_variances() -> None:
    stats = UsageStatistics(count=3, scored=3, quality_sum=1.5, quality_sq_sum=0.77)
    assert stats.quality_mean == pytest.approx(0.5)
    assert stats.quality_variance == pytest.approx((0.77 - 1.5**2 / 3) / 2)
    assert UsageStatistics(count=1, scored=1, quality_sum=0.4).quality_variance is None
    assert UsageStatistics().as_dict()["avg_quality_score"] == 0.0


def _counted(r: dict[str, Any], metric: str) -> tuple[float, float]:
    """A record's contribution (n, y) to a ratio metric."""
    latency = float(r["latency_ms"])
    if metric == "quality":
        return (0.0, 0.0) if r["quality_score"] is None else (1.0, float(r["quality_score"]))
    if metric == "log_latency":
        return (1.0, math.log(latency)) if latency > 0 else (0.0, 0.0)
    if metric == "negative":
        return (0.0, 0.0) if r["user_feedback"] is None else (1.0, float(r["user_feedback"] == -1))
    return 1.0, float(bool(r["is_error"]))


def _unit_brute_force(
    records: list[dict[str, Any]], since: datetime, until: datetime, model: str
) -> UnitStatistics:
    """The unit statistics by hand: group by key (a record without one alone)."""
    units: dict[str, list[dict[str, Any]]] = {}
    for index, r in enumerate(records):
        if r["model"] == model and since <= r["timestamp"] < until:
            units.setdefault(r["assignment_key"] or f"alone-{index}", []).append(r)
    sums = {}
    for metric in ("quality", "log_latency", "negative", "errors"):
        per_unit = [
            tuple(map(sum, zip(*(_counted(r, metric) for r in rs), strict=True)))
            for rs in units.values()
        ]
        sums[metric] = RatioSums(
            n=sum(n for n, _ in per_unit), y=sum(y for _, y in per_unit),
            y2=sum(y * y for _, y in per_unit), yn=sum(y * n for n, y in per_unit),
            n2=sum(n * n for n, _ in per_unit),
        )  # fmt: skip
    return UnitStatistics(len(units), sums)


def test_unit_statistics_group_the_records_by_assignment_key(store: UsageStore) -> None:
    rng = random.Random(3)
    records: list[dict[str, Any]] = []
    for index in range(300):
        records.append({
            "query": f"q{index}", "response": "a", "model": rng.choice(["a", "b"]),
            "timestamp": START + timedelta(minutes=7 * index),
            "quality_score": rng.choice([None, round(rng.random(), 3)]),
            "latency_ms": rng.choice([0.0, 120.0, 250.0]),
            "user_feedback": rng.choice([None, -1, 0, 1]), "is_error": rng.random() < 0.1,
            "assignment_key": rng.choice([None, *(f"user-{u}" for u in range(15))]),
        })  # fmt: skip
    store.insert(normalized_batch(records, now=START + timedelta(days=30)))
    since, until = START + timedelta(hours=3), START + timedelta(hours=30)
    found = store.unit_statistics(since=since, until=until, model="a")
    expected = _unit_brute_force(records, since, until, "a")
    assert found.units == expected.units > 15
    for metric, sums in expected.sums.items():
        for name in ("n", "y", "y2", "yn", "n2"):
            assert getattr(found.sums[metric], name) == pytest.approx(getattr(sums, name)), (
                metric, name,
            )  # fmt: skip
    assert store.unit_statistics(since=until, until=None, model="nobody").units == 0
