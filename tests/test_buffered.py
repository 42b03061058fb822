"""The buffered logger: nothing dropped, nothing lost, bounded memory."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.buffered import (
    YIELD_EVERY,
    BufferedUsageLogger,
    BufferFullError,
    FlushTimeoutError,
    RecordsRejectedError,
)
from afs.continuous.errors import InvalidBatchError, InvalidFieldError


def test_flush_commits_everything_logged(logger: UsageLogger) -> None:
    with logger.buffered(batch_size=100) as buffered:
        ids = [buffered.log(f"q{i}", f"r{i}", "m", quality_score=0.5) for i in range(1050)]
        buffered.flush()
        assert buffered.pending == 0
        assert logger.get_statistics()["total"] == 1050
    assert len(set(ids)) == 1050
    assert {r.id for r in logger.get_records()} == set(ids)


def test_background_writer_commits_without_flush(logger: UsageLogger) -> None:
    buffered = logger.buffered(flush_interval_s=0.05)
    buffered.log("q", "r", "m")
    deadline = time.monotonic() + 5
    while logger.get_statistics()["total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logger.get_statistics()["total"] == 1
    buffered.close()


def test_invalid_input_raises_on_the_callers_thread(logger: UsageLogger) -> None:
    with logger.buffered() as buffered:
        with pytest.raises(InvalidFieldError):
            buffered.log("q", "r", "m", quality_score=2.0)
        assert buffered.pending == 0


def test_a_batch_checked_in_parts_is_queued_whole_or_not_at_all(logger: UsageLogger) -> None:
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(3 * YIELD_EVERY)]
    bad: list[dict[str, Any]] = [*rows[:-1], {"query": "q", "response": "r", "model": "m"}]
    bad[-1]["quality_score"] = 2.0
    with logger.buffered(batch_size=YIELD_EVERY) as buffered:
        buffered.log_many(rows)  # keeps the writer busy while the next batch is checked
        with pytest.raises(InvalidBatchError, match=f"record {len(bad) - 1}"):
            buffered.log_many(bad)
        ids = buffered.log_many(rows)
    assert len(ids) == len(rows)
    assert logger.get_statistics()["total"] == 2 * len(rows)


def test_feedback_for_a_queued_record_is_not_lost(logger: UsageLogger) -> None:
    with logger.buffered(flush_interval_s=60, batch_size=10_000) as buffered:
        record_id = buffered.log("q", "r", "m", quality_score=0.9)
        assert buffered.pending == 1
        assert buffered.record_feedback(record_id, 1) is True
    assert logger.get_statistics()["positive_feedback"] == 1


def _hold_write_lock(path: Path, seconds: float, ready: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_full_buffer_raises_when_asked_to_and_keeps_what_it_has(db_path: Path) -> None:
    with UsageLogger(db_path) as logger:
        ready = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(db_path, 1.0, ready))
        holder.start()
        ready.wait()
        buffered = logger.buffered(max_pending=5, on_full="raise", flush_interval_s=0.01)
        for i in range(5):
            buffered.log(f"q{i}", "r", "m")
        with pytest.raises(BufferFullError):
            buffered.log("one too many", "r", "m")
        holder.join()
        buffered.close()
        assert logger.get_statistics()["total"] == 5


def test_full_buffer_blocks_until_there_is_room(db_path: Path) -> None:
    with UsageLogger(db_path) as logger:
        ready = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(db_path, 0.5, ready))
        holder.start()
        ready.wait()
        with logger.buffered(max_pending=3, flush_interval_s=0.01) as buffered:
            started = time.monotonic()
            for i in range(10):
                buffered.log(f"q{i}", "r", "m")
            assert time.monotonic() - started > 0.2  # it had to wait for the lock holder
        holder.join()
        assert logger.get_statistics()["total"] == 10


def test_failed_commits_are_retried(db_path: Path) -> None:
    with UsageLogger(db_path) as logger:
        logger.store._busy_timeout_s = 0.05  # type: ignore[attr-defined]
        logger.store._conn.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
        ready = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(db_path, 0.6, ready))
        holder.start()
        ready.wait()
        buffered = logger.buffered(flush_interval_s=0.01)
        buffered.log("q", "r", "m")
        with pytest.raises(FlushTimeoutError):
            buffered.flush(timeout=0.2)
        holder.join()
        buffered.flush(timeout=10)
        assert buffered.retries >= 1 and buffered.last_error is not None
        buffered.close()
        assert logger.get_statistics()["total"] == 1


def test_refused_records_are_kept_and_reported(logger: UsageLogger) -> None:
    logger.log_many([{"id": "taken-id-000", "query": "q", "response": "r", "model": "m"}])
    buffered = BufferedUsageLogger(logger)
    buffered.log_many(
        [
            {"query": "fine", "response": "r", "model": "m"},
            {"id": "taken-id-000", "query": "dup", "response": "r", "model": "m"},
        ]
    )
    with pytest.raises(RecordsRejectedError):
        buffered.flush()
    [(record, error)] = buffered.rejected
    assert record.query == "dup"
    assert isinstance(error, InvalidFieldError) and error.field == "id"
    assert logger.get_statistics()["total"] == 2
    buffered.close()  # the rejection was reported once; closing does not raise it again


def test_generated_id_collision_renames_and_feedback_follows(db_path: Path) -> None:
    ids = iter(["SAMEIDSAMEID", "SAMEIDSAMEID", "OTHERIDOTHER"])
    with UsageLogger(db_path, id_factory=lambda: next(ids)) as logger:
        logger.log("first", "r", "m")
        with logger.buffered() as buffered:
            record_id = buffered.log("second", "r", "m")
            assert record_id == "SAMEIDSAMEID"
            buffered.flush()
            assert buffered.renamed == {"SAMEIDSAMEID": "OTHERIDOTHER"}
            assert buffered.record_feedback(record_id, 1)
        assert {r.query for r in logger.get_records(with_feedback_only=True)} == {"second"}
        assert logger.get_statistics()["total"] == 2


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="on_full"):
        BufferedUsageLogger(None, on_full="drop")  # type: ignore[arg-type]


def _refuse_poison(db_path: Path) -> None:
    """A database that refuses some records outright (a trigger): a refusal no check of
    ours foresees, as a constraint or policy in a real database would be."""
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON usage WHEN NEW.query = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
        )


def test_a_record_the_database_refuses_is_isolated_and_the_rest_written(
    logger: UsageLogger, db_path: Path
) -> None:
    _refuse_poison(db_path)
    buffered = BufferedUsageLogger(logger, batch_size=1000)
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(999)]
    rows.insert(500, {"query": "poison", "response": "r", "model": "m"})
    buffered.log_many(rows)
    with pytest.raises(RecordsRejectedError, match="refused by policy"):
        buffered.flush(timeout=30)
    [(record, error)] = buffered.rejected
    assert record.query == "poison" and "refused by policy" in str(error)
    assert logger.get_statistics()["total"] == 999
    buffered.close(timeout=30)


def test_one_rejection_does_not_poison_the_logger(logger: UsageLogger, db_path: Path) -> None:
    _refuse_poison(db_path)
    buffered = BufferedUsageLogger(logger)
    buffered.log("poison", "r", "m")
    with pytest.raises(RecordsRejectedError):
        buffered.flush(timeout=30)
    later = buffered.log("later", "r", "m")
    assert buffered.record_feedback(later, 1) is True  # no stale error, and it is stored
    buffered.flush(timeout=30)
    buffered.close(timeout=30)
    stored = logger.store.get(later)
    assert stored is not None and stored.user_feedback == 1


def test_records_are_written_when_the_program_exits_without_close(db_path: Path) -> None:
    script = (
        "import sys\n"
        "from afs.continuous import UsageLogger\n"
        "logger = UsageLogger(sys.argv[1])\n"
        "buffered = logger.buffered(flush_interval_s=60, batch_size=100_000)\n"
        "buffered.log_many({'query': f'q{i}', 'response': 'r', 'model': 'm'}"
        " for i in range(12_000))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True, timeout=120)
    with UsageLogger(db_path) as logger:
        assert logger.get_statistics()["total"] == 12_000
