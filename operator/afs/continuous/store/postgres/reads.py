"""Reads: records (server-side cursors), window statistics from the rollup plus the
partial hours, and the counts the triggers and the generator ask for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import PoolTimeout

from afs.continuous import conversations
from afs.continuous.core.unit_statistics import UnitStatistics, unit_query
from afs.continuous.errors import StoreUnavailableError
from afs.continuous.records import UsageRecord
from afs.continuous.store.base import (
    RecordQuery,
    SelectionCounts,
    TrainingRow,
    TrainingSelection,
    UsageStatistics,
)
from afs.continuous.store.postgres.connection import PostgresConnection, _first_line
from afs.continuous.store.postgres.rows import _STREAM_BATCH, RECORD_COLUMNS, _record
from afs.continuous.store.postgres.schema import _RAW_AGGREGATES, _ROLLUP_SUMS
from afs.continuous.store.windows import plan_window


class PostgresReads(PostgresConnection):
    """Records, statistics and counts, read."""

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

        record = self._retrying(get)
        if record is not None:
            conversations.fill([record], conversations.NodeCache(self._conversation_chain))
        return record

    def _conversation_chain(self, node_hash: str) -> list[tuple[str, str | None, str]]:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> list[Any]:
            return conn.execute(conversations.CHAIN_SQL.format(mark="%s"), (node_hash,)).fetchall()

        return [tuple(row) for row in self._retrying(read)]

    def _stream(self, query: sql.Composable | str, params: Any) -> Iterator[TupleRow]:
        """Rows of one query through a server-side cursor on a pooled connection.

        A connection that died while it sat in the pool (the server restarted since) is
        replaced until the first rows are read, as in every other call; once rows have
        been handed out, a lost connection ends the stream with StoreUnavailableError.
        """
        deadline, delay = time.monotonic() + self._retry_seconds, 0.05
        while True:
            reading = False
            try:
                with (
                    self.pool.connection() as conn,
                    conn.transaction(),
                    conn.cursor(name="afs_stream") as cur,
                ):
                    cur.itersize = _STREAM_BATCH
                    cur.execute(query, params)  # type: ignore[arg-type]
                    rows = cur.fetchmany(_STREAM_BATCH)
                    reading = True
                    while rows:
                        yield from rows
                        rows = cur.fetchmany(_STREAM_BATCH)
                    return
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if reading:
                    raise StoreUnavailableError(
                        f"PostgreSQL connection lost while reading: {_first_line(exc)}"
                    ) from exc
                delay = self._after_lost_connection(exc, deadline, delay)

    def iter_records(self, query: RecordQuery) -> Iterator[UsageRecord]:
        where, params = _record_filter(query)
        order = "DESC" if query.newest_first else "ASC"
        text = f"SELECT {RECORD_COLUMNS} FROM usage{where} ORDER BY timestamp {order}, id {order}"
        if query.limit is not None:
            text += " LIMIT %(limit)s"
            params["limit"] = query.limit
        cache = conversations.NodeCache(self._conversation_chain)
        for row in self._stream(text, params):
            record = _record(row)
            conversations.fill([record], cache)
            yield record

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

        return self._retrying(read)

    def unit_statistics(
        self, *, since: datetime, until: datetime | None, model: str
    ) -> UnitStatistics:
        where = "model = %(model)s AND timestamp >= %(since)s"
        params: dict[str, Any] = {"model": model, "since": since}
        if until is not None:
            where += " AND timestamp < %(until)s"
            params["until"] = until
        return UnitStatistics.from_row(self._one(unit_query(where), params))

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
            f"SELECT count(DISTINCT coalesce(dedupe_hash, id)) FROM {window} {where}",
            params,
        )
        return min(int(exact[0]), cap)

    def iter_training_rows(self, selection: TrainingSelection) -> Iterator[TrainingRow]:
        window, quality, feedback, params = _selection_conditions(selection)
        cache = conversations.NodeCache(self._conversation_chain)
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
            "u.dedupe_hash, u.conversation_hash, u.response_json, u.id, u.assignment_hash "
            f"FROM ({chosen}) AS c JOIN usage AS u "
            "ON u.id = c.id AND u.timestamp = c.timestamp ORDER BY c.timestamp, c.id"
        )
        for row in self._stream(text, params):
            training = TrainingRow(*row)
            conversations.fill([training], cache)
            yield training

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
