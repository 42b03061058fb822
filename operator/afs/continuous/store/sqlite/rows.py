"""The usage table's rows: columns, the INSERT, and records to and from rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from afs.continuous.conversations import stored_nodes
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
    nodes = stored_nodes(records)
    if nodes:  # in the same transaction as the records that need them
        conn.executemany("INSERT OR IGNORE INTO conversation_nodes VALUES (?, ?, ?)", nodes)
    rows = list(map(_insert_row, records))
    width, start = len(RECORD_FIELDS), 0
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for size in _ROWS_PER_STATEMENT:
        while len(rows) - start >= size and size * width <= limit:
            conn.execute(*_statement(rows[start : start + size]))
            start += size


def _statement(rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """The INSERT of ``rows`` and its values, with NULL written into the SQL for a
    column that is None in every row: sqlite3 looks for an adapter for each value that
    is not exactly an int, float or str, None included, and a typical row has six
    empty columns (a third of the CPU of an insert, measured)."""
    columns = zip(*rows, strict=True)
    keep = tuple(i for i, column in enumerate(columns) if column.count(None) != len(column))
    # never fewer than two kept: id, timestamp, query, response and model are NOT NULL
    return _insert_sql(len(rows), keep), list(chain.from_iterable(map(itemgetter(*keep), rows)))


@lru_cache(maxsize=128)
def _insert_sql(rows: int, keep: tuple[int, ...]) -> str:
    row = "(" + ", ".join("?" if i in keep else "NULL" for i in range(len(RECORD_FIELDS))) + ")"
    return f"INSERT INTO usage ({RECORD_COLUMNS}) VALUES " + ", ".join([row] * rows)


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
