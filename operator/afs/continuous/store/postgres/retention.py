"""Removing records: duplicates (the best of each kept) and the days before a cutoff
(partitions dropped or trimmed, archived first in the same transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from afs.continuous.store.base import write_archive
from afs.continuous.store.partitions import (
    Partition,
    retention_plan,
)
from afs.continuous.store.postgres.connection import (
    PostgresConnection,
    _read_partitions,
)
from afs.continuous.store.postgres.rows import _STREAM_BATCH, RECORD_COLUMNS, _record
from afs.continuous.timeutil import format_timestamp


class PostgresRetention(PostgresConnection):
    """Duplicates and old records, removed."""

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
            """In one transaction, writers held off: per partition, lock it, archive what
            goes, remove it; so nothing that arrives meanwhile is removed unarchived (a
            retry after a lost connection may append a partition to the archive twice,
            never lose one)."""
            nonlocal archived
            removed = 0
            # the parent first: every writer takes it before any partition, so waiting
            # for it here cannot deadlock with one (a writer of late records held one
            # partition and asked for another that retention had locked); readers go on
            conn.execute("LOCK TABLE ONLY usage IN SHARE ROW EXCLUSIVE MODE")
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
                        sql.SQL("DELETE FROM {} WHERE timestamp < %s").format(table),
                        (end,),
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
