"""Window statistics from the rollup must equal statistics computed from the records."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from afs.continuous.records import UsageRecord, normalize_record
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
        log_latency = math.log(r.latency_ms) if r.latency_ms > 0 else None
        total += UsageStatistics(
            count=1,
            scored=q is not None,
            quality_sum=q or 0.0,
            quality_sq_sum=(q or 0.0) ** 2,
            latency_sum=r.latency_ms,
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


def test_single_inserts_are_folded_every_few_hundred(tmp_path: Path) -> None:
    store = SQLiteUsageStore(tmp_path / "tail.db")
    rng = random.Random(3)
    records = [_random_record(rng, i % 300) for i in range(1000)]
    for record in records:
        store.insert([record])
    assert store._tail_length() < 300
    expected = _brute_force({r.id: r for r in records})
    _assert_same(store.statistics(), expected)
    store.close()


def test_statistics_derive_means_and_variances() -> None:
    stats = UsageStatistics(count=3, scored=3, quality_sum=1.5, quality_sq_sum=0.77)
    assert stats.quality_mean == pytest.approx(0.5)
    assert stats.quality_variance == pytest.approx((0.77 - 1.5**2 / 3) / 2)
    assert UsageStatistics(count=1, scored=1, quality_sum=0.4).quality_variance is None
    assert UsageStatistics().as_dict()["avg_quality_score"] == 0.0
