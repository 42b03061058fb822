"""SQLite usage store: the embedded default.

Choices and why:
- WAL journal with ``synchronous=NORMAL``: readers never block the writer and a commit
  does not wait for an fsync (a record survives a process crash; a power cut may lose
  the last few hundred milliseconds). The original fsynced every record (~900/s).
- One writer connection per store, serialised by a lock, with ``BEGIN IMMEDIATE`` so a
  second process waits on SQLite's busy handler instead of failing with "database is
  locked". Streaming reads get their own short-lived connection, so a long export never
  holds the lock that ``log()`` needs.
- ``usage_rollup`` keeps additive statistics per (hour, model, expert). Inserts do not
  touch it (one statement per ``log()``, no extra page per commit); instead rows above
  a rowid watermark are *folded* into it every few hundred inserts, at the end of each
  batch, and by a reader that finds the unfolded tail long. Statistics read the rollup
  plus the short unfolded tail, so they are exact and cost the same at any size.
  Updates to folded rows adjust the rollup in the same transaction.
- Every statement is parameterised; the only text spliced into SQL is chosen from
  constant fragments in this file.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any

from afs.continuous.errors import (
    ContinuousError,
    InvalidFieldError,
    SchemaVersionError,
    StoreOpenError,
    StoreUnavailableError,
)
from afs.continuous.records import (
    RECORD_FIELDS,
    UsageRecord,
    compute_dedupe_hash,
    new_record_id,
    new_record_ids,
    record_values,
)
from afs.continuous.store.base import (
    IdFactory,
    RecordQuery,
    SelectionCounts,
    TrainingRow,
    TrainingSelection,
    UsageStatistics,
    log_latency,
    write_archive,
)
from afs.continuous.store.windows import plan_window
from afs.continuous.timeutil import format_timestamp, parse_timestamp

_BUSY_TIMEOUT_S = 60.0
_STREAM_BATCH = 1000
_MAX_ID_ATTEMPTS = 8
_IN_CHUNK = 500
_INSERT_CHUNK = 1000
_ID_POOL = 1000
#: Inserts through ``log()`` between folds, and the unfolded tail a reader tolerates.
_FOLD_EVERY = 256
_MAX_TAIL = 4096

RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
_INSERT = f"INSERT INTO usage ({RECORD_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"

_ROLLUP_COLUMNS = (
    "n, n_scored, quality_sum, quality_sq_sum, latency_sum, n_log_latency, "
    "log_latency_sum, log_latency_sq_sum, token_sum, n_feedback, n_positive, n_negative, "
    "n_errors"
)
_ROLLUP_SUMS = ", ".join(f"SUM({c})" for c in _ROLLUP_COLUMNS.split(", "))
_ROLLUP_ADD = "ON CONFLICT (bucket, model, expert) DO UPDATE SET " + ", ".join(
    f"{c} = {c} + excluded.{c}" for c in _ROLLUP_COLUMNS.split(", ")
)
# The same sufficient statistics computed from raw rows (partial buckets, rebuilds).
_RAW_AGGREGATES = (
    "COUNT(*), COUNT(quality_score), TOTAL(quality_score), "
    "TOTAL(quality_score * quality_score), TOTAL(latency_ms), "
    "COUNT(CASE WHEN latency_ms > 0 THEN 1 END), "
    "TOTAL(CASE WHEN latency_ms > 0 THEN ln(latency_ms) END), "
    "TOTAL(CASE WHEN latency_ms > 0 THEN ln(latency_ms) * ln(latency_ms) END), "
    "TOTAL(token_count), COUNT(user_feedback), "
    "TOTAL(user_feedback = 1), TOTAL(user_feedback = -1), TOTAL(is_error)"
)

_ROLLUP_UPSERT = (
    f"INSERT INTO usage_rollup (bucket, model, expert, {_ROLLUP_COLUMNS}) "
    f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) {_ROLLUP_ADD}"
)
_FOLD = (
    f"INSERT INTO usage_rollup (bucket, model, expert, {_ROLLUP_COLUMNS}) "
    f"SELECT substr(timestamp, 1, 13), model, coalesce(expert, ''), {_RAW_AGGREGATES} "
    f"FROM usage WHERE rowid > ? GROUP BY 1, 2, 3 {_ROLLUP_ADD}"
)

_SCHEMA_V1 = (
    """
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    model TEXT NOT NULL,
    expert TEXT,
    latency_ms REAL CHECK (latency_ms IS NULL OR latency_ms >= 0),
    token_count INTEGER CHECK (token_count IS NULL OR token_count >= 0),
    quality_score REAL DEFAULT 0.0
        CHECK (quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)),
    user_feedback INTEGER CHECK (user_feedback IS NULL OR user_feedback IN (-1, 0, 1)),
    feedback_text TEXT,
    context_hash TEXT,
    dedupe_hash TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    feedback_at TEXT
)""",
    """
