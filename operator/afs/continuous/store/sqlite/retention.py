"""Removing records: duplicates (the best of each kept) and records older than a
cutoff (archived first, in the same write transaction)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from afs.continuous.store.base import write_archive
from afs.continuous.store.sqlite.connection import SQLiteConnection
from afs.continuous.store.sqlite.rollup import _rebuild_rollup
from afs.continuous.store.sqlite.rows import RECORD_COLUMNS, _from_row
from afs.continuous.timeutil import format_timestamp


class SQLiteRetention(SQLiteConnection):
    """Duplicates and old records, removed."""

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
