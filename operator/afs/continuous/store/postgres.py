"""PostgreSQL usage store: one shared database for model servers and the operator.

Choices and why:
- psycopg 3 with a connection pool; ``COPY`` for every batch of inserts; server-side
  cursors for streaming reads; every statement parameterised (identifiers only from
  constants in this file, or built with ``psycopg.sql``).
- ``usage`` is range-partitioned on ``timestamp``: a partition per day for recent days
  (created ahead, and on demand for the days a batch touches), per month for old days a
  backfill brings (see ``store/partitions.py``), so retention drops whole partitions.
- ``usage_rollup`` (additive statistics per UTC hour, model and expert) is kept current by
  statement-level triggers with transition tables on insert, update and delete, so it is
  right whoever writes the table, and window statistics cost the same at any size.
- Constraints in the database back the checks made in Python.
- Writes survive a restarting server: a batch that fails on a broken connection is
  retried, and on a retry the ids already committed (the commit may have happened before
  the connection dropped) are left out, so every record arrives exactly once.
- Migrations are versioned and run under an advisory lock, so two processes starting at
  once apply them once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from afs.continuous.errors import (
    ContinuousError,
    InvalidFieldError,
    SchemaVersionError,
    StoreUnavailableError,
    redact_secrets,
)
from afs.continuous.records import (
    RECORD_FIELDS,
    UsageRecord,
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
    write_archive,
)
from afs.continuous.store.partitions import (
    Partition,
    parse_partition_name,
    partition_for,
    retention_plan,
)
from afs.continuous.store.windows import plan_window
from afs.continuous.timeutil import format_timestamp

log = logging.getLogger(__name__)

T = TypeVar("T")

_ADVISORY_KEY = 0x0AF5C0DE  # migrations and partition creation
_PARTITIONS_AHEAD_DAYS = 7
_RETRY_SECONDS = 120.0
_STREAM_BATCH = 2000
_MAX_ID_ATTEMPTS = 8

RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
_COPY = f"COPY usage ({RECORD_COLUMNS}) FROM STDIN"

_ROLLUP_COLUMNS = (
    "n",
    "n_scored",
    "quality_sum",
    "quality_sq_sum",
    "latency_sum",
    "n_log_latency",
    "log_latency_sum",
    "log_latency_sq_sum",
    "token_sum",
    "n_feedback",
    "n_positive",
    "n_negative",
    "n_errors",
)
_RAW_AGGREGATES = (
    "count(*), count(quality_score), coalesce(sum(quality_score), 0), "
    "coalesce(sum(quality_score * quality_score), 0), coalesce(sum(latency_ms), 0), "
    "count(*) FILTER (WHERE latency_ms > 0), "
    "coalesce(sum(ln(latency_ms)) FILTER (WHERE latency_ms > 0), 0), "
    "coalesce(sum(ln(latency_ms) ^ 2) FILTER (WHERE latency_ms > 0), 0), "
    "coalesce(sum(token_count), 0), count(user_feedback), "
    "count(*) FILTER (WHERE user_feedback = 1), count(*) FILTER (WHERE user_feedback = -1), "
    "count(*) FILTER (WHERE is_error)"
)
_ROLLUP_SUMS = ", ".join(f"coalesce(sum({c}), 0)" for c in _ROLLUP_COLUMNS)


def _rollup_function(name: str, source: str, sign: str) -> str:
    """A trigger function adding (sign '+') or subtracting ('-') a transition table."""
    values = ", ".join(f"{sign}{expr.strip()}" for expr in _split_aggregates(_RAW_AGGREGATES))
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in _ROLLUP_COLUMNS)
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_rollup AS r (bucket, model, expert, {", ".join(_ROLLUP_COLUMNS)})
    SELECT date_trunc('hour', timestamp AT TIME ZONE 'UTC'), model, coalesce(expert, ''),
           {values}
    FROM {source} GROUP BY 1, 2, 3
    ON CONFLICT (bucket, model, expert) DO UPDATE SET {updates};
    RETURN NULL;
END $$"""


def _split_aggregates(text: str) -> list[str]:
    """Split the aggregate list at top-level commas."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


_MIGRATION_1 = [
    """
