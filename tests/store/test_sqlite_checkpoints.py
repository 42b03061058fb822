"""SQLite's write-ahead log copied into the database by a thread of the store's own."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from afs.continuous.records import UsageRecord, normalize_record
from afs.continuous.store import RecordQuery
from afs.continuous.store.sqlite import SQLiteUsageStore
from tests.store.test_store_records import T0

#: commits of one record each: about three pages of log apiece (2,700), far past the
#: 1,000 pages at which SQLite copies the log itself
COMMITS = 900


def _one(i: int) -> list[UsageRecord]:
    record = UsageRecord(id="", timestamp=T0.isoformat(), query=f"q{i}", response="r", model="m")
    return [normalize_record(record, now=T0)]


def _log_frames(path: Path) -> int:
    """Frames in the log now (read off a checkpoint from another connection)."""
    with sqlite3.connect(path) as conn:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


def _store_filled(tmp_path: Path, every_s: float) -> SQLiteUsageStore:
    store = SQLiteUsageStore(tmp_path / "usage.db")
    store.checkpoint_in_background(every_s=every_s)
    for i in range(COMMITS):
        store.insert(_one(i))
    return store


def test_commits_leave_the_log_to_the_thread(tmp_path: Path) -> None:
    store = _store_filled(tmp_path, every_s=3600)  # no round of the thread comes
    try:
        assert _log_frames(store.path) > 2000  # no commit copied it (SQLite would at 1,000)
    finally:
        store.close()


def test_the_thread_copies_the_log_which_then_starts_again(tmp_path: Path) -> None:
    store = _store_filled(tmp_path, every_s=0.05)
    try:
        time.sleep(0.3)  # a few rounds
        store.insert(_one(COMMITS))  # the first writer after a full copy begins it again
        assert _log_frames(store.path) < 50
        assert store.count_records(RecordQuery()) == COMMITS + 1
    finally:
        store.close()


def test_the_log_stays_bounded_under_steady_writes(tmp_path: Path) -> None:
    """A checkpoint that waits for nobody never finds the log wholly copied while
    writes go on, and the log starts again only once it is: it grew without end."""
    store = SQLiteUsageStore(tmp_path / "usage.db")
    store.checkpoint_in_background(every_s=0.02, restart_pages=500)  # 2 MiB
    stop = threading.Event()

    def keep_writing() -> None:
        batch = 0
        while not stop.is_set():
            store.insert([_one(batch * 200 + i)[0] for i in range(200)])
            batch += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        wal = tmp_path / "usage.db-wal"
        for _ in range(30):  # 3 s of writes: tens of MiB of log if never restarted
            time.sleep(0.1)
            assert wal.stat().st_size < 8 * 2**20
    finally:
        stop.set()
        writer.join()
        store.close()


def test_close_stops_the_thread(tmp_path: Path) -> None:
    store = SQLiteUsageStore(tmp_path / "usage.db")
    store.checkpoint_in_background(every_s=0.05)
    assert store._checkpoints is not None
    thread = store._checkpoints[1]
    store.close()
    assert not thread.is_alive()
