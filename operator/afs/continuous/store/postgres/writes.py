"""How a batch is written: COPY in one transaction, streamed from a lazy source as it
is checked, replayed after a lost connection without writing a record twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import TupleRow

from afs.continuous.conversations import stored_nodes
from afs.continuous.errors import (
    ContinuousError,
    InvalidFieldError,
)
from afs.continuous.records import (
    UsageRecord,
    new_record_id,
    new_record_ids,
    record_values,
)
from afs.continuous.store import datasets
from afs.continuous.store.base import STATE_ON_CONFLICT
from afs.continuous.store.postgres.connection import PostgresConnection
from afs.continuous.store.postgres.rows import _COPY, _COPY_TYPES

_MAX_ID_ATTEMPTS = 8


class PostgresWrites(PostgresConnection):
    """How records and feedback are written."""

    def insert(
        self,
        records: Iterable[UsageRecord],
        *,
        reassignable: Sequence[bool] | None = None,
        skip_existing: Container[str] = frozenset(),
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
                self._reassign(batch, skip_existing)
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
            self._id_pool = new_record_ids(1000)[::-1]  # popped in ascending order
        return self._id_pool.pop()

    def _copy(self, conn: psycopg.Connection[TupleRow], batch: _Batch, retried: bool) -> None:
        pending: Iterable[UsageRecord] = batch
        if retried:  # the last attempt may have committed before the connection dropped
            records = batch.drain()
            done = {
                row[0]
                for row in conn.execute(
                    "SELECT id FROM usage WHERE id = ANY(%s)",
                    ([r.id for r in records],),
                ).fetchall()
            }
            pending = [r for r in records if r.id not in done]
        conversational: list[UsageRecord] = []
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            text, moment = "", datetime.min  # logged records mostly share one moment
            for r in pending:
                values = record_values(r)
                if values[1] != text:
                    text = values[1]
                    moment = datetime.fromisoformat(text)
                write((values[0], moment, *values[2:]))
                if r.messages is not None:
                    conversational.append(r)
        nodes = stored_nodes(conversational)
        if nodes:  # in the same transaction as the records that need them
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO conversation_nodes VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    nodes,
                )
        supplied = [r.id for r, free in zip(batch.records, batch.flags, strict=True) if not free]
        if supplied:
            twice = conn.execute(
                "SELECT id FROM usage WHERE id = ANY(%s) GROUP BY id HAVING count(*) > 1 LIMIT 1",
                (supplied,),
            ).fetchone()
            if twice is not None:  # raising here rolls the whole batch back
                raise InvalidFieldError("id", twice[0], "must be unique; a record has it already")

    def _reassign(self, batch: _Batch, skip_existing: Container[str]) -> None:
        """After a unique violation: new ids for generated records that collide, the
        records ``skip_existing`` says are stored already left out of the batch, an
        error for a supplied duplicate."""
        records = batch.drain()
        ids = [r.id for r in records]

        def taken(conn: psycopg.Connection[TupleRow], retried: bool) -> set[str]:
            rows = conn.execute("SELECT id FROM usage WHERE id = ANY(%s)", (ids,)).fetchall()
            return {row[0] for row in rows}

        existing = self._retrying(taken)
        seen: set[str] = set()  # two records of this batch may share a generated id
        kept: list[UsageRecord] = []
        kept_flags: list[bool] = []
        for record, free in zip(records, batch.flags, strict=True):
            if record.id in existing and record.id in skip_existing:
                continue
            if record.id in existing or record.id in seen:
                if not free:
                    raise InvalidFieldError(
                        "id", record.id, "must be unique; a record has it already"
                    )
                record.id = self._id_factory()
            seen.add(record.id)
            kept.append(record)
            kept_flags.append(free)
        batch.records[:], batch.flags[:] = kept, kept_flags

    def update_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None,
        at: datetime,
        *,
        correction_json: str | None = None,
    ) -> bool:
        def update(conn: psycopg.Connection[TupleRow], retried: bool) -> bool:
            cur = conn.execute(
                "UPDATE usage SET user_feedback = %s, feedback_text = %s, feedback_at = %s "
                "WHERE id = %s",
                (feedback, feedback_text, at, record_id),
            )
            if cur.rowcount > 0 and correction_json is not None:
                datasets.write_correction(conn, record_id, correction_json, at, mark="%s")
            return cur.rowcount > 0

        return self._retrying(update)

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        def update(conn: psycopg.Connection[TupleRow], retried: bool) -> bool:
            cur = conn.execute(
                "UPDATE usage SET quality_score = %s WHERE id = %s",
                (quality_score, record_id),
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

    def put_state(
        self, key: str, value: dict[str, Any], *, at: datetime, replace: bool = True
    ) -> None:
        def put(conn: psycopg.Connection[TupleRow], retried: bool) -> None:
            conn.execute(
                "INSERT INTO loop_state (key, value, updated_at) VALUES (%s, %s::jsonb, %s) "
                + STATE_ON_CONFLICT[replace],
                (key, json.dumps(value, sort_keys=True), at),
            )

        self._retrying(put)


def _ensure_partitions_for(
    store: PostgresConnection,
    days: set[date],
    conn: psycopg.Connection[TupleRow],
    retried: bool,
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