CREATE TABLE IF NOT EXISTS usage (
    id text NOT NULL,
    timestamp timestamptz NOT NULL,
    query text NOT NULL,
    response text NOT NULL,
    model text NOT NULL,
    expert text,
    latency_ms double precision CHECK (latency_ms IS NULL OR latency_ms >= 0),
    token_count integer CHECK (token_count IS NULL OR token_count >= 0),
    quality_score double precision DEFAULT 0.0
        CHECK (quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)),
    user_feedback smallint CHECK (user_feedback IS NULL OR user_feedback IN (-1, 0, 1)),
    feedback_text text,
    context_hash text,
    dedupe_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    feedback_at timestamptz,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp)""",
    "CREATE INDEX IF NOT EXISTS usage_model_time ON usage (model, timestamp)",
    "CREATE INDEX IF NOT EXISTS usage_time_quality ON usage (timestamp, quality_score)",
    "CREATE INDEX IF NOT EXISTS usage_feedback_at ON usage (feedback_at) "
    "WHERE feedback_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS usage_dedupe ON usage (dedupe_hash)",
    """
CREATE TABLE IF NOT EXISTS usage_rollup (
    bucket timestamp NOT NULL,
    model text NOT NULL,
    expert text NOT NULL,
    n bigint NOT NULL,
    n_scored bigint NOT NULL,
    quality_sum double precision NOT NULL,
    quality_sq_sum double precision NOT NULL,
    latency_sum double precision NOT NULL,
    n_log_latency bigint NOT NULL,
    log_latency_sum double precision NOT NULL,
    log_latency_sq_sum double precision NOT NULL,
    token_sum bigint NOT NULL,
    n_feedback bigint NOT NULL,
    n_positive bigint NOT NULL,
    n_negative bigint NOT NULL,
    PRIMARY KEY (bucket, model, expert)
)""",
    _rollup_function("afs_rollup_add_new", "new_rows", ""),
    _rollup_function("afs_rollup_sub_old", "old_rows", "-"),
    "DROP TRIGGER IF EXISTS usage_rollup_insert ON usage",
    "CREATE TRIGGER usage_rollup_insert AFTER INSERT ON usage "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_add_new()",
    "DROP TRIGGER IF EXISTS usage_rollup_update_old ON usage",
    "CREATE TRIGGER usage_rollup_update_old AFTER UPDATE ON usage "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_sub_old()",
    "DROP TRIGGER IF EXISTS usage_rollup_update_new ON usage",
    "CREATE TRIGGER usage_rollup_update_new AFTER UPDATE ON usage "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_add_new()",
    "DROP TRIGGER IF EXISTS usage_rollup_delete ON usage",
    "CREATE TRIGGER usage_rollup_delete AFTER DELETE ON usage "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_sub_old()",
    """
