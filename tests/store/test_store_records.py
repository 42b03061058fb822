"""Writing, reading and filtering records through the store interface."""

from __future__ import annotations

import gzip
import itertools
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import InvalidBatchError, InvalidFieldError, UsageLogger
from afs.continuous.records import UsageRecord, normalize_record
from afs.continuous.store import RecordQuery, TrainingSelection, UsageStore, open_store
from afs.continuous.store.sqlite import SQLiteUsageStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _rec(minute: int, **overrides: object) -> UsageRecord:
    values: dict[str, object] = {
        "id": "",
        "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        "query": f"q{minute}",
        "response": f"r{minute}",
        "model": "m",
    }
    values.update(overrides)
    # checked as of a year later: the records' own timestamps are what the tests are about
    later = T0 + timedelta(days=365)
    return normalize_record(UsageRecord(**values), now=later)  # type: ignore[arg-type]


def test_generated_ids_are_handed_out_in_order_one_draw_after_another(store: UsageStore) -> None:
    """Records written in a row sit side by side in the primary-key index: each draw of
    ids (one lane) is handed out in ascending order before the next is begun."""
    ids = [store.insert([_rec(i)])[0] for i in range(30)]
    ids += store.insert([_rec(i) for i in range(30, 2500)])
    runs = [list(run) for _, run in itertools.groupby(ids, key=lambda i: i[:4])]
    assert len(runs) <= 3  # 2,500 ids from draws of 1,000
    assert all(run == sorted(run) for run in runs)


def test_insert_assigns_ids_and_returns_them_in_order(store: UsageStore) -> None:
    records = [_rec(i) for i in range(5)]
    ids = store.insert(records)
    assert ids == [r.id for r in records] and len(set(ids)) == 5
    assert store.get(ids[3]) == records[3]


def test_generated_id_collision_is_retried_not_dropped(store_target: str) -> None:
    """Postgres enforces (id, timestamp): the colliding records share a timestamp here."""
    sequence = itertools.chain(["AAAAAAAAAAAA", "AAAAAAAAAAAA"], (f"B{i:011d}" for i in range(99)))
    store = open_store(store_target, id_factory=lambda: next(sequence))
    first = store.insert([_rec(1)])
    second = store.insert([_rec(1, query="other")])  # the factory repeats itself
    assert first == ["AAAAAAAAAAAA"]
    assert second[0] != first[0]
    assert store.count_records(RecordQuery()) == 2
    store.close()


def test_a_long_batch_is_not_held_in_memory_while_it_is_written(store: UsageStore) -> None:
    """An import streams its file into one transaction: the records already written must
    be free to go, or memory grows with the file (it was ~5× the file). PostgreSQL keeps
    the batch on purpose: a COPY cut by a lost connection is replayed from it."""
    if not isinstance(store, SQLiteUsageStore):
        pytest.skip("PostgreSQL keeps a batch to replay it after a lost connection")
    alive: set[int] = set()
    most_alive = 0

    def records() -> Iterator[UsageRecord]:
        nonlocal most_alive
        for i in range(6000):
            record = _rec(i % 1440)
            alive.add(i)
            weakref.finalize(record, alive.discard, i)
            most_alive = max(most_alive, len(alive))
            yield record

    ids = store.insert(records())
    assert len(ids) == len(set(ids)) == 6000
    assert store.count_records(RecordQuery()) == 6000
    assert most_alive <= 2500


@pytest.mark.parametrize("count", [2, 3, 4, 5, 63, 64, 65, 256, 257, 341, 1000, 1001])
def test_a_batch_of_any_size_is_written_whole(store: UsageStore, count: int) -> None:
    """SQLite writes a batch in statements of 256, 64, 16, 4 and 1 rows: every size
    between and across them lands, each record with its own values."""
    records = [_rec(i % 1440, query=f"q{i}", latency_ms=float(i)) for i in range(count)]
    ids = store.insert(records)
    stored = {r.id: r for r in store.iter_records(RecordQuery())}
    assert len(stored) == count
    assert [(stored[i].query, stored[i].latency_ms) for i in ids] == [
        (f"q{n}", float(n)) for n in range(count)
    ]


def test_sqlite_keeps_to_an_old_limit_on_statement_variables(tmp_path: Path) -> None:
    """SQLite before 3.32 took at most 999 variables a statement (256 rows need 3,840)."""
    store = SQLiteUsageStore(tmp_path / "old.db")
    try:
        store._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        ids = store.insert([_rec(i % 1440) for i in range(700)])
        assert len(set(ids)) == 700
        assert store.count_records(RecordQuery()) == 700
    finally:
        store.close()


