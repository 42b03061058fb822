"""Data sets and erasure on SQLite (the SQL is shared: :mod:`afs.continuous.store.datasets`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from afs.continuous.privacy.membership import DatasetEntry
from afs.continuous.store import datasets
from afs.continuous.store.sqlite.connection import SQLiteConnection
from afs.continuous.store.sqlite.rollup import _rebuild_rollup


class SQLiteErasure(SQLiteConnection):
    """Which records each export took, and a user's records erased."""

    def record_dataset(self, entry: DatasetEntry) -> None:
        with self._write() as conn:
            datasets.upsert_dataset(conn, entry, mark="?")

    def label_dataset(self, dataset_id: str, model_version: str) -> bool:
        with self._write() as conn:
            return datasets.label_dataset(conn, dataset_id, model_version, mark="?")

    def iter_datasets(self) -> Iterator[DatasetEntry]:
        sql = f"SELECT {datasets.DATASET_COLUMNS} FROM datasets ORDER BY created_at, id"
        for row in self._stream(sql, ()):
            yield datasets.dataset_from_row(row)

    def ids_for_assignment(self, assignment_hash: str) -> list[str]:
        sql = "SELECT id FROM usage WHERE assignment_hash = ? ORDER BY id"
        return [row[0] for row in self._stream(sql, (assignment_hash,))]

    def existing_ids(self, ids: Sequence[str]) -> list[str]:
        with self._read() as conn:
            return datasets.existing_ids(conn, ids, mark="?")

    def corrections(self, record_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        with self._read() as conn:
            return datasets.read_corrections(conn, record_ids, mark="?")

    def erase_records(self, ids: Sequence[str]) -> dict[str, int]:
        with self._write() as conn:
            counts = datasets.erase(conn, ids, mark="?")
            if counts["records"]:
                _rebuild_rollup(conn)
            return counts