CREATE TABLE IF NOT EXISTS loop_state (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL
)""",
]
_MIGRATION_2 = [
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS is_error boolean NOT NULL DEFAULT false",
    "ALTER TABLE usage_rollup ADD COLUMN IF NOT EXISTS n_errors bigint NOT NULL DEFAULT 0",
    _rollup_function("afs_rollup_add_new", "new_rows", ""),
    _rollup_function("afs_rollup_sub_old", "old_rows", "-"),
]
MIGRATIONS: tuple[tuple[int, str, list[str]], ...] = (
    (1, "partitioned usage table, indexes, rollup triggers, loop state", _MIGRATION_1),
    (2, "error flag", _MIGRATION_2),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    # the loop's queries are short; starting parallel workers costs more than it saves
    conn.execute("SET max_parallel_workers_per_gather = 0")
    conn.commit()


def _record(row: Sequence[Any]) -> UsageRecord:
    values = list(row)
    values[1] = format_timestamp(values[1])
    return UsageRecord(*values)


class PostgresUsageStore:
    """Usage records in PostgreSQL (see the module docstring for the design)."""

    def __init__(
        self,
        url: str,
        *,
        id_factory: IdFactory = new_record_id,
        migrate: bool = True,
        pool_size: int = 4,
        retry_seconds: float = _RETRY_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.url = url
        self._id_factory = id_factory
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._known_days: set[date] = set()
        self._id_pool: list[str] = []
        self._partition_lock = threading.Lock()
        _probe(url)
        self.pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            configure=_configure,
            open=False,
            timeout=min(30.0, retry_seconds),  # waiting for a connection counts too
            name="afs-continuous",
        )
        try:
            self.pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreUnavailableError(f"cannot connect to PostgreSQL at {_safe(url)}") from exc
        try:
            if migrate:
                self.migrate()
            else:
                self._check_schema()
        except BaseException:
            self.pool.close()
            raise

    # --- plumbing -----------------------------------------------------------------

    def _retrying(self, action: Callable[[psycopg.Connection[TupleRow], bool], T]) -> T:
        """Run ``action(conn, retried)`` in a transaction, again on a lost connection."""
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.05
        retried = False
        while True:
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return action(conn, retried)
            except errors.OutOfMemory as exc:  # the lock table: retrying cannot help
                raise ContinuousError(
                    f"PostgreSQL at {_safe(self.url)} ran out of shared memory: "
                    f"{_first_line(exc)}. One transaction locked more tables than the "
                    "server's lock table holds (max_locks_per_transaction per connection); "
                    "raise that setting or write fewer days at once"
                ) from exc
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # a closed pool (the store was closed, e.g. at shutdown) never comes back
                stop = isinstance(exc, errors.QueryCanceled | PoolClosed)
                if stop or time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"PostgreSQL at {_safe(self.url)} unavailable: {redact_secrets(str(exc))}"
                    ) from exc
                log.warning("PostgreSQL connection lost (%s); retrying", _first_line(exc))
                retried = True
                self.pool.check()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self.pool.close()

    # --- schema -------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations (idempotent, one process at a time); return the version."""

        def apply(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS afs_schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
            )
            row = conn.execute("SELECT max(version) FROM afs_schema_migrations").fetchone()
            current = int(row[0] or 0) if row else 0
            if current > LATEST_VERSION:
                raise SchemaVersionError(
                    f"database schema version {current} is newer than this afs-continuous "
                    f"({LATEST_VERSION}). Upgrade afs-continuous."
                )
            for version, name, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO afs_schema_migrations VALUES (%s, %s, now())",
                        (version, name),
                    )
            today = self._clock().date()
            for offset in range(-1, _PARTITIONS_AHEAD_DAYS + 1):
                day = today + timedelta(days=offset)
                self._create_partition(conn, Partition(day, day + timedelta(days=1)))
            return LATEST_VERSION

        version = self._retrying(apply)
        self._known_days.clear()
        return version

    def schema_version(self) -> int:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            row = conn.execute("SELECT max(version) FROM afs_schema_migrations").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._retrying(read)

    def _check_schema(self) -> None:
        try:
            version = self.schema_version()
        except errors.UndefinedTable:
            version = 0
        if version < LATEST_VERSION:
            raise SchemaVersionError(
                f"database at {_safe(self.url)} has schema version {version}; run "
                "`afs-continuous db migrate` (automatic migration is disabled)"
            )

    def _create_partition(self, conn: psycopg.Connection[TupleRow], partition: Partition) -> None:
        start, end = partition.bounds()
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF usage FOR VALUES FROM ({}) TO ({})"
            ).format(sql.Identifier(partition.name), sql.Literal(start), sql.Literal(end))
        )

    def _ensure_partitions(self, conn: psycopg.Connection[TupleRow], days: set[date]) -> None:
        """Create the partitions a batch needs (rarely: the next days exist ahead). Under
        the advisory lock, so two writers never shape overlapping month partitions."""
        with self._partition_lock:
            missing = days - self._known_days
        if not missing:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        existing = _read_partitions(conn)
        today = self._clock().astimezone(UTC).date()
        for day in sorted(missing):
            if not any(p.covers(day) for p in existing):
                partition = partition_for(day, today=today, existing=existing)
                self._create_partition(conn, partition)
                existing.append(partition)
        with self._partition_lock:
            self._known_days |= missing

    # --- writes -------------------------------------------------------------------

    def insert(
        self, records: Iterable[UsageRecord], *, reassignable: Sequence[bool] | None = None
    ) -> list[str]:
        """COPY the records in one transaction, validating them as they stream.

        ``records`` may be a lazy iterable: the first attempt streams it into COPY, so the
        caller's checks overlap the server's work; an exception from it aborts the COPY
        and nothing is written. A retry (lost connection, a day with no partition yet, a
        generated id that collided) replays what was read and reads the rest.
        """
        batch = _Batch(records, reassignable, self._new_id)
        for _attempt in range(_MAX_ID_ATTEMPTS):
            try:
                self._retrying(lambda conn, retried: self._copy(conn, batch, retried))
                return [r.id for r in batch.records]
            except errors.UniqueViolation:
                self._reassign(batch)
            except errors.CheckViolation as exc:
                if "no partition" not in str(exc):
                    raise
                days = {datetime.fromisoformat(r.timestamp).date() for r in batch.drain()}
                with self._partition_lock:  # known here, but dropped by another (retention)
                    self._known_days -= days
                self._retrying(partial(_ensure_partitions_for, self, days))
        raise ContinuousError(f"could not find free record ids in {_MAX_ID_ATTEMPTS} attempts")

    def _new_id(self) -> str:
        if self._id_factory is not new_record_id:
            return self._id_factory()
        if not self._id_pool:
            self._id_pool = new_record_ids(1000)
        return self._id_pool.pop()

    def _copy(self, conn: psycopg.Connection[TupleRow], batch: _Batch, retried: bool) -> None:
        pending: Iterable[UsageRecord] = batch
        if retried:  # the last attempt may have committed before the connection dropped
            records = batch.drain()
            done = {
                row[0]
                for row in conn.execute(
                    "SELECT id FROM usage WHERE id = ANY(%s)", ([r.id for r in records],)
                ).fetchall()
            }
            pending = [r for r in records if r.id not in done]
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            write = copy.write_row
            for r in pending:
                write(record_values(r))
        supplied = [r.id for r, free in zip(batch.records, batch.flags, strict=True) if not free]
        if supplied:
            twice = conn.execute(
                "SELECT id FROM usage WHERE id = ANY(%s) GROUP BY id HAVING count(*) > 1 LIMIT 1",
                (supplied,),
            ).fetchone()
            if twice is not None:  # raising here rolls the whole batch back
                raise InvalidFieldError("id", twice[0], "must be unique; a record has it already")

    def _reassign(self, batch: _Batch) -> None:
        records = batch.drain()
        ids = [r.id for r in records]

        def taken(conn: psycopg.Connection[TupleRow], retried: bool) -> set[str]:
            rows = conn.execute("SELECT id FROM usage WHERE id = ANY(%s)", (ids,)).fetchall()
            return {row[0] for row in rows}

        existing = self._retrying(taken)
        seen: set[str] = set()  # two records of this batch may share a generated id
        for record, free in zip(records, batch.flags, strict=True):
            if record.id in existing or record.id in seen:
                if not free:
                    raise InvalidFieldError(
                        "id", record.id, "must be unique; a record has it already"
                    )
                record.id = self._id_factory()
            seen.add(record.id)

    def update_feedback(
        self, record_id: str, feedback: int, feedback_text: str | None, at: datetime
    ) -> bool:
        def update(conn: psycopg.Connection[TupleRow], retried: bool) -> bool:
            cur = conn.execute(
                "UPDATE usage SET user_feedback = %s, feedback_text = %s, feedback_at = %s "
                "WHERE id = %s",
                (feedback, feedback_text, at, record_id),
            )
            return cur.rowcount > 0

        return self._retrying(update)

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        def update(conn: psycopg.Connection[TupleRow], retried: bool) -> bool:
            cur = conn.execute(
                "UPDATE usage SET quality_score = %s WHERE id = %s", (quality_score, record_id)
            )
            return cur.rowcount > 0

        return self._retrying(update)

    def set_quality_scores(self, scores: Sequence[tuple[str, float]]) -> int:
        if not scores:
            return 0

        def update(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            cur = conn.execute(
                "UPDATE usage AS u SET quality_score = s.score "
                "FROM unnest(%s::text[], %s::double precision[]) AS s(id, score) "
                "WHERE u.id = s.id AND u.quality_score IS NULL",
                ([i for i, _ in scores], [s for _, s in scores]),
            )
            return cur.rowcount

        return self._retrying(update)

    def deduplicate(self, *, dry_run: bool = False) -> int:
        def run(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            if dry_run:
                row = conn.execute(
                    "SELECT count(*) - count(DISTINCT dedupe_hash) FROM usage "
                    "WHERE dedupe_hash IS NOT NULL"
                ).fetchone()
                return int(row[0]) if row else 0
            cur = conn.execute(
                "DELETE FROM usage u USING (SELECT id, timestamp, row_number() OVER ("
                "PARTITION BY dedupe_hash ORDER BY quality_score DESC NULLS LAST, "
                "(user_feedback IS NOT NULL) DESC, timestamp DESC) AS rn FROM usage "
                "WHERE dedupe_hash IS NOT NULL) d "
                "WHERE d.rn > 1 AND u.id = d.id AND u.timestamp = d.timestamp"
            )
            return cur.rowcount

        return self._retrying(run)

    def put_state(self, key: str, value: dict[str, Any], *, at: datetime) -> None:
        def put(conn: psycopg.Connection[TupleRow], retried: bool) -> None:
            conn.execute(
                "INSERT INTO loop_state (key, value, updated_at) VALUES (%s, %s::jsonb, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, json.dumps(value, sort_keys=True), at),
            )

        self._retrying(put)

    # --- reads --------------------------------------------------------------------

    def get_state(self, key: str) -> dict[str, Any] | None:
        def get(conn: psycopg.Connection[TupleRow], retried: bool) -> dict[str, Any] | None:
            row = conn.execute("SELECT value FROM loop_state WHERE key = %s", (key,)).fetchone()
            return None if row is None else dict(row[0])

        return self._retrying(get)

    def get(self, record_id: str) -> UsageRecord | None:
        def get(conn: psycopg.Connection[TupleRow], retried: bool) -> UsageRecord | None:
            row = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM usage WHERE id = %s LIMIT 1",
                (record_id,),
            ).fetchone()
            return None if row is None else _record(row)

        return self._retrying(get)

    def _stream(self, query: sql.Composable | str, params: Any) -> Iterator[TupleRow]:
        """Rows of one query through a server-side cursor on a pooled connection."""
        with (
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="afs_stream") as cur,
        ):
            cur.itersize = _STREAM_BATCH
            cur.execute(query, params)  # type: ignore[arg-type]
            yield from cur

    def iter_records(self, query: RecordQuery) -> Iterator[UsageRecord]:
        where, params = _record_filter(query)
        order = "DESC" if query.newest_first else "ASC"
        text = f"SELECT {RECORD_COLUMNS} FROM usage{where} ORDER BY timestamp {order}, id {order}"
        if query.limit is not None:
            text += " LIMIT %(limit)s"
            params["limit"] = query.limit
        for row in self._stream(text, params):
            yield _record(row)

    def _one(self, query: str, params: Any) -> TupleRow:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> TupleRow:
            # prepared at once: planning over every partition is the costly part
            row = conn.execute(query, params, prepare=True).fetchone()
            assert row is not None
            return row

        return self._retrying(read)

    def count_records(self, query: RecordQuery) -> int:
        where, params = _record_filter(query)
        count = int(self._one(f"SELECT count(*) FROM usage{where}", params)[0])
        return count if query.limit is None else min(count, query.limit)

    def statistics(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        expert: str | None = None,
    ) -> UsageStatistics:
        plan = plan_window(since, until)
        if plan.empty:
            return UsageStatistics()
        rollup = ["true" if plan.use_buckets else "false"]
        params: dict[str, Any] = {"model": model, "expert": expert}
        if plan.first_bucket is not None:
            rollup.append("bucket >= %(first)s")
            params["first"] = plan.first_bucket.replace(tzinfo=None)
        if plan.end_bucket is not None:
            rollup.append("bucket < %(end)s")
            params["end"] = plan.end_bucket.replace(tzinfo=None)
        if model is not None:
            rollup.append("model = %(model)s")
        if expert is not None:
            rollup.append("expert = %(expert)s")
        parts = [f"SELECT {_ROLLUP_SUMS} FROM usage_rollup WHERE {' AND '.join(rollup)}"]
        for index, (start, end) in enumerate(plan.edges):
            params[f"s{index}"], params[f"e{index}"] = start, end
            conditions = [f"timestamp >= %(s{index})s", f"timestamp < %(e{index})s"]
            if model is not None:
                conditions.append("model = %(model)s")
            if expert is not None:
                conditions.append("coalesce(expert, '') = %(expert)s")
            parts.append(f"SELECT {_RAW_AGGREGATES} FROM usage WHERE {' AND '.join(conditions)}")

        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> UsageStatistics:
            total = UsageStatistics()
            for part in parts:
                row = conn.execute(part, params, prepare=True).fetchone()
                assert row is not None
                total += UsageStatistics.from_row(row)
            return total

        stats = self._retrying(read)
        return _integral(stats)

    def count_new_samples(self, since: datetime | None, min_quality: float) -> int:
        text = "SELECT count(*) FROM usage WHERE quality_score >= %(q)s"
        params: dict[str, Any] = {"q": min_quality}
        if since is not None:
            text += " AND timestamp >= %(since)s"
            params["since"] = since
        return int(self._one(text, params)[0])

    def selection_counts(self, selection: TrainingSelection) -> SelectionCounts:
        window, quality, feedback, params = _selection_conditions(selection)
        accepted = f"({quality} AND {feedback})"
        text = (
            f"SELECT count(*), count(*) FILTER (WHERE NOT coalesce({quality}, false)), "
            f"count(*) FILTER (WHERE coalesce({quality}, false) "
            f"AND NOT coalesce({feedback}, false)), "
            f"count(*) FILTER (WHERE coalesce({accepted}, false)), "
            f"count(DISTINCT coalesce(dedupe_hash, id)) FILTER (WHERE coalesce({accepted}, false)) "
            f"FROM {window}"
        )
        row = self._one(text, params)
        return SelectionCounts(*(int(v or 0) for v in row))

    def count_training_samples(self, selection: TrainingSelection, *, cap: int) -> int:
        """Distinct accepted samples, counted no further than ``cap``.

        ``DISTINCT … LIMIT`` would hash every qualifying row before limiting, so the rows
        are limited first (to twice the cap); only when that many rows hold fewer than
        ``cap`` distinct samples is the exact count taken over all of them.
        """
        window, quality, feedback, params = _selection_conditions(selection)
        where = f"WHERE {quality} AND {feedback}"
        params["rows"] = 2 * cap
        row = self._one(
            "SELECT count(*), count(DISTINCT h) FROM (SELECT coalesce(dedupe_hash, id) AS h "
            f"FROM {window} {where} LIMIT %(rows)s) AS s",
            params,
        )
        scanned, distinct = int(row[0]), int(row[1])
        if not selection.deduplicate:
            return min(scanned, cap)
        if distinct >= cap or scanned < 2 * cap:
            return min(distinct, cap)
        exact = self._one(
            f"SELECT count(DISTINCT coalesce(dedupe_hash, id)) FROM {window} {where}", params
        )
        return min(int(exact[0]), cap)

    def iter_training_rows(self, selection: TrainingSelection) -> Iterator[TrainingRow]:
        window, quality, feedback, params = _selection_conditions(selection)
        accepted = (
            "SELECT id, timestamp, quality_score, coalesce(dedupe_hash, id) AS h "
            f"FROM {window} WHERE {quality} AND {feedback}"
        )
        if selection.deduplicate:
            chosen = (
                "SELECT id, timestamp, quality_score FROM (SELECT id, timestamp, quality_score, "
                "row_number() OVER (PARTITION BY h ORDER BY quality_score DESC NULLS LAST, "
                f"timestamp DESC) AS rn FROM ({accepted}) AS a) AS ranked WHERE rn = 1"
            )
        else:
            chosen = f"SELECT id, timestamp, quality_score FROM ({accepted}) AS a"
        if selection.max_samples is not None:
            chosen += " ORDER BY quality_score DESC NULLS LAST, timestamp DESC LIMIT %(max)s"
            params["max"] = selection.max_samples
        text = (
            "SELECT u.query, u.response, u.model, u.expert, u.quality_score, u.user_feedback, "
            f"u.dedupe_hash FROM ({chosen}) AS c JOIN usage AS u "
            "ON u.id = c.id AND u.timestamp = c.timestamp ORDER BY c.timestamp, c.id"
        )
        for row in self._stream(text, params):
            yield TrainingRow(*row)

    def iter_unscored(self) -> Iterator[tuple[str, str, str]]:
        for row in self._stream(
            "SELECT id, query, response FROM usage WHERE quality_score IS NULL", None
        ):
            yield (row[0], row[1], row[2])

    def model_counts(self) -> dict[str, int]:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> dict[str, int]:
            rows = conn.execute(
                "SELECT model, sum(n) FROM usage_rollup GROUP BY model HAVING sum(n) > 0"
            ).fetchall()
            return {model: int(n) for model, n in rows}

        return self._retrying(read)

    # --- retention ----------------------------------------------------------------

    def partitions(self) -> list[Partition]:
        return self._retrying(lambda conn, retried: _read_partitions(conn))

    def drop_before(self, cutoff: datetime, *, archive: Path | None = None) -> dict[str, Any]:
        """Remove every record of the UTC days that end at or before ``cutoff``: drop the
        partitions that hold only such days, and delete those days' records from a month
        partition that also holds later ones.

        With ``archive``, the records are first appended to a gzipped JSON Lines file
        (one record per line, the fields of ``UsageRecord`` plus ``created_at``).
        """
        dropped, trimmed = retention_plan(self.partitions(), cutoff)
        archived = 0

        def drop(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            """Per partition, in one transaction: lock it against writers, archive what
            goes, remove it; so nothing that arrives meanwhile is removed unarchived (a
            retry after a lost connection may append a partition to the archive twice,
            never lose one)."""
            nonlocal archived
            removed = 0
            for partition, until in [(p, None) for p in dropped] + list(trimmed):
                start, end = partition.bounds()
                end = until or end
                table = sql.Identifier(partition.name)
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
                if archive is not None:
                    archived += write_archive(archive, _partition_rows(conn, table, end))
                if until is None:
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
                    removed += int(row[0]) if row else 0
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                else:
                    removed += conn.execute(
                        sql.SQL("DELETE FROM {} WHERE timestamp < %s").format(table), (end,)
                    ).rowcount
                conn.execute(
                    "DELETE FROM usage_rollup WHERE bucket >= %s AND bucket < %s",
                    (start.replace(tzinfo=None), end.replace(tzinfo=None)),
                )
            return removed

        removed = self._retrying(drop) if dropped or trimmed else 0
        with self._partition_lock:
            for partition in dropped:
                self._known_days -= partition.days()
        return {
            "dropped_partitions": [p.name for p in dropped],
            "trimmed_partitions": [p.name for p, _ in trimmed],
            "removed_records": removed,
            "archived_records": archived,
        }


# --- helpers -------------------------------------------------------------------------


def _read_partitions(conn: psycopg.Connection[TupleRow]) -> list[Partition]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage'::regclass ORDER BY c.relname"
    ).fetchall()
    found = [parse_partition_name(name) for (name,) in rows]
    return [p for p in found if p is not None]  # a table not of ours is left alone