def test_a_generated_id_colliding_late_in_a_long_batch_is_replaced(store_target: str) -> None:
    ids = itertools.chain(
        ["AAAAAAAAAAAA"], (f"B{i:011d}" for i in range(2999)), ["AAAAAAAAAAAA"],
        (f"C{i:011d}" for i in range(99)),
    )  # fmt: skip
    store = open_store(store_target, id_factory=lambda: next(ids))
    try:
        # one timestamp: PostgreSQL's key is (id, timestamp)
        written = store.insert([_rec(1) for _ in range(3001)])
        assert len(set(written)) == 3001 and written[0] == "AAAAAAAAAAAA"
        assert written[-1] != "AAAAAAAAAAAA"
        assert store.count_records(RecordQuery()) == 3001
    finally:
        store.close()


def test_a_supplied_id_repeated_late_in_a_long_batch_writes_nothing(store: UsageStore) -> None:
    records = [_rec(i % 1440, id=f"given-{i:05d}") for i in range(2500)]
    records.append(_rec(5, id="given-00007"))
    with pytest.raises(InvalidFieldError) as caught:
        store.insert(records)
    assert caught.value.field == "id"
    assert store.count_records(RecordQuery()) == 0


def test_supplied_duplicate_id_is_rejected_and_nothing_is_written(store: UsageStore) -> None:
    store.insert([_rec(1, id="fixed-id-001")])
    with pytest.raises(InvalidFieldError) as caught:
        store.insert([_rec(2), _rec(3, id="fixed-id-001")])
    assert caught.value.field == "id"
    assert store.count_records(RecordQuery()) == 1


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE usage; --",
        '" OR 1=1 --',
        "x') UNION SELECT * FROM usage_rollup --",
        "%_\\",
    ],
)
def test_hostile_text_is_stored_verbatim_and_filters_stay_literal(
    store: UsageStore, hostile: str
) -> None:
    [record_id] = store.insert([_rec(1, query=hostile, model=hostile, expert=hostile)])
    store.insert([_rec(2)])
    stored = store.get(record_id)
    assert stored is not None and stored.query == hostile
    assert [r.id for r in store.iter_records(RecordQuery(model=hostile))] == [record_id]
    assert store.statistics(model=hostile, expert=hostile).count == 1
    assert store.count_records(RecordQuery()) == 2


def test_iter_records_filters_orders_and_limits(store: UsageStore) -> None:
    store.insert(
        [_rec(i, quality_score=i / 10, user_feedback=1 if i % 2 else None) for i in range(10)]
    )
    newest = [r.query for r in store.iter_records(RecordQuery(limit=3))]
    assert newest == ["q9", "q8", "q7"]
    oldest = [r.query for r in store.iter_records(RecordQuery(limit=2, newest_first=False))]
    assert oldest == ["q0", "q1"]
    window = RecordQuery(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5))
    assert [r.query for r in store.iter_records(window)] == ["q4", "q3", "q2"]
    good = RecordQuery(min_quality=0.55, with_feedback_only=True)
    assert [r.query for r in store.iter_records(good)] == ["q9", "q7"]
    assert store.count_records(good) == 2
    assert list(store.iter_records(RecordQuery(limit=0))) == []


def test_feedback_since_finds_late_feedback_on_old_records(store: UsageStore) -> None:
    old, recent = store.insert([_rec(0), _rec(1000, user_feedback=1)])
    cutoff = T0 + timedelta(minutes=500)
    assert [r.id for r in store.iter_records(RecordQuery(feedback_since=cutoff))] == [recent]
    store.update_feedback(old, -1, "wrong", T0 + timedelta(minutes=900))
    found = {r.id for r in store.iter_records(RecordQuery(feedback_since=cutoff))}
    assert found == {old, recent}


def test_updates_on_unknown_ids_return_false(store: UsageStore) -> None:
    assert store.update_feedback("missing", 1, None, T0) is False
    assert store.update_quality_score("missing", 0.5) is False


def test_count_new_samples_counts_scored_records_at_or_above(store: UsageStore) -> None:
    store.insert([_rec(i, quality_score=q) for i, q in enumerate([None, 0.2, 0.5, 0.7, 0.9])])
    assert store.count_new_samples(None, 0.5) == 3
    assert store.count_new_samples(T0 + timedelta(minutes=3), 0.5) == 2
    assert store.count_new_samples(None, 0.0) == 4  # unscored is not quality 0


