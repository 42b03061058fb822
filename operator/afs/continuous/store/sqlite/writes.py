"""How a batch is written: in one transaction, read in chunks from a lazy source, each
chunk under a savepoint so a colliding generated id is replaced; single records in
autocommit; feedback and scores as updates that keep the rollup right."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Container, Iterable, Sequence
from datetime import datetime
from itertools import chain, islice
from typing import Any

from afs.continuous.errors import (
    ContinuousError,
    InvalidFieldError,
)
from afs.continuous.records import (
    UsageRecord,
    new_record_id,
    new_record_ids,
)
from afs.continuous.store import datasets
from afs.continuous.store.base import STATE_ON_CONFLICT
from afs.continuous.store.sqlite.connection import SQLiteConnection
from afs.continuous.store.sqlite.rollup import (
    _FOLD_EVERY,
    _ROLLUP_UPSERT,
    _fold,
    _folded_rowid,
    _rollup_vector,
)
from afs.continuous.store.sqlite.rows import (
    _INSERT,
    RECORD_COLUMNS,
    _bucket,
    _existing_ids,
    _from_row,
    _insert_row,
    insert_rows,
)
from afs.continuous.timeutil import format_timestamp

_MAX_ID_ATTEMPTS = 8

_INSERT_CHUNK = 1000
_ID_POOL = 1000


class SQLiteWrites(SQLiteConnection):
    """How records and feedback are written."""

    def insert(
        self,
        records: Iterable[UsageRecord],
        *,
        reassignable: Sequence[bool] | None = None,
        skip_existing: Container[str] = frozenset(),
    ) -> list[str]:
        """Write the records in one transaction, reading them in chunks as they come.

        ``records`` may be a lazy iterable that checks each record (an import reading a
        file): an exception from it rolls everything back, and only one chunk is held in
        memory at a time. Each chunk is written under a savepoint, so a generated id that
        collides is replaced and the chunk written again.
        """
        if (
            type(records) is list and len(records) == 1 and reassignable is None
            and records[0].messages is None  # a conversation's nodes need a transaction
            and not skip_existing
        ):  # fmt: skip
            return [self._insert_single(records[0], free=not records[0].id)]  # log()
        source = iter(records)
        flags = None if reassignable is None else iter(reassignable)
        head = list(islice(source, 2))
        if len(head) == 1 and head[0].messages is None and not skip_existing:
            (record,) = head
            free = not record.id if flags is None else next(flags)
            return [self._insert_single(record, free=free)]
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
                written = self._insert_chunk(conn, chunk, given, skip_existing)
                ids.extend(r.id for r in written)
            self._since_fold += len(ids)
            if self._since_fold >= _FOLD_EVERY:  # as for single records: readers fold
                _fold(conn)  # whatever tail is left, so a small batch need not
                self._since_fold = 0
        return ids

    def _insert_single(self, record: UsageRecord, *, free: bool) -> str:
        """One record in one autocommit statement: the cheapest durable write SQLite
        offers, and the path every ``log()`` takes, so it skips the batch machinery."""
        if free and not record.id:
            record.id = self._new_ids(1)[0]
        for _attempt in range(_MAX_ID_ATTEMPTS):
            try:
                self._insert_one(record)
                return record.id
            except sqlite3.IntegrityError as exc:
                if "usage.id" not in str(exc):
                    raise
                with self._read() as conn:
                    self._reassign_colliding_ids(conn, [record], [free])
        raise ContinuousError(f"could not find free record ids in {_MAX_ID_ATTEMPTS} attempts")

    def _give_ids(self, records: Sequence[UsageRecord], free: Sequence[bool]) -> None:
        missing = [r for r, f in zip(records, free, strict=True) if f and not r.id]
        for record, new_id in zip(missing, self._new_ids(len(missing)), strict=True):
            record.id = new_id

    def _insert_chunk(
        self,
        conn: sqlite3.Connection,
        chunk: Sequence[UsageRecord],
        free: Sequence[bool],
        skip_existing: Container[str],
    ) -> Sequence[UsageRecord]:
        """The chunk's records as written: those whose id is in ``skip_existing`` and
        stored already are left out."""
        for _attempt in range(_MAX_ID_ATTEMPTS):
            conn.execute("SAVEPOINT afs_chunk")
            try:
                insert_rows(conn, chunk)
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO afs_chunk")
                conn.execute("RELEASE afs_chunk")
                if "usage.id" not in str(exc):
                    raise
                chunk, free = self._reassign_colliding_ids(conn, chunk, free, skip_existing)
                continue
            conn.execute("RELEASE afs_chunk")
            return chunk
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

    def _new_ids(self, count: int) -> list[str]:
        """Ids drawn ahead a thousand at a time (one random read for all): a single
        ``log()`` would otherwise pay for its own."""
        if self._id_factory is not new_record_id:
            return [self._id_factory() for _ in range(count)]
        if count == 0:
            return []
        with self._lock:
            if len(self._id_pool) < count:  # kept descending: taken from the end in order
                self._id_pool[:0] = new_record_ids(max(count, _ID_POOL))[::-1]
            taken = self._id_pool[-count:]
            del self._id_pool[-count:]
        return taken[::-1]

    def _reassign_colliding_ids(
        self,
        conn: sqlite3.Connection,
        records: Sequence[UsageRecord],
        free: Sequence[bool],
        skip_existing: Container[str] = frozenset(),
    ) -> tuple[list[UsageRecord], list[bool]]:
        """Give new ids to generated records that collide, leave out the records
        ``skip_existing`` says are stored already, reject supplied duplicates; the
        records (and their flags) left to write."""
        taken = _existing_ids(conn, [r.id for r in records])
        seen: set[str] = set()
        kept: list[UsageRecord] = []
        kept_free: list[bool] = []
        for record, generated in zip(records, free, strict=True):
            if record.id in taken and record.id in skip_existing:
                continue
            collides = record.id in taken or record.id in seen
            if collides and generated:
                record.id = self._id_factory()
            elif collides:
                raise InvalidFieldError("id", record.id, "must be unique; a record has it already")
            seen.add(record.id)
            kept.append(record)
            kept_free.append(generated)
        return kept, kept_free

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
        *,
        also: Callable[[sqlite3.Connection], None] | None = None,
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
            if also is not None:
                also(conn)
            return True

    def update_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None,
        at: datetime,
        *,
        correction_json: str | None = None,
    ) -> bool:
        def change(record: UsageRecord) -> None:
            record.user_feedback = feedback

        def correct(conn: sqlite3.Connection) -> None:
            if correction_json is not None:
                datasets.write_correction(
                    conn, record_id, correction_json, format_timestamp(at), mark="?"
                )

        return self._update_one(
            record_id,
            change,
            "UPDATE usage SET user_feedback = ?, feedback_text = ?, feedback_at = ? WHERE id = ?",
            (feedback, feedback_text, format_timestamp(at)),
            also=correct,
        )

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        def change(record: UsageRecord) -> None:
            record.quality_score = quality_score

        return self._update_one(
            record_id,
            change,
            "UPDATE usage SET quality_score = ? WHERE id = ?",
            (quality_score,),
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
                conn.execute(
                    "UPDATE usage SET quality_score = ? WHERE id = ?",
                    (score, record_id),
                )
                self._adjust_rollup(conn, row[0], before, after)
                updated += 1
        return updated

    def put_state(
        self, key: str, value: dict[str, Any], *, at: datetime, replace: bool = True
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO loop_state (key, value, updated_at) VALUES (?, ?, ?) "
                + STATE_ON_CONFLICT[replace],
                (key, json.dumps(value, sort_keys=True), format_timestamp(at)),
            )