def _first_line(exc: BaseException) -> str:
    """The error's first line, redacted: the server's CONTEXT lines quote the data being
    written (users' queries and responses), which logs and messages must not carry."""
    return redact_secrets((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def _partition_rows(
    conn: psycopg.Connection[TupleRow], table: sql.Identifier, until: datetime
) -> Iterator[dict[str, Any]]:
    """A partition's records before ``until`` as archive lines, streamed in the caller's
    transaction."""
    query = sql.SQL(
        "SELECT {cols}, created_at FROM {table} WHERE timestamp < %s ORDER BY timestamp, id"
    ).format(cols=sql.SQL(RECORD_COLUMNS), table=table)
    with conn.cursor(name="afs_archive") as cur:
        cur.itersize = _STREAM_BATCH
        cur.execute(query, (until,))
        for row in cur:
            yield _record(row[:-1]).to_dict() | {"created_at": format_timestamp(row[-1])}


def _ensure_partitions_for(
    store: PostgresUsageStore, days: set[date], conn: psycopg.Connection[TupleRow], retried: bool
) -> None:
    store._ensure_partitions(conn, days)


class _Batch:
    """The records of one insert, read lazily from their source and kept for retries."""

    def __init__(
        self,
        source: Iterable[UsageRecord],
        reassignable: Sequence[bool] | None,
        new_id: Callable[[], str],
    ) -> None:
        self._source = iter(source)
        self._given = None if reassignable is None else list(reassignable)
        self._new_id = new_id
        self.records: list[UsageRecord] = []
        self.flags: list[bool] = []

    def __iter__(self) -> Iterator[UsageRecord]:
        yield from list(self.records)
        yield from self._rest()

    def drain(self) -> list[UsageRecord]:
        """Every record, reading what the source has left."""
        for _ in self._rest():
            pass
        return self.records

    def _rest(self) -> Iterator[UsageRecord]:
        keep, flag, given, new_id = (
            self.records.append,
            self.flags.append,
            self._given,
            self._new_id,
        )
        for record in self._source:
            if given is not None:
                flag(given[len(self.records)])
            else:
                flag(not record.id)
            if not record.id:
                record.id = new_id()
            keep(record)
            yield record


def _probe(url: str) -> None:
    """One direct connection before the pool: a pool retries quietly until its timeout,
    so a refused connection or a wrong password would otherwise surface 30 s later as
    "cannot connect", without the server's reason. A URL that does not parse is said to
    be malformed and no more: the parser's message quotes the text around the fault,
    which is often the password."""
    if _safe(url).startswith("<"):
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL: {_safe(url)}; percent-encode any '/', '@', ':', "
            "'%' or space in the user name and password"
        )
    try:
        with psycopg.connect(url, connect_timeout=10):
            pass
    except psycopg.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL at {_safe(url)}: {redact_secrets(reason)}"
        ) from exc