def test_selection_counts_split_candidates_by_filter(store: UsageStore) -> None:
    store.insert(
        [
            _rec(0, quality_score=0.9, user_feedback=1),
            _rec(1, quality_score=0.9, user_feedback=1, query="q0", response="r0"),  # duplicate
            _rec(2, quality_score=0.9, user_feedback=None),
            _rec(3, quality_score=0.9, user_feedback=-1),
            _rec(4, quality_score=0.3, user_feedback=1),
            _rec(5, quality_score=None, user_feedback=1),
        ]
    )
    counts = store.selection_counts(TrainingSelection(min_quality=0.7, min_feedback=1))
    assert (counts.total_candidates, counts.filtered_by_quality, counts.filtered_by_feedback) == (
        6,
        2,
        2,
    )
    assert (counts.accepted, counts.distinct_accepted) == (2, 1)


def test_deduplicate_keeps_the_best_record(store: UsageStore) -> None:
    _low, high, other = store.insert(
        [
            _rec(0, query="same", response="answer", quality_score=0.4),
            _rec(1, query="SAME ", response="answer", quality_score=0.8),
            _rec(2),
        ]
    )
    assert store.deduplicate(dry_run=True) == 1
    assert store.count_records(RecordQuery()) == 3
    assert store.deduplicate() == 1
    assert {r.id for r in store.iter_records(RecordQuery())} == {high, other}
    assert store.statistics().count == 2


def test_selection_since_admits_old_records_with_new_feedback(store: UsageStore) -> None:
    old, _recent = store.insert([_rec(0, quality_score=0.9), _rec(600, quality_score=0.9)])
    selection = TrainingSelection(since=T0 + timedelta(minutes=300), min_quality=0.7)
    assert store.selection_counts(selection).accepted == 1
    store.update_feedback(old, 1, None, T0 + timedelta(minutes=700))
    assert store.selection_counts(selection).accepted == 2
    assert len(list(store.iter_training_rows(selection))) == 2


def test_state_documents_round_trip(store: UsageStore) -> None:
    assert store.get_state("trigger") is None
    store.put_state("trigger", {"last_retrain": "2026-11-01T00:00:00Z", "n": 1}, at=T0)
    store.put_state("trigger", {"last_retrain": "2026-11-02T00:00:00Z", "n": 2}, at=T0)
    assert store.get_state("trigger") == {"last_retrain": "2026-11-02T00:00:00Z", "n": 2}


def test_model_counts_include_unfolded_rows(store: UsageStore) -> None:
    store.insert([_rec(i, model="a") for i in range(3)])
    store.insert([_rec(10, model="b")])
    assert store.model_counts() == {"a": 3, "b": 1}


def test_retention_removes_old_days_and_archives_them(store: UsageStore, tmp_path: Path) -> None:
    day = 24 * 60
    store.insert([_rec(d * day + 30, quality_score=0.5) for d in range(5)])  # Nov 1 .. Nov 5
    archive = tmp_path / "old.jsonl.gz"
    result = store.drop_before(T0 + timedelta(days=3), archive=archive)
    assert result["removed_records"] == 3 and result["archived_records"] == 3
    remaining = sorted(r.timestamp for r in store.iter_records(RecordQuery()))
    assert [t[:10] for t in remaining] == ["2026-11-04", "2026-11-05"]
    assert store.statistics().count == 2
    assert store.statistics(since=T0 - timedelta(days=1), until=T0 + timedelta(days=10)).count == 2
    with gzip.open(archive, "rt") as lines:
        archived = [json.loads(line) for line in lines]
    assert [a["timestamp"][:10] for a in archived] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert {"id", "query", "created_at"} <= set(archived[0])
    assert store.drop_before(T0 + timedelta(days=3))["removed_records"] == 0


def test_retention_never_deletes_a_record_it_did_not_archive(
    store_target: str, tmp_path: Path
) -> None:
    """Old-dated records keep arriving while retention runs: each one ends up either in
    the archive or still in the store, never deleted unarchived."""
    writer_store, store = open_store(store_target), open_store(store_target)
    writer_store.insert([_rec(m) for m in range(0, 3 * 24 * 60, 7)])  # three days of history
    written: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def keep_writing() -> None:
        minute = 0
        while not stop.is_set():
            try:  # a day dropped under this store must be created again, not fail
                written.extend(writer_store.insert([_rec(minute % (2 * 24 * 60) + 1)]))
            except Exception as exc:
                failures.append(exc)
            minute += 13

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.2)
        archive = tmp_path / "old.jsonl.gz"
        result = store.drop_before(T0 + timedelta(days=2), archive=archive)
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    with gzip.open(archive, "rt") as lines:
        archived = {json.loads(line)["id"] for line in lines}
    kept = {r.id for r in store.iter_records(RecordQuery())}
    assert result["archived_records"] >= result["removed_records"] > 0
    assert [i for i in written if i not in archived and i not in kept] == []
    assert failures == []
    writer_store.close()
    store.close()


