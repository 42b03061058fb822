"""SQLite usage store: the embedded default.

Choices and why:
- WAL journal with ``synchronous=NORMAL``: readers never block the writer and a commit
  does not wait for an fsync (a record survives a process crash; a power cut may lose
  the last few hundred milliseconds). The original fsynced every record (~900/s).
- One writer connection per store, serialised by a lock, with ``BEGIN IMMEDIATE`` so a
  second process waits on SQLite's busy handler instead of failing with "database is
  locked". Streaming reads get their own short-lived connection, so a long export never
  holds the lock that ``log()`` needs.
- ``usage_rollup`` keeps additive statistics per (hour, model, expert). Inserts do not
  touch it (one statement per ``log()``, no extra page per commit); instead rows above
  a rowid watermark are *folded* into it every few hundred inserts, at the end of each
  batch, and by a reader that finds the unfolded tail long. Statistics read the rollup
  plus the short unfolded tail, so they are exact and cost the same at any size.
  Updates to folded rows adjust the rollup in the same transaction.
- Every statement is parameterised; the only text spliced into SQL is chosen from
  constant fragments in this package.

One module per concern: ``connection`` (connections, transactions, schema upgrades),
``schema`` (DDL and migrations), ``rows`` (columns and row conversion), ``writes`` (how a
batch is written), ``reads`` (records, statistics, counts), ``rollup`` (the folded
statistics) and ``retention`` (dedupe and old records).
"""

from __future__ import annotations

from afs.continuous.store.sqlite.connection import StoreBusyError
from afs.continuous.store.sqlite.erasure import SQLiteErasure
from afs.continuous.store.sqlite.reads import SQLiteReads
from afs.continuous.store.sqlite.retention import SQLiteRetention
from afs.continuous.store.sqlite.rows import RECORD_COLUMNS
from afs.continuous.store.sqlite.writes import SQLiteWrites

__all__ = ["RECORD_COLUMNS", "SQLiteUsageStore", "StoreBusyError"]


class SQLiteUsageStore(SQLiteWrites, SQLiteReads, SQLiteRetention, SQLiteErasure):
    """Usage records in one SQLite file (see the package docstring for the design)."""
