"""UsageLogger and UsageDatabase: the seed's logging API."""

from __future__ import annotations

import math
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import (
    HeuristicScorer,
    InvalidBatchError,
    InvalidFieldError,
    UsageDatabase,
    UsageLogger,
    UsageRecord,
)
from tests.conftest import FakeClock


def test_log_returns_an_id_and_stores_the_record(logger: UsageLogger, clock: FakeClock) -> None:
    record_id = logger.log("What is 65816 assembly?", "The SNES CPU.", "nayru-v1", "asm", 150, 0.85)
    assert isinstance(record_id, str) and len(record_id) == 12
    [record] = list(logger.get_records())
    assert record.id == record_id
    assert (record.model, record.expert, record.latency_ms, record.quality_score) == (
        "nayru-v1",
        "asm",
        150.0,
        0.85,
    )
    assert record.timestamp == "2026-11-20T12:00:00.000000Z"


def test_db_path_expands_home_and_creates_parents(private_home: Path) -> None:
    with UsageLogger("~/deep/er/usage.db") as logger:
        logger.log("q", "r", "m")
    assert (private_home / "deep/er/usage.db").exists()


def test_logger_exposes_its_database(logger: UsageLogger) -> None:
    assert isinstance(logger.db, UsageDatabase)


def test_unscored_records_stay_out_of_quality_averages(logger: UsageLogger) -> None:
    logger.log("q1", "r1", "m", quality_score=0.8)
    logger.log("q2", "r2", "m")
    stats = logger.get_statistics()
    assert stats["total"] == 2 and stats["scored"] == 1
    assert stats["avg_quality_score"] == pytest.approx(0.8)


def test_records_without_a_latency_stay_out_of_the_latency_average(logger: UsageLogger) -> None:
    logger.log("q1", "r1", "m", latency_ms=120.0)
    logger.log("q2", "r2", "m")  # not measured
    stats = logger.get_statistics()
    assert stats["avg_latency_ms"] == 120.0 and stats["latency_measured"] == 1


def test_averages_read_as_people_write_them(logger: UsageLogger) -> None:
    for i in range(10):
        logger.log(f"q{i}", f"r{i}", "m", quality_score=0.9, latency_ms=0.1)
    stats = logger.get_statistics()
    assert (stats["avg_quality_score"], stats["avg_latency_ms"]) == (0.9, 0.1)


def test_scorer_scores_records_logged_without_a_score(db_path: Path) -> None:
    with UsageLogger(db_path, scorer=HeuristicScorer()) as logger:
        logger.log("How do I enable DMA?", "Write the channel registers, then set $420B.", "m")
        logger.log("q", "r", "m", quality_score=0.1)
        scores = sorted(r.quality_score or 0 for r in logger.get_records())
    assert scores[0] == 0.1 and 0 < scores[1] <= 1


def test_score_unscored_backfills_only_missing_scores(logger: UsageLogger) -> None:
    logger.log("How do I read the joypad?", "Poll $4212, then read $4218.", "m")
    logger.log("q", "r", "m", quality_score=0.3)
    assert logger.score_unscored() == 1
    assert logger.score_unscored() == 0
    assert logger.get_statistics()["scored"] == 2


def test_record_feedback_updates_and_reports_unknown_ids(logger: UsageLogger) -> None:
    record_id = logger.log("q", "r", "m", quality_score=0.9)
    assert logger.record_feedback(record_id, feedback=1) is True
    assert logger.record_feedback("nonexistent1", feedback=1) is False
    stats = logger.get_statistics()
    assert (stats["with_feedback"], stats["positive_feedback"], stats["feedback_rate"]) == (
        1,
        1,
        1.0,
    )
    assert logger.record_feedback(record_id, -1, "wrong register") is True
    stats = logger.get_statistics()
    assert (stats["positive_feedback"], stats["negative_feedback"]) == (0, 1)
    [record] = list(logger.get_records())
    assert record.feedback_text == "wrong register"


def test_statistics_have_the_seed_keys(logger: UsageLogger) -> None:
    logger.log("q", "r", "m", latency_ms=100, quality_score=0.5, token_count=7)
    stats = logger.get_statistics()
    for key in (
        "total",
        "with_feedback",
        "positive_feedback",
        "negative_feedback",
        "avg_quality_score",
        "avg_latency_ms",
        "total_tokens",
        "feedback_rate",
    ):
        assert key in stats
    assert (stats["avg_latency_ms"], stats["total_tokens"]) == (100.0, 7)


def test_statistics_since_and_per_model(logger: UsageLogger, clock: FakeClock) -> None:
    logger.log("q1", "r1", "a", quality_score=0.2)
    clock.advance(hours=5)
    logger.log("q2", "r2", "b", quality_score=0.6)
    assert logger.get_statistics(since=clock.now - timedelta(hours=1))["total"] == 1
    assert logger.get_statistics(model="a")["avg_quality_score"] == pytest.approx(0.2)
    naive_local = (clock.now - timedelta(hours=1)).astimezone().replace(tzinfo=None)
    assert logger.get_statistics(since=naive_local)["total"] == 1