def test_schema_version_is_recorded(store: UsageStore) -> None:
    assert store.schema_version() >= 1


def test_unscored_records_can_be_scored_once(store: UsageStore) -> None:
    ids = store.insert(
        [_rec(i, quality_score=None) for i in range(5)] + [_rec(9, quality_score=0.2)]
    )
    unscored = [record_id for record_id, _q, _r in store.iter_unscored()]
    assert sorted(unscored) == sorted(ids[:5])
    assert store.set_quality_scores([(i, 0.6) for i in [*unscored, ids[5]]]) == 5
    assert store.statistics().scored == 6
    assert store.statistics().quality_sum == pytest.approx(5 * 0.6 + 0.2)
    assert list(store.iter_unscored()) == []


def test_errors_are_counted_per_window_and_model(store: UsageStore) -> None:
    store.insert([_rec(i, is_error=i % 3 == 0, model="a" if i < 6 else "b") for i in range(9)])
    assert store.statistics().errors == 3
    assert store.statistics(model="a").errors == 2
    [first] = [r for r in store.iter_records(RecordQuery()) if r.query == "q0"]
    assert first.is_error is True


def test_selection_can_be_limited_to_one_model_and_expert(store: UsageStore) -> None:
    store.insert(
        [
            _rec(0, model="a", expert="asm", quality_score=0.9),
            _rec(1, model="a", expert="gfx", quality_score=0.9),
            _rec(2, model="b", expert="asm", quality_score=0.9),
        ]
    )
    for selection, expected in (
        (TrainingSelection(min_quality=0.5, model="a"), 2),
        (TrainingSelection(min_quality=0.5, model="a", expert="asm"), 1),
        (TrainingSelection(min_quality=0.5, model="a", since=T0 + timedelta(minutes=1)), 1),
    ):
        assert store.selection_counts(selection).total_candidates == expected
        assert store.count_training_samples(selection, cap=10) == expected
        assert len(list(store.iter_training_rows(selection))) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [("query", "a\x00b"), ("model", "m\x00"), ("token_count", 2**31), ("token_count", 2**63)],
)
def test_values_one_backend_cannot_store_are_refused_alike_on_both(
    store_target: str, field: str, value: Any
) -> None:
    """NUL characters and token counts past 32 bits: the library's own error, nothing
    written, on SQLite as on PostgreSQL (which cannot hold them)."""
    record = {"query": "q", "response": "r", "model": "m", field: value}
    with UsageLogger(store_target) as logger:
        with pytest.raises(InvalidBatchError) as caught:
            logger.log_many([{"query": "fine", "response": "r", "model": "m"}, record])
        assert (caught.value.index, caught.value.cause.field) == (1, field)
        with pytest.raises(InvalidFieldError):
            logger.log(**record)
        assert logger.store.model_counts() == {}


def test_records_with_and_without_ids_mix_in_any_order(store: UsageStore) -> None:
    """Generated ids come from a pool: a batch that needs none must take none."""
    first = store.insert([_rec(1)])  # fills the pool
    given = store.insert([_rec(2, id="given-1"), _rec(3, id="given-2")])
    mixed = store.insert([_rec(4), _rec(5, id="given-3")])
    assert given == ["given-1", "given-2"] and mixed[1] == "given-3"
    assert len({*first, *given, *mixed}) == 5


def test_log_many_takes_a_datetime_timestamp_as_log_does(store_target: str) -> None:
    """A mapping built in Python may carry a datetime, the type ``log()`` accepts."""
    at = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    with UsageLogger(db_path=store_target) as logger:
        (record_id,) = logger.log_many([{"query": "q", "response": "r", "model": "m",
                                         "timestamp": at.astimezone()}])  # fmt: skip
        stored = logger.store.get(record_id)
        assert stored is not None and stored.timestamp == "2026-11-20T14:00:00.000000Z"
        with pytest.raises(InvalidBatchError, match="timestamp must be a non-empty string"):
            logger.log_many([{"query": "q", "response": "r", "model": "m", "timestamp": 5}])