CREATE TABLE IF NOT EXISTS usage_rollup (
    bucket TEXT NOT NULL,
    model TEXT NOT NULL,
    expert TEXT NOT NULL,
    n INTEGER NOT NULL,
    n_scored INTEGER NOT NULL,
    quality_sum REAL NOT NULL,
    quality_sq_sum REAL NOT NULL,
    latency_sum REAL NOT NULL,
    n_log_latency INTEGER NOT NULL,
    log_latency_sum REAL NOT NULL,
    log_latency_sq_sum REAL NOT NULL,
    token_sum INTEGER NOT NULL,
    n_feedback INTEGER NOT NULL,
    n_positive INTEGER NOT NULL,
    n_negative INTEGER NOT NULL,
    PRIMARY KEY (bucket, model, expert)
) WITHOUT ROWID""",
    """
CREATE TABLE IF NOT EXISTS usage_rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    folded_rowid INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO usage_rollup_state (id, folded_rowid) VALUES (1, 0)",
)

_INDEXES_V1 = (
    "CREATE INDEX IF NOT EXISTS idx_usage_timestamp_quality ON usage (timestamp, quality_score)",
    "CREATE INDEX IF NOT EXISTS idx_usage_feedback_at ON usage (feedback_at) "
    "WHERE feedback_at IS NOT NULL",
)


class StoreBusyError(StoreUnavailableError):
    """Another process held the database's write lock for longer than the busy timeout."""


def _bucket(timestamp: str) -> str:
    """The rollup bucket of a stored timestamp: its hour, ``YYYY-MM-DDTHH``."""
    return timestamp[:13]


def _why(exc: sqlite3.DatabaseError) -> str:
    """SQLite's reason, with what it most often means when it says little."""
    reason = str(exc)
    if reason == "file is not a database":
        return "the file is not an SQLite database"
    if reason == "unable to open database file":
        return "unable to open the file (is its folder writable?)"
    return reason


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id FROM usage WHERE id IN ({marks})", chunk)
        found.update(row[0] for row in rows)
    return found


def _insert_row(record: UsageRecord) -> tuple[Any, ...]:
    """Column values. ``feedback_at`` stays NULL: it marks feedback that came *after*
    logging; feedback logged with the record arrived at the record's timestamp."""
    values: tuple[Any, ...] = record_values(record)  # is_error: SQLite stores a bool as 1/0
    return values


def _from_row(row: Sequence[Any]) -> UsageRecord:
    record = UsageRecord(*row)
    record.is_error = bool(record.is_error)
    return record


def _rollup_vector(record: UsageRecord) -> list[float]:
    q = record.quality_score
    ll = log_latency(record.latency_ms)
    fb = record.user_feedback
    return [
        1,
        q is not None,
        q or 0.0,
        (q or 0.0) ** 2,
        record.latency_ms,
        ll is not None,
        ll or 0.0,
        (ll or 0.0) ** 2,
        record.token_count or 0,
        fb is not None,
        fb == 1,
        fb == -1,
        bool(record.is_error),
    ]


@dataclass(frozen=True)
class _Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


