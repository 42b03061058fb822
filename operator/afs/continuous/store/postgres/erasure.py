"""Data sets and erasure on PostgreSQL (the SQL is shared: :mod:`afs.continuous.store.datasets`;
the rollup follows deletes through its triggers)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from afs.continuous.privacy.membership import DatasetEntry
from afs.continuous.store import datasets
from afs.continuous.store.postgres.reads import PostgresReads


class PostgresErasure(PostgresReads):
    """Which records each export took, and a user's records erased."""

    def record_dataset(self, entry: DatasetEntry) -> None:
        def write(conn: psycopg.Connection[TupleRow], retried: bool) -> None:
            datasets.upsert_dataset(conn, entry, mark="%s")

        self._retrying(write)

    def label_dataset(self, dataset_id: str, model_version: str) -> bool:
        def write(conn: psycopg.Connection[TupleRow], retried: bool) -> bool:
            return datasets.label_dataset(conn, dataset_id, model_version, mark="%s")

        return bool(self._retrying(write))

    def iter_datasets(self) -> Iterator[DatasetEntry]:
        sql = f"SELECT {datasets.DATASET_COLUMNS} FROM datasets ORDER BY created_at, id"
        for row in self._stream(sql, ()):
            yield datasets.dataset_from_row(row)

    def ids_for_assignment(self, assignment_hash: str) -> list[str]:
        sql = "SELECT id FROM usage WHERE assignment_hash = %s ORDER BY id"
        return [row[0] for row in self._stream(sql, (assignment_hash,))]

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> list[str]:
            return datasets.existing_ids(conn, ids, mark="%s")

        return list(self._retrying(read))

    def corrections(self, record_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> dict[str, dict[str, Any]]:
            return datasets.read_corrections(conn, record_ids, mark="%s")

        return dict(self._retrying(read))

    def erase_records(self, ids: Sequence[str]) -> dict[str, int]:
        def write(conn: psycopg.Connection[TupleRow], retried: bool) -> dict[str, Any]:
            return datasets.erase(conn, ids, mark="%s")

        return dict(self._retrying(write))