def _safe(url: str) -> str:
    """The URL without its password, for messages (``<…>`` when it cannot be told apart:
    an unencoded '/' or '@' in a password moves the host into the path, and showing
    "host" and "database" would show the password's pieces)."""
    authority = url.split("://", 1)[-1].split("/", 1)
    if authority[0].count("@") > 1 or (len(authority) == 2 and "@" in authority[1]):
        return "<malformed URL>"
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<malformed URL>"
    host = info.get("host", "localhost")
    return f"{info.get('user', '')}@{host}/{info.get('dbname', '')}"


def _integral(stats: UsageStatistics) -> UsageStatistics:
    return UsageStatistics(
        count=int(stats.count),
        scored=int(stats.scored),
        quality_sum=float(stats.quality_sum),
        quality_sq_sum=float(stats.quality_sq_sum),
        latency_sum=float(stats.latency_sum),
        log_latency_count=int(stats.log_latency_count),
        log_latency_sum=float(stats.log_latency_sum),
        log_latency_sq_sum=float(stats.log_latency_sq_sum),
        token_sum=int(stats.token_sum),
        with_feedback=int(stats.with_feedback),
        positive=int(stats.positive),
        negative=int(stats.negative),
        errors=int(stats.errors),
    )


def _record_filter(query: RecordQuery) -> tuple[str, dict[str, Any]]:
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for clause, key, value in (
        ("timestamp >= %(since)s", "since", query.since),
        ("timestamp < %(until)s", "until", query.until),
        ("model = %(model)s", "model", query.model),
        ("expert = %(expert)s", "expert", query.expert),
        ("quality_score >= %(min_quality)s", "min_quality", query.min_quality),
    ):
        if value is not None:
            conditions.append(clause)
            params[key] = value
    if query.with_feedback_only:
        conditions.append("user_feedback IS NOT NULL")
    if query.feedback_since is not None:
        conditions.append(
            "(feedback_at >= %(fb)s OR (feedback_at IS NULL AND user_feedback IS NOT NULL "
            "AND timestamp >= %(fb)s))"
        )
        params["fb"] = query.feedback_since
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return where, params