class SQLiteUsageStore:
    """Usage records in one SQLite file (see the module docstring for the design)."""

    def __init__(
        self,
        path: str | Path,
        *,
        id_factory: IdFactory = new_record_id,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path).expanduser()
        self._id_factory = id_factory
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._since_fold = 0
        self._id_pool: list[str] = []
        try:
            if self.path.is_dir():
                raise StoreOpenError(f"cannot open SQLite database {self.path}: it is a directory")
            blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                raise StoreOpenError(
                    f"cannot open SQLite database {self.path}: {blocking} is a file, not a folder"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
        except OSError as exc:
            raise StoreOpenError(
                f"cannot open SQLite database {self.path}: {exc.strerror or exc}"
            ) from exc
        except sqlite3.DatabaseError as exc:  # not a database, no permission, no space…
            raise StoreOpenError(f"cannot open SQLite database {self.path}: {_why(exc)}") from exc
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreOpenError(f"cannot open SQLite database {self.path}: {_why(exc)}") from exc

    # --- connections and transactions ---------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        _ensure_ln(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32768")
        return conn

    def _retry_busy(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, retrying while SQLite reports the database busy or locked.

        SQLite's busy handler covers most waits, but a few paths (switching to WAL,
        a checkpoint racing a commit) return SQLITE_BUSY at once; callers must never
        see that as an error while the deadline has not passed.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"{self.path}: database stayed locked for {self._busy_timeout_s:.0f}s"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._retry_busy(lambda: conn.execute("COMMIT"))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for a few short statements on the shared connection."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _stream(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Generator[Any]:
        """Rows of one query, read in batches on a connection of its own."""
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            _ensure_ln(conn)
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(_STREAM_BATCH):
                yield from rows
        finally:
            conn.close()

    def _scan_one(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        """The single row of an aggregate that may scan much of the table.

        It runs on a connection of its own, so it neither holds the writer's lock (a
        ``log()`` in another thread never waits for it) nor grows the writer's cache.
        """
        rows = self._stream(sql, params)
        try:
            return next(rows)
        finally:
            rows.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- schema -------------------------------------------------------------------

    def _migrate(self) -> None:
        migrations = (
            _Migration(1, "usage table, indexes and rollup", _migration_1),
            _Migration(2, "loop state", _migration_2),
            _Migration(3, "error flag", _migration_3),
        )
        latest = migrations[-1].version
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0
            if current > latest:
                raise SchemaVersionError(
                    f"{self.path} has schema version {current}; this afs-continuous knows "
                    f"up to {latest}. Upgrade afs-continuous."
                )
            for migration in migrations:
                if migration.version > current:
                    migration.apply(conn)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (migration.version, migration.name, format_timestamp(datetime.now())),
                    )

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    # --- writes -------------------------------------------------------------------

    def insert(
        self, records: Iterable[UsageRecord], *, reassignable: Sequence[bool] | None = None
    ) -> list[str]:
        """Write the records in one transaction, reading them in chunks as they come.

        ``records`` may be a lazy iterable that checks each record (an import reading a
        file): an exception from it rolls everything back, and only one chunk is held in
        memory at a time. Each chunk is written under a savepoint, so a generated id that
        collides is replaced and the chunk written again.
        """
        source = iter(records)
        flags = None if reassignable is None else iter(reassignable)
        head = list(islice(source, 2))
        if len(head) == 1:  # one statement in autocommit mode: the cheapest durable write
            (record,) = head
            free = not record.id if flags is None else next(flags)
            self._give_ids([record], [free])
            for _attempt in range(_MAX_ID_ATTEMPTS):
                try:
                    self._insert_one(record)
                    return [record.id]
                except sqlite3.IntegrityError as exc:
                    if "usage.id" not in str(exc):
                        raise
                    with self._read() as conn:
                        self._reassign_colliding_ids(conn, [record], [free])
            raise ContinuousError(f"could not find free record ids in {_MAX_ID_ATTEMPTS} attempts")
        ids: list[str] = []
        if not head:
            return ids
        pending = chain(head, source)
        with self._write() as conn:
            while chunk := list(islice(pending, _INSERT_CHUNK)):
                given = (
                    [not r.id for r in chunk] if flags is None else list(islice(flags, len(chunk)))
                )
                self._give_ids(chunk, given)
                self._insert_chunk(conn, chunk, given)
                ids.extend(r.id for r in chunk)
            _fold(conn)
        return ids

    def _give_ids(self, records: Sequence[UsageRecord], free: Sequence[bool]) -> None:
        missing = [r for r, f in zip(records, free, strict=True) if f and not r.id]
        for record, new_id in zip(missing, self._new_ids(len(missing)), strict=True):
            record.id = new_id

    def _insert_chunk(
        self, conn: sqlite3.Connection, chunk: Sequence[UsageRecord], free: Sequence[bool]
    ) -> None:
        for _attempt in range(_MAX_ID_ATTEMPTS):
            conn.execute("SAVEPOINT afs_chunk")
            try:
                conn.executemany(_INSERT, map(_insert_row, chunk))
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO afs_chunk")
                conn.execute("RELEASE afs_chunk")
                if "usage.id" not in str(exc):
                    raise
                self._reassign_colliding_ids(conn, chunk, free)
                continue
            conn.execute("RELEASE afs_chunk")
            return
        raise ContinuousError(f"could not find free record ids in {_MAX_ID_ATTEMPTS} attempts")

    def _insert_one(self, record: UsageRecord) -> None:
        """One statement in autocommit mode: the cheapest durable write SQLite offers."""
        with self._lock:
            conn = self._conn
            self._retry_busy(lambda: conn.execute(_INSERT, _insert_row(record)))
            self._since_fold += 1
            if self._since_fold < _FOLD_EVERY:
                return
        self.fold()

    def fold(self) -> None:
        """Fold rows inserted since the last fold into the rollup."""
        with self._write() as conn:
            _fold(conn)
            self._since_fold = 0

    def _new_ids(self, count: int) -> list[str]:
        """Ids drawn ahead a thousand at a time (one random read for all): a single
        ``log()`` would otherwise pay for its own."""
        if self._id_factory is not new_record_id:
            return [self._id_factory() for _ in range(count)]
        if count == 0:
            return []
        with self._lock:
            if len(self._id_pool) < count:
                self._id_pool.extend(new_record_ids(max(count, _ID_POOL)))
            taken = self._id_pool[-count:]
            del self._id_pool[-count:]
        return taken

    def _reassign_colliding_ids(
        self, conn: sqlite3.Connection, records: Sequence[UsageRecord], free: Sequence[bool]
    ) -> None:
        """Give new ids to generated records that collide; reject supplied duplicates."""
        taken = _existing_ids(conn, [r.id for r in records])
        seen: set[str] = set()
        for record, generated in zip(records, free, strict=True):
            collides = record.id in taken or record.id in seen
            if collides and generated:
                record.id = self._id_factory()
            elif collides:
                raise InvalidFieldError("id", record.id, "must be unique; a record has it already")
            seen.add(record.id)

    @staticmethod
    def _adjust_rollup(
        conn: sqlite3.Connection, rowid: int, before: UsageRecord, after: UsageRecord
    ) -> None:
        """Apply a change of a row to the rollup, if the row is folded in already."""
        if rowid > _folded_rowid(conn):
            return
        delta = [a - b for a, b in zip(_rollup_vector(after), _rollup_vector(before), strict=True)]
        key = (_bucket(before.timestamp), before.model, before.expert or "")
        conn.execute(_ROLLUP_UPSERT, (*key, *delta))

    def _update_one(
        self,
        record_id: str,
        change: Callable[[UsageRecord], None],
        sql: str,
        params: tuple[Any, ...],
    ) -> bool:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT rowid, {RECORD_COLUMNS} FROM usage WHERE id = ?", (record_id,)
            ).fetchone()
            if row is None:
                return False
            before = _from_row(row[1:])
            after = _from_row(row[1:])
            change(after)
            conn.execute(sql, (*params, record_id))
            self._adjust_rollup(conn, row[0], before, after)
            return True

    def update_feedback(
        self, record_id: str, feedback: int, feedback_text: str | None, at: datetime
    ) -> bool:
        def change(record: UsageRecord) -> None:
            record.user_feedback = feedback

        return self._update_one(
            record_id,
            change,
            "UPDATE usage SET user_feedback = ?, feedback_text = ?, feedback_at = ? WHERE id = ?",
            (feedback, feedback_text, format_timestamp(at)),
        )

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        def change(record: UsageRecord) -> None:
            record.quality_score = quality_score

        return self._update_one(
            record_id, change, "UPDATE usage SET quality_score = ? WHERE id = ?", (quality_score,)
        )

    def set_quality_scores(self, scores: Sequence[tuple[str, float]]) -> int:
        """Score records that have no score yet; already-scored ones are left alone."""
        updated = 0
        with self._write() as conn:
            for record_id, score in scores:
                row = conn.execute(
                    f"SELECT rowid, {RECORD_COLUMNS} FROM usage WHERE id = ? "
                    "AND quality_score IS NULL",
                    (record_id,),
                ).fetchone()
                if row is None:
                    continue
                before = _from_row(row[1:])
                after = _from_row(row[1:])
                after.quality_score = score
                conn.execute("UPDATE usage SET quality_score = ? WHERE id = ?", (score, record_id))
                self._adjust_rollup(conn, row[0], before, after)
                updated += 1
        return updated

    def deduplicate(self, *, dry_run: bool = False) -> int:
        """Remove all but the best record of each dedupe hash.

        The best is the highest quality score, then a record that has feedback, then
        the newest. The rollup is rebuilt in the same transaction.
        """
        ranked = (
            "SELECT rowid AS rid, ROW_NUMBER() OVER (PARTITION BY dedupe_hash "
            "ORDER BY quality_score DESC, user_feedback IS NOT NULL DESC, timestamp DESC) AS rn "
            "FROM usage WHERE dedupe_hash IS NOT NULL"
        )
        if dry_run:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT COUNT(*) - COUNT(DISTINCT dedupe_hash) FROM usage "
                    "WHERE dedupe_hash IS NOT NULL"
                ).fetchone()
                return int(row[0])
        with self._write() as conn:
            removed = conn.execute(
                f"DELETE FROM usage WHERE rowid IN (SELECT rid FROM ({ranked}) WHERE rn > 1)"
            ).rowcount
            if removed:
                _rebuild_rollup(conn)
            return int(removed)

    def drop_before(self, cutoff: datetime, *, archive: Path | None = None) -> dict[str, Any]:
        """Delete records older than ``cutoff`` (archiving them first when asked).

        SQLite has no partitions: this is a DELETE plus a rollup rebuild, for the few
        gigabytes an embedded store holds. See the Postgres store for dropping partitions.
        """
        bound = format_timestamp(cutoff)
        archived = 0
        # One write transaction holds the lock from reading to deleting: a record dated
        # before the cutoff that arrives meanwhile waits, and is not deleted unarchived.
        with self._write() as conn:
            if archive is not None:
                rows = conn.execute(
                    f"SELECT {RECORD_COLUMNS}, created_at FROM usage WHERE timestamp < ? "
                    "ORDER BY timestamp",
                    (bound,),
                )
                archived = write_archive(
                    archive,
                    (_from_row(row[:-1]).to_dict() | {"created_at": row[-1]} for row in rows),
                )
            removed = conn.execute("DELETE FROM usage WHERE timestamp < ?", (bound,)).rowcount
            if removed:
                _rebuild_rollup(conn)
        return {
            "dropped_partitions": [],
            "trimmed_partitions": [],
            "removed_records": removed,
            "archived_records": archived,
        }

    def put_state(self, key: str, value: dict[str, Any], *, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO loop_state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, json.dumps(value, sort_keys=True), format_timestamp(at)),
            )

    # --- reads --------------------------------------------------------------------

    def get_state(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM loop_state WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        value: dict[str, Any] = json.loads(row[0])
        return value

    def model_counts(self) -> dict[str, int]:
        """How many records each model has served, over all time."""
        with self._read() as conn:
            folded = _folded_rowid(conn)
            counts: dict[str, int] = {}
            for model, n in (
                conn.execute("SELECT model, SUM(n) FROM usage_rollup GROUP BY model").fetchall()
                + conn.execute(
                    "SELECT model, COUNT(*) FROM usage WHERE rowid > ? GROUP BY model", (folded,)
                ).fetchall()
            ):
                counts[model] = counts.get(model, 0) + int(n)
        return counts

    def get(self, record_id: str) -> UsageRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM usage WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else _from_row(row)

    def iter_records(self, query: RecordQuery) -> Iterator[UsageRecord]:
        where, params = _record_filter(query)
        order = "DESC" if query.newest_first else "ASC"
        sql = f"SELECT {RECORD_COLUMNS} FROM usage{where} ORDER BY timestamp {order}"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        for row in self._stream(sql, params):
            yield _from_row(row)

    def count_records(self, query: RecordQuery) -> int:
        where, params = _record_filter(query)
        sql = f"SELECT COUNT(*) FROM usage{where}"
        count = int(self._scan_one(sql, params)[0])
        return count if query.limit is None else min(count, query.limit)

    def statistics(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        expert: str | None = None,
    ) -> UsageStatistics:
        """Window statistics: folded whole hours from the rollup, the rest from rows.

        Rows are read for the partial hours at the window's edges (through the timestamp
        index) and for the unfolded tail (a rowid range, folded first if it grew long),
        so the price does not grow with history.
        """
        plan = plan_window(since, until)
        if plan.empty:
            return UsageStatistics()
        rollup: list[str] = []  # conditions selecting the buckets wholly inside the window
        params: list[Any] = []
        if not plan.use_buckets:
            rollup.append("0")
        if plan.first_bucket is not None:
            rollup.append("bucket >= ?")
            params.append(_bucket(format_timestamp(plan.first_bucket)))
        if plan.end_bucket is not None:
            rollup.append("bucket < ?")
            params.append(_bucket(format_timestamp(plan.end_bucket)))
        if model is not None:
            rollup.append("model = ?")
            params.append(model)
        if expert is not None:
            rollup.append("expert = ?")
            params.append(expert)
        where = f" WHERE {' AND '.join(rollup)}" if rollup else ""
        edges = [(format_timestamp(a), format_timestamp(b)) for a, b in plan.edges]
        lo = None if since is None else format_timestamp(since)
        hi = None if until is None else format_timestamp(until)

        with self._lock:
            if self._tail_length() > _MAX_TAIL:
                self.fold()
            with self._read() as conn:
                folded = _folded_rowid(conn)
                total = UsageStatistics.from_row(
                    conn.execute(
                        f"SELECT {_ROLLUP_SUMS} FROM usage_rollup{where}", params
                    ).fetchone()
                )
                for start, end in edges:  # folded rows at the edges
                    total += self._raw_statistics(
                        conn, start, end, model, expert, "rowid <= ?", folded
                    )
                # the unfolded tail, anywhere in the window
                total += self._raw_statistics(conn, lo, hi, model, expert, "rowid > ?", folded)
        return _integral(total)

    @staticmethod
    def _raw_statistics(
        conn: sqlite3.Connection,
        start: str | None,
        end: str | None,
        model: str | None,
        expert: str | None,
        rowid_condition: str,
        rowid: int,
    ) -> UsageStatistics:
        conditions = [rowid_condition]
        params: list[Any] = [rowid]
        for clause, value in (
            ("timestamp >= ?", start),
            ("timestamp < ?", end),
            ("model = ?", model),
            ("coalesce(expert, '') = ?", expert),
        ):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        sql = f"SELECT {_RAW_AGGREGATES} FROM usage WHERE {' AND '.join(conditions)}"
        return UsageStatistics.from_row(conn.execute(sql, params).fetchone())

    def _tail_length(self) -> int:
        with self._lock:
            conn = self._conn
            return _max_rowid(conn) - _folded_rowid(conn)

    def count_new_samples(self, since: datetime | None, min_quality: float) -> int:
        params: list[Any] = [min_quality]
        sql = "SELECT COUNT(*) FROM usage WHERE quality_score >= ?"
        if since is not None:
            sql += " AND timestamp >= ?"
            params.append(format_timestamp(since))
        else:
            sql += " AND timestamp >= ''"  # lets the planner use the covering index
        with self._lock:
            return int(self._conn.execute(sql, params).fetchone()[0])

    def selection_counts(self, selection: TrainingSelection) -> SelectionCounts:
        window, quality, feedback, params = _selection_conditions(selection)
        accepted = f"coalesce({quality}, 0) AND coalesce({feedback}, 0)"
        sql = (
            "SELECT COUNT(*), "
            f"TOTAL(NOT coalesce({quality}, 0)), "
            f"TOTAL(coalesce({quality}, 0) AND NOT coalesce({feedback}, 0)), "
            f"TOTAL({accepted}), "
            f"COUNT(DISTINCT CASE WHEN {accepted} THEN coalesce(dedupe_hash, id) END) "
            f"FROM usage WHERE {window}"
        )
        row = self._scan_one(sql, params)
        return SelectionCounts(*(int(v or 0) for v in row))

    def count_training_samples(self, selection: TrainingSelection, *, cap: int) -> int:
        """How many samples the selection yields (distinct ones with dedupe), up to ``cap``.

        Stopping at the cap keeps a trigger check cheap however much history qualifies.
        """
        window, quality, feedback, params = _selection_conditions(selection)
        key = "DISTINCT coalesce(dedupe_hash, id)" if selection.deduplicate else "1"
        params["cap"] = cap
        sql = (
            f"SELECT COUNT(*) FROM (SELECT {key} FROM usage "
            f"WHERE {window} AND {quality} AND {feedback} LIMIT :cap)"
        )
        return int(self._scan_one(sql, params)[0])

    def iter_training_rows(self, selection: TrainingSelection) -> Iterator[TrainingRow]:
        """Accepted records, oldest first; with dedupe, the best of each hash.

        Ranking runs over (rowid, hash, quality, time) only and the text columns are
        fetched by rowid afterwards, so the sort stays small however long the texts are.
        """
        window, quality, feedback, params = _selection_conditions(selection)
        accepted = (
            "SELECT rowid AS rid, timestamp, quality_score, coalesce(dedupe_hash, id) AS h "
            f"FROM usage WHERE {window} AND {quality} AND {feedback}"
        )
        if selection.deduplicate:
            chosen = (
                "SELECT rid, timestamp, quality_score FROM (SELECT rid, timestamp, quality_score, "
                "ROW_NUMBER() OVER (PARTITION BY h ORDER BY quality_score DESC, timestamp DESC) "
                f"AS rn FROM ({accepted})) WHERE rn = 1"
            )
        else:
            chosen = f"SELECT rid, timestamp, quality_score FROM ({accepted})"
        if selection.max_samples is not None:
            chosen += " ORDER BY quality_score DESC, timestamp DESC LIMIT :max_samples"
            params["max_samples"] = selection.max_samples
        sql = (
            "SELECT u.query, u.response, u.model, u.expert, u.quality_score, u.user_feedback, "
            f"u.dedupe_hash FROM ({chosen}) AS c JOIN usage AS u ON u.rowid = c.rid "
            "ORDER BY c.timestamp, c.rid"
        )
        for row in self._stream(sql, params):
            yield TrainingRow(*row)

    def iter_unscored(self) -> Iterator[tuple[str, str, str]]:
        for row in self._stream(
            "SELECT id, query, response FROM usage WHERE quality_score IS NULL", ()
        ):
            yield (row[0], row[1], row[2])


# --- helpers -------------------------------------------------------------------------


def _ensure_ln(conn: sqlite3.Connection) -> None:
    """SQLite builds without math functions get ``ln`` from Python (slower, same result)."""
    try:
        conn.execute("SELECT ln(1.0)")
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)


