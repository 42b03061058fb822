"""SQLite specifics: WAL, migrations, adopting the original implementation's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from afs.continuous import InvalidFieldError, UsageLogger
from afs.continuous.errors import SchemaVersionError
from afs.continuous.store import open_store, sqlite_path_from_target
from afs.continuous.store.sqlite import SQLiteUsageStore

# The seed document's schema, as the original implementation created it.
ORIGINAL_SCHEMA = """
CREATE TABLE usage (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    query TEXT NOT NULL,
    response TEXT NOT NULL,
    model TEXT NOT NULL,
    expert TEXT,
    latency_ms REAL,
    token_count INTEGER,
    quality_score REAL DEFAULT 0.0,
    user_feedback INTEGER,
    feedback_text TEXT,
    context_hash TEXT,
    dedupe_hash TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
"""


def test_new_database_is_wal_with_a_recorded_schema_version(tmp_path: Path) -> None:
    store = SQLiteUsageStore(tmp_path / "u.db")
    assert store.schema_version() == 7
    conn = sqlite3.connect(tmp_path / "u.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [row[1] for row in conn.execute("PRAGMA table_info(usage)")]
    assert columns[:14] == [
        "id",
        "timestamp",
        "query",
        "response",
        "model",
        "expert",
        "latency_ms",
        "token_count",
        "quality_score",
        "user_feedback",
        "feedback_text",
        "context_hash",
        "dedupe_hash",
        "created_at",
    ]
    assert {"feedback_at", "is_error"} <= set(columns)
    store.close()


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    SQLiteUsageStore(tmp_path / "u.db").close()
    store = SQLiteUsageStore(tmp_path / "u.db")
    conn = sqlite3.connect(tmp_path / "u.db")
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 7
    store.close()


def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    SQLiteUsageStore(tmp_path / "u.db").close()
    conn = sqlite3.connect(tmp_path / "u.db")
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')")
    conn.commit()
    with pytest.raises(SchemaVersionError, match="Upgrade afs-continuous"):
        SQLiteUsageStore(tmp_path / "u.db")


def test_original_database_is_adopted_with_utc_timestamps_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "original.db"
    conn = sqlite3.connect(path)
    conn.executescript(ORIGINAL_SCHEMA)
    conn.execute(
        "INSERT INTO usage (id, timestamp, query, response, model, quality_score, user_feedback) "
        "VALUES ('old1', '2026-11-20T10:00:00.500000+00:00', 'q', 'r', 'm', 0.9, 1)"
    )
    conn.commit()
    conn.close()
    with UsageLogger(path) as logger:
        [record] = list(logger.get_records())
        assert record.timestamp == "2026-11-20T10:00:00.500000Z"
        assert record.dedupe_hash is not None
        assert logger.get_statistics()["positive_feedback"] == 1
        logger.log("q2", "r2", "m")
        assert logger.get_statistics()["total"] == 2


def test_rows_written_by_another_program_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    SQLiteUsageStore(path).close()
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO usage (id, timestamp, query, response, model, quality_score) "
        "VALUES (?, '2026-11-20T10:00:00.000000Z', 'q', 'r', 'm', 0.5)",
        [(f"ext{i:06d}",) for i in range(5000)],
    )
    conn.commit()
    store = SQLiteUsageStore(path)
    stats = store.statistics()
    assert stats.count == 5000 and stats.quality_sum == pytest.approx(2500)
    assert store._tail_length() == 0  # the reader folded the long tail
    store.close()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("usage.db", Path("usage.db")),
        ("~/x/usage.db", Path("HOME/x/usage.db")),
        ("sqlite:///relative.db", Path("relative.db")),
        ("sqlite:////abs/usage.db", Path("/abs/usage.db")),
    ],
)
def test_store_targets_resolve_to_files(target: str, expected: Path) -> None:
    if expected.parts[0] == "HOME":
        expected = Path.home().joinpath(*expected.parts[1:])
    assert sqlite_path_from_target(target) == expected


@pytest.mark.parametrize("target", [":memory:", "", "mysql://host/db", "sqlite:///"])
def test_unusable_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidFieldError):
        open_store(target)


def test_a_version_4_database_gains_conversations_in_place(tmp_path: Path) -> None:
    """The records written before conversations existed stay as they were (a column added
    in place, nothing rewritten) and read back without a conversation."""
    from afs.continuous.store.sqlite import schema

    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for version, migrate in enumerate(
        (schema._migration_1, schema._migration_2, schema._migration_3, schema._migration_4), 1
    ):
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'v', 'now')", (version,))
    conn.execute(
        "INSERT INTO usage (id, timestamp, query, response, model, dedupe_hash) "
        "VALUES ('old', '2026-01-01T00:00:00.000000Z', 'q', 'a', 'm', 'h')"
    )
    conn.close()
    store = open_store(str(path))
    try:
        assert store.schema_version() == 7
        old = store.get("old")
        assert old is not None and old.query == "q"
        assert (old.conversation_hash, old.messages) == (None, None)
    finally:
        store.close()
