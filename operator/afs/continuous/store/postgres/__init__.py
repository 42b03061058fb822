"""PostgreSQL usage store: one shared database for model servers and the operator.

Choices and why:
- psycopg 3 with a connection pool; ``COPY`` for every batch of inserts; server-side
  cursors for streaming reads; every statement parameterised (identifiers only from
  constants in this package, or built with ``psycopg.sql``).
- ``usage`` is range-partitioned on ``timestamp``: a partition per day for recent days
  (created ahead, and on demand for the days a batch touches), per month for old days a
  backfill brings (see ``store/partitions.py``), so retention drops whole partitions.
- ``usage_rollup`` (additive statistics per UTC hour, model and expert) is kept current by
  statement-level triggers with transition tables on insert, update and delete, so it is
  right whoever writes the table, and window statistics cost the same at any size.
- Constraints in the database back the checks made in Python.
- Writes survive a restarting server: a batch that fails on a broken connection is
  retried, and on a retry the ids already committed (the commit may have happened before
  the connection dropped) are left out, so every record arrives exactly once.
- Migrations are versioned and run under an advisory lock, so two processes starting at
  once apply them once.

One module per concern: ``connection`` (pool, retries, migrations, partitions), ``schema``
(DDL, triggers, migrations), ``rows`` (columns, COPY, rows as records), ``writes`` (how
a batch is written), ``reads`` (records, statistics, counts) and ``retention`` (dedupe,
old days).
"""

from __future__ import annotations

from afs.continuous.store.postgres.erasure import PostgresErasure
from afs.continuous.store.postgres.retention import PostgresRetention
from afs.continuous.store.postgres.rows import RECORD_COLUMNS
from afs.continuous.store.postgres.writes import PostgresWrites

__all__ = ["RECORD_COLUMNS", "PostgresUsageStore"]


class PostgresUsageStore(PostgresWrites, PostgresErasure, PostgresRetention):
    """Usage records in PostgreSQL (see the package docstring for the design)."""