def _integral(stats: UsageStatistics) -> UsageStatistics:
    """Counts summed as REAL by SQLite's TOTAL come back as floats; make them ints."""
    return UsageStatistics(
        count=int(stats.count),
        scored=int(stats.scored),
        quality_sum=stats.quality_sum,
        quality_sq_sum=stats.quality_sq_sum,
        latency_sum=stats.latency_sum,
        log_latency_count=int(stats.log_latency_count),
        log_latency_sum=stats.log_latency_sum,
        log_latency_sq_sum=stats.log_latency_sq_sum,
        token_sum=int(stats.token_sum),
        with_feedback=int(stats.with_feedback),
        positive=int(stats.positive),
        negative=int(stats.negative),
        errors=int(stats.errors),
    )


def _record_filter(query: RecordQuery) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        conditions.append("timestamp >= ?")
        params.append(format_timestamp(query.since))
    if query.until is not None:
        conditions.append("timestamp < ?")
        params.append(format_timestamp(query.until))
    if query.model is not None:
        conditions.append("model = ?")
        params.append(query.model)
    if query.expert is not None:
        conditions.append("expert = ?")
        params.append(query.expert)
    if query.min_quality is not None:
        conditions.append("quality_score >= ?")
        params.append(query.min_quality)
    if query.with_feedback_only:
        conditions.append("user_feedback IS NOT NULL")
    if query.feedback_since is not None:
        conditions.append(
            "(feedback_at >= ? OR (feedback_at IS NULL AND user_feedback IS NOT NULL "
            "AND timestamp >= ?))"
        )
        params += [format_timestamp(query.feedback_since)] * 2
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return where, params


