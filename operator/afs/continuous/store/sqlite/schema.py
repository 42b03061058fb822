"""The SQLite schema and its versioned migrations (a database of the original
implementation is adopted in place)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from afs.continuous.errors import InvalidFieldError
from afs.continuous.records import compute_dedupe_hash
from afs.continuous.timeutil import format_timestamp, parse_timestamp

_SCHEMA_V1 = (
    """
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    model TEXT NOT NULL,
    expert TEXT,
    latency_ms REAL CHECK (latency_ms IS NULL OR latency_ms >= 0),
    token_count INTEGER CHECK (token_count IS NULL OR token_count >= 0),
    quality_score REAL DEFAULT 0.0
        CHECK (quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)),
    user_feedback INTEGER CHECK (user_feedback IS NULL OR user_feedback IN (-1, 0, 1)),
    feedback_text TEXT,
    context_hash TEXT,
    dedupe_hash TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    feedback_at TEXT
)""",
    """
CREATE TABLE IF NOT EXISTS usage_rollup (
    bucket TEXT NOT NULL,
    model TEXT NOT NULL,
    expert TEXT NOT NULL,
    n INTEGER NOT NULL,
    n_scored INTEGER NOT NULL,
    quality_sum REAL NOT NULL,
    quality_sq_sum REAL NOT NULL,
    latency_sum REAL NOT NULL,
    n_log_latency INTEGER NOT NULL,
    log_latency_sum REAL NOT NULL,
    log_latency_sq_sum REAL NOT NULL,
    token_sum INTEGER NOT NULL,
    n_feedback INTEGER NOT NULL,
    n_positive INTEGER NOT NULL,
    n_negative INTEGER NOT NULL,
    PRIMARY KEY (bucket, model, expert)
) WITHOUT ROWID""",
    """
CREATE TABLE IF NOT EXISTS usage_rollup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    folded_rowid INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO usage_rollup_state (id, folded_rowid) VALUES (1, 0)",
)

_INDEXES_V1 = (
    "CREATE INDEX IF NOT EXISTS idx_usage_timestamp_quality ON usage (timestamp, quality_score)",
    "CREATE INDEX IF NOT EXISTS idx_usage_feedback_at ON usage (feedback_at) "
    "WHERE feedback_at IS NOT NULL",
)


@dataclass(frozen=True)
class _Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _migration_1(conn: sqlite3.Connection) -> None:
    """Create the schema, or adopt a database written by the original implementation.

    The original's ``usage`` table has no ``feedback_at``, stores naive local-time
    timestamps and may lack dedupe hashes; those rows are brought to this format.
    """
    existed = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'"
    ).fetchone()
    for statement in _SCHEMA_V1:
        conn.execute(statement)
    if existed:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
        if "feedback_at" not in columns:
            conn.execute("ALTER TABLE usage ADD COLUMN feedback_at TEXT")
        _normalize_adopted_rows(conn)
    for statement in _INDEXES_V1:
        conn.execute(statement)


def _migration_2(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS loop_state ("
        "key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )


def _migration_3(conn: sqlite3.Connection) -> None:
    conn.execute(
        "ALTER TABLE usage ADD COLUMN is_error INTEGER NOT NULL DEFAULT 0 "
        "CHECK (is_error IN (0, 1))"
    )
    conn.execute("ALTER TABLE usage_rollup ADD COLUMN n_errors INTEGER NOT NULL DEFAULT 0")


def _migration_4(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE usage ADD COLUMN assignment_hash TEXT")


def _migration_5(conn: sqlite3.Connection) -> None:
    """Conversations: a nullable column (added in place, no row rewritten) and the nodes
    each distinct conversation prefix is stored as once (see afs.continuous.conversations)."""
    conn.execute("ALTER TABLE usage ADD COLUMN conversation_hash TEXT")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS conversation_nodes ("
        "hash TEXT PRIMARY KEY, parent TEXT, item TEXT NOT NULL) WITHOUT ROWID"
    )
    # a response that is more than text (tool calls, a refusal), as its message
    conn.execute("ALTER TABLE usage ADD COLUMN response_json TEXT")


def _migration_6(conn: sqlite3.Connection) -> None:
    """Data sets: each export and the records it took (see afs.continuous.privacy)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
        "output TEXT NOT NULL, format TEXT NOT NULL, record_count INTEGER NOT NULL, "
        "sha256 TEXT, model_version TEXT, redaction TEXT, members BLOB NOT NULL)"
    )


def _migration_7(conn: sqlite3.Connection) -> None:
    """Corrections: an answer a user or an expert gave instead of a record's response."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS corrections (record_id TEXT PRIMARY KEY, "
        "correction_json TEXT NOT NULL, corrected_at TEXT NOT NULL)"
    )


def _normalize_adopted_rows(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT rowid, timestamp, query, response, dedupe_hash FROM usage "
        "WHERE timestamp NOT LIKE '____-__-__T__:__:__.______Z' OR dedupe_hash IS NULL"
    ).fetchall()
    updates = []
    for rowid, timestamp, query, response, dedupe_hash in rows:
        try:
            stamp = format_timestamp(parse_timestamp(timestamp))
        except InvalidFieldError:
            stamp = timestamp  # leave what we cannot read; it still sorts as text
        updates.append((stamp, dedupe_hash or compute_dedupe_hash(query, response), rowid))
    conn.executemany("UPDATE usage SET timestamp = ?, dedupe_hash = ? WHERE rowid = ?", updates)
