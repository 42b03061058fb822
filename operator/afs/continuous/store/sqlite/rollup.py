"""``usage_rollup``: additive statistics per (hour, model, expert), folded from the rows
above a rowid watermark (see the package docstring for why not triggers)."""

from __future__ import annotations

import sqlite3

from afs.continuous.records import UsageRecord
from afs.continuous.store.base import (
    log_latency,
)

#: Inserts through ``log()`` between folds, and the unfolded tail a reader tolerates.
_FOLD_EVERY = 256

_MAX_TAIL = 4096

_ROLLUP_COLUMNS = (
    "n, n_scored, quality_sum, quality_sq_sum, latency_sum, n_log_latency, "
    "log_latency_sum, log_latency_sq_sum, token_sum, n_feedback, n_positive, n_negative, "
    "n_errors"
)

_ROLLUP_SUMS = ", ".join(f"SUM({c})" for c in _ROLLUP_COLUMNS.split(", "))

_ROLLUP_ADD = "ON CONFLICT (bucket, model, expert) DO UPDATE SET " + ", ".join(
    f"{c} = {c} + excluded.{c}" for c in _ROLLUP_COLUMNS.split(", ")
)

# The same sufficient statistics computed from raw rows (partial buckets, rebuilds).
_RAW_AGGREGATES = (
    "COUNT(*), COUNT(quality_score), TOTAL(quality_score), "
    "TOTAL(quality_score * quality_score), TOTAL(latency_ms), "
    "COUNT(CASE WHEN latency_ms > 0 THEN 1 END), "
    "TOTAL(CASE WHEN latency_ms > 0 THEN ln(latency_ms) END), "
    "TOTAL(CASE WHEN latency_ms > 0 THEN ln(latency_ms) * ln(latency_ms) END), "
    "TOTAL(token_count), COUNT(user_feedback), "
    "TOTAL(user_feedback = 1), TOTAL(user_feedback = -1), TOTAL(is_error)"
)

_ROLLUP_UPSERT = (
    f"INSERT INTO usage_rollup (bucket, model, expert, {_ROLLUP_COLUMNS}) "
    f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) {_ROLLUP_ADD}"
)

_FOLD = (
    f"INSERT INTO usage_rollup (bucket, model, expert, {_ROLLUP_COLUMNS}) "
    f"SELECT substr(timestamp, 1, 13), model, coalesce(expert, ''), {_RAW_AGGREGATES} "
    f"FROM usage WHERE rowid > ? GROUP BY 1, 2, 3 {_ROLLUP_ADD}"
)


def _rollup_vector(record: UsageRecord) -> list[float]:
    q = record.quality_score
    ll = log_latency(record.latency_ms)
    fb = record.user_feedback
    return [
        1,
        q is not None,
        q or 0.0,
        (q or 0.0) ** 2,
        record.latency_ms or 0.0,  # not known: adds nothing, as SQL's sum skips NULL
        ll is not None,
        ll or 0.0,
        (ll or 0.0) ** 2,
        record.token_count or 0,
        fb is not None,
        fb == 1,
        fb == -1,
        bool(record.is_error),
    ]


def _folded_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT folded_rowid FROM usage_rollup_state").fetchone()[0])


def _max_rowid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(MAX(rowid), 0) FROM usage").fetchone()[0])


def _fold(conn: sqlite3.Connection) -> None:
    """Add rows above the watermark to the rollup and raise the watermark (in a write txn).

    Rowids only grow while no row is deleted; every delete rebuilds the rollup and resets
    the watermark, so a reused rowid can never hide below it.
    """
    folded, top = _folded_rowid(conn), _max_rowid(conn)
    if top > folded:
        conn.execute(_FOLD, (folded,))
        conn.execute("UPDATE usage_rollup_state SET folded_rowid = ?", (top,))


def _rebuild_rollup(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM usage_rollup")
    conn.execute("UPDATE usage_rollup_state SET folded_rowid = 0")
    _fold(conn)