def _selection_conditions(
    selection: TrainingSelection,
) -> tuple[str, str, str, dict[str, Any]]:
    """SQL conditions (window, quality, feedback) and their parameters.

    The window admits records logged since ``since`` and older records whose feedback
    arrived since then: a thumbs-up given today makes yesterday's answer new training data.
    """
    params: dict[str, Any] = {}
    scope = ["1"]
    if selection.since is not None:
        scope.append("(timestamp >= :since OR feedback_at >= :since)")
        params["since"] = format_timestamp(selection.since)
    if selection.model is not None:
        scope.append("model = :model")
        params["model"] = selection.model
    if selection.expert is not None:
        scope.append("expert = :expert")
        params["expert"] = selection.expert
    window = " AND ".join(scope)
    quality = "1"
    if selection.min_quality > 0:
        quality = "(quality_score >= :min_quality)"
        params["min_quality"] = selection.min_quality
    feedback = "1"
    if selection.min_feedback is not None:
        feedback = "(user_feedback >= :min_feedback)"
        params["min_feedback"] = selection.min_feedback
    return window, quality, feedback, params


def _migration_1(conn: sqlite3.Connection) -> None:
    """Create the schema, or adopt a database written by the original implementation.

    The original's ``usage`` table has no ``feedback_at``, stores naive local-time
    timestamps and may lack dedupe hashes; those rows are brought to this format.
    """
    existed = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'"
    ).fetchone()
    for statement in _SCHEMA_V1:
        conn.execute(statement)
    if existed:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
        if "feedback_at" not in columns:
            conn.execute("ALTER TABLE usage ADD COLUMN feedback_at TEXT")
        _normalize_adopted_rows(conn)
    for statement in _INDEXES_V1:
        conn.execute(statement)
    # an adopted table's rows sit above the fold watermark (0): the first fold, after the
    # later migrations have shaped the rollup, takes them in