def _selection_conditions(
    selection: TrainingSelection,
) -> tuple[str, str, str, dict[str, Any]]:
    """(source, quality condition, feedback condition, parameters).

    The source is ``usage`` itself, or, with ``since``, the records logged since then
    plus older ones whose feedback arrived since: two branches, so the first is pruned
    to recent partitions and the second probes each partition's small feedback index
    (an ``OR`` would scan every partition).
    """
    params: dict[str, Any] = {}
    scope = ""
    if selection.model is not None:
        scope += " AND model = %(model)s"
        params["model"] = selection.model
    if selection.expert is not None:
        scope += " AND expert = %(expert)s"
        params["expert"] = selection.expert
    window = f"(SELECT * FROM usage WHERE true{scope}) AS usage" if scope else "usage"
    if selection.since is not None:
        window = (
            f"(SELECT * FROM usage WHERE timestamp >= %(since)s{scope} UNION ALL "
            "SELECT * FROM usage WHERE feedback_at >= %(since)s AND timestamp < %(since)s"
            f"{scope}) AS usage"
        )
        params["since"] = selection.since
    quality = "true"
    if selection.min_quality > 0:
        quality = "(quality_score >= %(min_quality)s)"
        params["min_quality"] = selection.min_quality
    feedback = "true"
    if selection.min_feedback is not None:
        feedback = "(user_feedback >= %(min_feedback)s)"
        params["min_feedback"] = selection.min_feedback
    return window, quality, feedback, params
