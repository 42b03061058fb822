"""Reads: records, window statistics (rollup plus the unfolded tail), and the counts
the triggers and the generator ask for."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from afs.continuous import conversations
from afs.continuous.core.unit_statistics import UnitStatistics, unit_query
from afs.continuous.records import UsageRecord
from afs.continuous.store.base import (
    RecordQuery,
    SelectionCounts,
    TrainingRow,
    TrainingSelection,
    UsageStatistics,
)
from afs.continuous.store.sqlite.connection import SQLiteConnection
from afs.continuous.store.sqlite.rollup import (
    _MAX_TAIL,
    _RAW_AGGREGATES,
    _ROLLUP_SUMS,
    _folded_rowid,
    _max_rowid,
)
from afs.continuous.store.sqlite.rows import RECORD_COLUMNS, _bucket, _from_row
from afs.continuous.store.windows import plan_window
from afs.continuous.timeutil import format_timestamp


class SQLiteReads(SQLiteConnection):
    """Records, statistics and counts, read."""

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
                    "SELECT model, COUNT(*) FROM usage WHERE rowid > ? GROUP BY model",
                    (folded,),
                ).fetchall()
            ):
                counts[model] = counts.get(model, 0) + int(n)
        return counts

    def get(self, record_id: str) -> UsageRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM usage WHERE id = ?", (record_id,)
            ).fetchone()
        if row is None:
            return None
        record = _from_row(row)
        conversations.fill([record], conversations.NodeCache(self._conversation_chain))
        return record

    def _conversation_chain(self, node_hash: str) -> list[tuple[str, str | None, str]]:
        with self._read() as conn:
            rows = conn.execute(conversations.CHAIN_SQL.format(mark="?"), (node_hash,))
            return [tuple(row) for row in rows.fetchall()]

    def iter_records(self, query: RecordQuery) -> Iterator[UsageRecord]:
        where, params = _record_filter(query)
        order = "DESC" if query.newest_first else "ASC"
        sql = f"SELECT {RECORD_COLUMNS} FROM usage{where} ORDER BY timestamp {order}"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        cache = conversations.NodeCache(self._conversation_chain)
        for row in self._stream(sql, params):
            record = _from_row(row)
            conversations.fill([record], cache)
            yield record

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
                for start, end in edges:  # folded rows at the edges: by time
                    total += self._raw_statistics(
                        conn, start, end, model, expert, "rowid <= ?", folded
                    )
                # the unfolded tail, anywhere in the window: by rowid. "+timestamp" keeps
                # the planner off the time index, which would walk every record of the
                # window (33,000 a day at a million a month) to find the few in the tail
                total += self._raw_statistics(
                    conn, lo, hi, model, expert, "rowid > ?", folded, by_rowid=True
                )
        return total

    @staticmethod
    def _raw_statistics(
        conn: sqlite3.Connection,
        start: str | None,
        end: str | None,
        model: str | None,
        expert: str | None,
        rowid_condition: str,
        rowid: int,
        *,
        by_rowid: bool = False,
    ) -> UsageStatistics:
        conditions = [rowid_condition]
        params: list[Any] = [rowid]
        time = "+timestamp" if by_rowid else "timestamp"
        for clause, value in (
            (f"{time} >= ?", start),
            (f"{time} < ?", end),
            ("model = ?", model),
            ("coalesce(expert, '') = ?", expert),
        ):
            if value is not None:
                conditions.append(clause)
                params.append(value)
        sql = f"SELECT {_RAW_AGGREGATES} FROM usage WHERE {' AND '.join(conditions)}"
        return UsageStatistics.from_row(conn.execute(sql, params).fetchone())

    def unit_statistics(
        self, *, since: datetime, until: datetime | None, model: str
    ) -> UnitStatistics:
        where, params = "model = ? AND timestamp >= ?", [model, format_timestamp(since)]
        if until is not None:
            where += " AND timestamp < ?"
            params.append(format_timestamp(until))
        with self._lock:
            row = self._conn.execute(unit_query(where), params).fetchone()
        return UnitStatistics.from_row(row)

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
        cache = conversations.NodeCache(self._conversation_chain)
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
            f"u.dedupe_hash, u.conversation_hash, u.response_json, u.id, u.assignment_hash "
            f"FROM ({chosen}) AS c "
            "JOIN usage AS u ON u.rowid = c.rid ORDER BY c.timestamp, c.rid"
        )
        for row in self._stream(sql, params):
            training = TrainingRow(*row)
            conversations.fill([training], cache)
            yield training

    def iter_unscored(self) -> Iterator[tuple[str, str, str]]:
        for row in self._stream(
            "SELECT id, query, response FROM usage WHERE quality_score IS NULL", ()
        ):
            yield (row[0], row[1], row[2])


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