def _migration_2(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS loop_state ("
        "key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )


def _migration_3(conn: sqlite3.Connection) -> None:
    conn.execute(
        "ALTER TABLE usage ADD COLUMN is_error INTEGER NOT NULL DEFAULT 0 "
        "CHECK (is_error IN (0, 1))"
    )
    conn.execute("ALTER TABLE usage_rollup ADD COLUMN n_errors INTEGER NOT NULL DEFAULT 0")


def _normalize_adopted_rows(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT rowid, timestamp, query, response, dedupe_hash FROM usage "
        "WHERE timestamp NOT LIKE '____-__-__T__:__:__.______Z' OR dedupe_hash IS NULL"
    ).fetchall()
    updates = []
    for rowid, timestamp, query, response, dedupe_hash in rows:
        try:
            stamp = format_timestamp(parse_timestamp(timestamp))
        except InvalidFieldError:
            stamp = timestamp  # leave what we cannot read; it still sorts as text
        updates.append((stamp, dedupe_hash or compute_dedupe_hash(query, response), rowid))
    conn.executemany("UPDATE usage SET timestamp = ?, dedupe_hash = ? WHERE rowid = ?", updates)


def _folded_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT folded_rowid FROM usage_rollup_state").fetchone()[0])


def _max_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(MAX(rowid), 0) FROM usage").fetchone()[0])


def _fold(conn: sqlite3.Connection) -> None:
    """Add rows above the watermark to the rollup and raise the watermark (in a write txn).

    Rowids only grow while no row is deleted; every delete rebuilds the rollup and resets
    the watermark, so a reused rowid can never hide below it.
    """
    folded, top = _folded_rowid(conn), _max_rowid(conn)
    if top > folded:
        conn.execute(_FOLD, (folded,))
        conn.execute("UPDATE usage_rollup_state SET folded_rowid = ?", (top,))


def _rebuild_rollup(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM usage_rollup")
    conn.execute("UPDATE usage_rollup_state SET folded_rowid = 0")
    _fold(conn)