def test_get_records_filters(logger: UsageLogger, clock: FakeClock) -> None:
    ids = []
    for i, (model, quality, feedback) in enumerate(
        [("a", 0.9, 1), ("b", 0.4, None), ("a", 0.6, -1), ("a", None, None)]
    ):
        clock.advance(minutes=1)
        ids.append(
            logger.log(f"q{i}", f"r{i}", model, quality_score=quality, user_feedback=feedback)
        )
    assert [r.id for r in logger.get_records()] == ids[::-1]
    assert [r.id for r in logger.get_records(model="a", min_quality=0.5)] == [ids[2], ids[0]]
    assert [r.id for r in logger.get_records(with_feedback_only=True, limit=1)] == [ids[2]]
    assert [r.id for r in logger.get_records(since=clock.now - timedelta(seconds=90))] == ids[:1:-1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": ""}, "query"),
        ({"response": None}, "response"),
        ({"model": "  "}, "model"),
        ({"quality_score": 1.01}, "quality_score"),
        ({"quality_score": math.nan}, "quality_score"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"latency_ms": math.inf}, "latency_ms"),
        ({"token_count": -1}, "token_count"),
        ({"user_feedback": 5}, "user_feedback"),
        ({"timestamp": "not a time"}, "timestamp"),
        ({"context": object()}, "context"),
    ],
)
def test_bad_input_raises_and_writes_nothing(
    logger: UsageLogger, kwargs: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {"query": "q", "response": "r", "model": "m"} | kwargs
    with pytest.raises(InvalidFieldError) as caught:
        logger.log(**values)
    assert caught.value.field == field
    assert logger.get_statistics()["total"] == 0


@pytest.mark.parametrize(
    ("feedback", "text"), [(2, None), (True, None), ("1", None), (1, 3), (1, "x" * 70_000)]
)
def test_bad_feedback_raises_and_changes_nothing(
    logger: UsageLogger, feedback: Any, text: Any
) -> None:
    record_id = logger.log("q", "r", "m")
    with pytest.raises(InvalidFieldError):
        logger.record_feedback(record_id, feedback, text)
    assert logger.get_statistics()["with_feedback"] == 0


@pytest.mark.parametrize("limit", [-1, 1.5, "10", True])
def test_bad_limit_is_rejected(logger: UsageLogger, limit: Any) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        list(logger.get_records(limit=limit))
    assert caught.value.field == "limit"


def test_log_many_is_all_or_nothing(logger: UsageLogger) -> None:
    good = {"query": "q", "response": "r", "model": "m"}
    with pytest.raises(InvalidBatchError) as caught:
        logger.log_many([good, good | {"quality_score": 7}, good])
    assert caught.value.index == 1 and caught.value.cause.field == "quality_score"
    assert logger.get_statistics()["total"] == 0
    ids = logger.log_many([good, UsageRecord("", "", "q2", "r2", "m"), good | {"user_feedback": 1}])
    assert len(set(ids)) == 3
    assert logger.get_statistics()["positive_feedback"] == 1


def test_log_many_does_not_mutate_caller_records(logger: UsageLogger) -> None:
    record = UsageRecord("", "", "q", "r", "m")
    logger.log_many([record])
    assert record.id == "" and record.dedupe_hash is None


def test_usage_database_api(db_path: Path, clock: FakeClock) -> None:
    db = UsageDatabase(db_path, clock=clock)
    record_id = db.insert(UsageRecord("", "", "q", "r", "m", quality_score=0.9))
    db.insert(UsageRecord("", "", "q", "r", "m", quality_score=0.2))
    assert db.update_feedback(record_id, 1) is True
    assert db.update_quality_score(record_id, 0.95) is True
    assert [r.id for r in db.query(min_quality=0.9)] == [record_id]
    assert db.count_new_samples(clock.now - timedelta(days=1), min_quality=0.5) == 1
    assert db.get_statistics()["total"] == 2
    with pytest.raises(InvalidBatchError):
        db.insert_many([UsageRecord("", "", "q3", "r3", "m"), UsageRecord("", "", "", "r", "m")])
    assert len(db.insert_many([UsageRecord("", "", "q", "r", "m", quality_score=0.1)])) == 1
    assert db.deduplicate(dry_run=True) == 2
    assert db.deduplicate() == 2
    assert [r.id for r in db.query()] == [record_id]
    db.close()


# --- concurrency ------------------------------------------------------------------


def test_two_threads_logging_at_once_lose_nothing(logger: UsageLogger) -> None:
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            for i in range(400):
                record_id = logger.log(f"{tag} q{i}", f"r{i}", tag, quality_score=0.5)
                if i % 10 == 0:
                    logger.record_feedback(record_id, 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = logger.get_statistics()
    assert (stats["total"], stats["positive_feedback"]) == (800, 80)


def _log_in_process(path: str, tag: str, count: int) -> None:
    with UsageLogger(path) as logger:
        for i in range(count):
            logger.log(f"{tag} q{i}", f"r{i}", tag)
        logger.log_many(
            [{"query": f"{tag} batch {i}", "response": "r", "model": tag} for i in range(300)]
        )


def test_two_processes_logging_at_once_lose_nothing(db_path: Path) -> None:
    UsageLogger(db_path).close()  # create the schema first, as a deployment would
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_log_in_process, args=(str(db_path), t, 500)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with UsageLogger(db_path) as logger:
        assert logger.get_statistics()["total"] == 1600
        assert logger.get_statistics(model="a")["total"] == 800


def test_two_processes_creating_the_database_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_log_in_process, args=(str(path), t, 50)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with UsageLogger(path) as logger:
        assert logger.get_statistics()["total"] == 700


def test_timestamps_are_stored_in_utc(db_path: Path) -> None:
    plus_two = datetime(2026, 11, 20, 14, 0, tzinfo=UTC).astimezone()
    with UsageLogger(db_path) as logger:
        logger.log("q", "r", "m", timestamp=plus_two)
        [record] = list(logger.get_records())
    assert record.timestamp == "2026-11-20T14:00:00.000000Z"
