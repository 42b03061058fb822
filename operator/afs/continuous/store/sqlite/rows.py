"""The usage table's rows: columns, the INSERT, and records to and from rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from afs.continuous.records import (
    RECORD_FIELDS,
    UsageRecord,
    record_values,
)
from afs.continuous.store.base import RECORD_COLUMNS as RECORD_COLUMNS

_INSERT = f"INSERT INTO usage ({RECORD_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"

#: rows per multi-row INSERT, largest first (those over the connection's limit on
#: variables, 999 before SQLite 3.32, are skipped)
_ROWS_PER_STATEMENT = (256, 64, 16, 4, 1)
_INSERT_ROWS = {
    rows: f"INSERT INTO usage ({RECORD_COLUMNS}) VALUES "
    + ", ".join([f"({', '.join('?' * len(RECORD_FIELDS))})"] * rows)
    for rows in _ROWS_PER_STATEMENT
}

_IN_CHUNK = 500


def _insert_row(record: UsageRecord) -> tuple[Any, ...]:
    """Column values. ``feedback_at`` stays NULL: it marks feedback that came *after*
    logging; feedback logged with the record arrived at the record's timestamp."""
    values: tuple[Any, ...] = record_values(record)  # is_error: SQLite stores a bool as 1/0
    return values


def insert_rows(conn: sqlite3.Connection, records: Sequence[UsageRecord]) -> None:
    """Insert the records in a few multi-row statements.

    SQLite releases the interpreter lock while it steps a statement and takes it back
    after. ``executemany`` steps once per row, and in a writer thread beside a busy
    event loop each take-back waits out the loop's switch interval (5 ms): a thousand
    rows took seconds. A statement of 256 rows waits once for all of them.
    """
    values = list(chain.from_iterable(map(_insert_row, records)))
    width, start = len(RECORD_FIELDS), 0
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for rows in _ROWS_PER_STATEMENT:
        while len(records) - start >= rows and rows * width <= limit:
            conn.execute(_INSERT_ROWS[rows], values[start * width : (start + rows) * width])
            start += rows


def _from_row(row: Sequence[Any]) -> UsageRecord:
    record = UsageRecord(*row)
    record.is_error = bool(record.is_error)
    return record


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id FROM usage WHERE id IN ({marks})", chunk)
        found.update(row[0] for row in rows)
    return found


def _bucket(timestamp: str) -> str:
    """The rollup bucket of a stored timestamp: its hour, ``YYYY-MM-DDTHH``."""
    return timestamp[:13]
